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
    assert "USER 10001" in text and 'ENTRYPOINT ["forecast", "worker"]' in text
    assert "scripts/install.sh" in text, "the image must install with the script CI runs"


def stages(text: str) -> dict[str, str]:
    """Each build stage of a Dockerfile by name: its FROM line and instructions."""
    parts = re.split(r"^(?=FROM )", text, flags=re.M)[1:]
    return {re.match(r"FROM \S+ AS (\S+)", part).group(1): part for part in parts}  # type: ignore[union-attr]


def test_the_gpu_image_is_a_target_of_the_same_dockerfile_with_a_gpu_health_check() -> None:
    text = (REPO / "Dockerfile").read_text()
    built = stages(text)
    assert list(built) == ["app", "gpu", "cpu"], "cpu, the default target, must come last"
    assert built["gpu"].startswith("FROM app AS gpu") and built["cpu"].startswith("FROM app AS cpu")
    assert 'CMD ["forecast", "health", "--device", "gpu"' in built["gpu"] and 'CMD ["--pool", "gpu"]' in built["gpu"]
    assert 'CMD ["forecast", "health", "--device", "cpu"' in built["cpu"] and 'CMD ["--pool", "cpu"]' in built["cpu"]
    assert "scripts/install.sh" in built["app"] and "USER 10001" in built["app"], "one install, non-root, for both"
    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in built["app"], \
        "the CPU image must not pull PyPI's multi-GB CUDA build"


def test_compose_file_wires_the_stack() -> None:
    spec = yaml.safe_load((REPO / "deployments" / "compose.yaml").read_text())
    services = spec["services"]
    workers = {"worker-cpu", "worker-gpu-0", "worker-gpu-1"}
    assert set(services) == {"postgres", "prefect", "mlflow", "deploy"} | workers
    assert "postgresql+asyncpg://" in services["prefect"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert "psycopg" in services["mlflow"]["command"]
    for index in (0, 1):  # one GPU each, by device id; the gpu profile, so CPU-only hosts start without them
        worker = services[f"worker-gpu-{index}"]
        (gpu,) = worker["deploy"]["resources"]["reservations"]["devices"]
        assert gpu["capabilities"] == ["gpu"] and gpu["device_ids"] == [str(index)]
        assert worker["command"] == ["--pool", "gpu"] and worker["build"]["target"] == "gpu"
        assert worker["profiles"] == ["gpu"]
    assert services["worker-cpu"]["build"]["target"] == "cpu"
    assert services["worker-cpu"]["environment"]["PREFECT_API_URL"] == "http://prefect:4200/api"
    server_auth = services["prefect"]["environment"]["PREFECT_SERVER_API_AUTH_STRING"]
    assert server_auth.startswith("${PREFECT_AUTH_STRING:?"), "the server must refuse to start without a password"
    for name in (*workers, "deploy"):
        assert services[name]["environment"]["PREFECT_API_AUTH_STRING"] == "${PREFECT_AUTH_STRING}"


def test_compose_registers_deployments_once_before_any_worker_starts() -> None:
    services = yaml.safe_load((REPO / "deployments" / "compose.yaml").read_text())["services"]
    deploy = services["deploy"]
    assert deploy["entrypoint"] == ["bash", "scripts/deploy.sh"] and deploy["restart"] == "no"
    assert deploy["depends_on"]["prefect"]["condition"] == "service_healthy"
    for name in ("worker-cpu", "worker-gpu-0", "worker-gpu-1"):
        assert services[name]["depends_on"]["deploy"] == {"condition": "service_completed_successfully"}
        assert "entrypoint" not in services[name], "a worker only polls: the image's forecast worker"
    script = (REPO / "scripts" / "deploy.sh").read_text()
    assert "deploy --all" in script and "deployments.automations" in script and "deployments.parameters" in script
    assert "bash scripts/deploy.sh" in (REPO / "setup.sh").read_text(), "serve registers the same way"


def test_the_image_installs_no_extra_so_no_jax() -> None:
    """JAX is in the dev extra only (the covariate reference test); the worker image takes no extra."""
    dockerfile = (REPO / "Dockerfile").read_text()
    install = (REPO / "scripts" / "install.sh").read_text()
    assert re.search(r"FORECAST_INSTALL_EXTRAS='' .*\\\n\s*bash scripts/install\.sh", dockerfile), \
        "the image must run install.sh with FORECAST_INSTALL_EXTRAS empty"
    assert "EXTRAS=${FORECAST_INSTALL_EXTRAS-dev}" in install and '-e ".${EXTRAS:+[$EXTRAS]}"' in install, \
        "install.sh must install the extras FORECAST_INSTALL_EXTRAS names, dev when unset, none when empty"
    pyproject = (REPO / "pyproject.toml").read_text()
    dependencies = re.search(r"^dependencies = \[(.*?)^\]", pyproject, re.M | re.S)
    dev = re.search(r"^dev = \[(.*?)\]$", pyproject, re.M | re.S)
    assert dependencies and dev, "pyproject.toml has its dependencies and a dev extra"
    assert "jax" not in dependencies.group(1) and "jax[cpu]" in dev.group(1), "JAX belongs to the dev extra only"


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
