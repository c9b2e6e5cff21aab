#!/usr/bin/env bash
# Downloads into .whl/ the wheels that benchmarks/gpu_flow_check.sh needs on a lent GPU machine (Python 3.12,
# CUDA torch, no network there): what the whole flow imports (Prefect and its ephemeral server, MLflow's
# SQLite tracking store, great-expectations, DuckDB, pydantic, timesfm 1.3.0...) minus what that machine's
# image already holds (/work/.library/device/KINDS.md, "Python packages already there"). One version per
# package, taken from the local venv. Then prints the size of what travels (limit: 64 MiB a call).
#
#   bash benchmarks/gpu_wheels.sh                                   # cp312 wheels into .whl/
#   PYVER=3.11 DEST=/tmp/whl311 bash benchmarks/gpu_wheels.sh       # cp311 twins, to verify the set locally
#
# Left out on purpose, to stay under 64 MiB (duckdb alone is 24 MB): `mlflow` itself (its UI and server;
# `import mlflow` and the SQLite store work with mlflow-skinny + SQLAlchemy + alembic), mlflow-tracing (a
# subset of mlflow-skinny's files), google-auth and pyasn1 (only great-expectations' Google Cloud connectors
# import them, inside try/except), pycparser (cffi needs it only to compile), and from two wheels the files
# no run here reads (below). The set was checked by running the CPU variant in a clean venv holding only the
# device image's packages and these wheels (cp311 twins: PYVER=3.11).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
PYVER=${PYVER:-3.12}
DEST=${DEST:-.whl}

# What the flow imports on the device and the device lacks (found by running the flow with every loaded
# module recorded, minus the device image's list). Keep in step with pyproject.toml.
PACKAGES=(
  timesfm utilsforecast einshape
  prefect pydantic pydantic-core pydantic-settings pydantic-extra-types annotated-types typing-inspection
  fastapi starlette uvicorn websockets sqlalchemy greenlet aiosqlite alembic mako asyncpg asgi-lifespan
  h2 hpack hyperframe httpx2 httpcore2 orjson pendulum whenever tzdata tzlocal pytz python-dotenv python-slugify
  text-unidecode coolname cronsim docstring-parser griffelib griffecli jinja2-humanize-extension
  jsonpointer jsonschema jsonschema-specifications referencing rpds-py rfc3339-validator ruamel-yaml toml
  exceptiongroup sniffio truststore amplitude-analytics beartype cachetools pydocket py-key-value-aio redis
  burner-redis uncalled-for importlib-metadata opentelemetry-api opentelemetry-sdk
  opentelemetry-semantic-conventions opentelemetry-proto opentelemetry-exporter-otlp-proto-common
  opentelemetry-exporter-otlp-proto-http opentelemetry-exporter-http-transport opentelemetry-exporter-otlp-common
  googleapis-common-protos
  mlflow-skinny sqlparse databricks-sdk cryptography cffi
  great-expectations altair marshmallow mistune graphviz
  duckdb
)

pins=$("$PY" - "${PACKAGES[@]}" <<'EOF'
import sys
from importlib import metadata

missing = []
for name in sys.argv[1:]:
    try:
        print(f"{name}=={metadata.version(name)}")
    except metadata.PackageNotFoundError:
        missing.append(name)
if missing:
    sys.exit(f"not installed in the venv, so no version to match: {' '.join(missing)}")
EOF
)

mkdir -p "$DEST"
platforms=()
for tag in manylinux_2_17 manylinux_2_24 manylinux_2_27 manylinux_2_28 manylinux_2_31 manylinux_2_34 manylinux_2_35; do
  platforms+=(--platform "${tag}_x86_64")
done
platforms+=(--platform manylinux2014_x86_64 --platform manylinux1_x86_64)
# shellcheck disable=SC2086 - one pin a word
"$PY" -m pip download -q --no-deps --ignore-requires-python --only-binary=:all: --python-version "$PYVER" --implementation cp \
  "${platforms[@]}" -d "$DEST" $pins

# Files no run of the flow reads, cut from the copies in $DEST (with their RECORD lines): Prefect's web UI
# (~5 MB packed; only a non-ephemeral server serves it) and two animated GIFs of great-expectations' Data
# Docs (3.3 MB; no template or stylesheet names them).
"$PY" - "$DEST" <<'EOF'
import sys
import zipfile
from pathlib import Path

CUTS = {"prefect-*.whl": ("prefect/server/ui/", "prefect/server/ui-v2/"),
        "great_expectations-*.whl": ("great_expectations/render/view/static/images/glossary_scroller.gif",
                                     "great_expectations/render/view/static/images/validation_failed_unexpected"
                                     "_values.gif")}
for pattern, cut in CUTS.items():
    for wheel in Path(sys.argv[1]).glob(pattern):
        with zipfile.ZipFile(wheel) as source:
            dropped = [n for n in source.namelist() if n.startswith(cut)]
            if not dropped:
                continue
            trimmed = wheel.with_suffix(".tmp")
            with zipfile.ZipFile(trimmed, "w", zipfile.ZIP_DEFLATED) as target:
                for info in source.infolist():
                    if info.filename.startswith(cut):
                        continue
                    data = source.read(info)
                    if info.filename.endswith(".dist-info/RECORD"):
                        data = b"".join(line for line in data.splitlines(keepends=True)
                                        if not line.startswith(tuple(c.encode() for c in cut)))
                    target.writestr(info, data)
        trimmed.replace(wheel)
        print(f"{wheel.name}: cut {len(dropped)} files no run reads")
EOF

echo "wheels in $DEST: $(ls "$DEST"/*.whl | wc -l), $(du -sh "$DEST" | cut -f1)"
tracked=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
untracked=$(git ls-files -z -o --exclude-standard | xargs -0 -r du -cb | tail -1 | cut -f1)
wheels=$(du -sb .whl 2>/dev/null | cut -f1 || echo 0)
echo "travels with carry [.whl]: tracked $((tracked / 1024)) KiB + untracked $((${untracked:-0} / 1024)) KiB" \
     "+ .whl $((wheels / 1024)) KiB = $(((tracked + ${untracked:-0} + wheels) / 1048576)) MiB (limit 64 MiB)"
