#!/bin/sh
# Creates the databases named in POSTGRES_MULTIPLE_DATABASES (run once by the postgres image at first start).
set -eu
for db in $(echo "$POSTGRES_MULTIPLE_DATABASES" | tr ',' ' '); do
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" -c "CREATE DATABASE $db"
done
