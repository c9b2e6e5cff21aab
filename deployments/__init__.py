"""Ways to run the flows as Prefect deployments without a work pool (see prefect.yaml for pools)."""
