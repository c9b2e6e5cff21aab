"""The container definitions: no Docker engine runs here, so check what can be checked without one."""

from __future__ import annotations

import re
import subprocess

import yaml

from tests.conftest import REPO


def test_dockerfile_lints_clean_and_is_a_non_root_worker_with_a_health_check() -> None:
    done = subprocess.run([str(REPO / ".venv" / "bin" / "hadolint"), str(REPO / "Dockerfile")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout
    text = (REPO / "Dockerfile").read_text()
    assert "ARG BASE_IMAGE=python:3.11-slim" in text and "ARG TORCH_INDEX_URL" in text
    assert "USER 10001" in text and 'HEALTHCHECK' in text and '"forecast", "health"' in text
    assert "scripts/install.sh" in text, "the image must install with the script CI runs"


def test_compose_file_wires_the_stack() -> None:
    spec = yaml.safe_load((REPO / "deployments" / "compose.yaml").read_text())
    services = spec["services"]
    assert set(services) == {"postgres", "prefect", "mlflow", "worker-cpu", "worker-gpu"}
    assert "postgresql+asyncpg://" in services["prefect"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert "psycopg" in services["mlflow"]["command"]
    gpu = services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"] and services["worker-gpu"]["command"] == ["--pool", "gpu"]
    assert services["worker-cpu"]["environment"]["PREFECT_API_URL"] == "http://prefect:4200/api"
    server_auth = services["prefect"]["environment"]["PREFECT_SERVER_API_AUTH_STRING"]
    assert server_auth.startswith("${PREFECT_AUTH_STRING:?"), "the server must refuse to start without a password"
    for worker in ("worker-cpu", "worker-gpu"):
        assert services[worker]["environment"]["PREFECT_API_AUTH_STRING"] == "${PREFECT_AUTH_STRING}"


def test_the_image_copies_every_package_the_project_installs() -> None:
    include = re.search(r"^include = \[(.*)\]$", (REPO / "pyproject.toml").read_text(), re.M)  # no tomllib on 3.10
    assert include, "pyproject.toml lists its packages in [tool.setuptools.packages.find] include"
    packages = set(re.findall(r'"(\w+)\*"', include.group(1)))
    copied = set(re.findall(r"^COPY\b.*\s(\w+) \./\1$", (REPO / "Dockerfile").read_text(), re.M))
    assert packages and packages <= copied, f"the Dockerfile does not copy {sorted(packages - copied)}"


def test_compose_servers_run_the_client_versions_and_the_sample_is_readable() -> None:
    from importlib.metadata import version

    services = yaml.safe_load((REPO / "deployments" / "compose.yaml").read_text())["services"]
    pins = dict(re.findall(r'"(prefect|mlflow)==([\d.]+)"', (REPO / "pyproject.toml").read_text()))
    assert services["prefect"]["image"] == f"prefecthq/prefect:{pins['prefect']}-python3.11"
    assert services["mlflow"]["image"] == f"ghcr.io/mlflow/mlflow:v{pins['mlflow']}"
    assert {name: version(name) for name in pins} == pins, "the installed clients are the pinned versions"
    roots = services["worker-cpu"]["environment"]["FORECAST_DATA_ROOTS"].split(":")
    sample = "/app/" + yaml.safe_load((REPO / "prefect.yaml").read_text())["definitions"]["parameters"]["sample"][
        "source"]["path"]
    assert any(sample.startswith(root.rstrip("/") + "/") for root in roots), f"{sample} is outside {roots}"
