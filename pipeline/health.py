"""Whether this worker can serve: model, device, output root, tracking, Prefect API and sources.

The report keeps the JSON shape of the FastAPI service this project replaces (``status``,
``timestamp``, ``api_version``, ``models.timesfm20.status``/``error``) and adds a ``checks`` map with
one entry per check: ``ok``, a ``detail`` sentence and the seconds it took.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
import time
import urllib.request
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from forecast_model import EngineConfig, ForecastModelError, load_engine, model_status, resolve_device
from pipeline.errors import InputDataError
from pipeline.sources import DuckDBSource, FileSource, SourcePolicy, UrlSource
from pipeline.sources.database import database_path
from pipeline.sources.files import expand
from pipeline.sources.http import TransientSourceError, check_address, redact_url

__all__ = [
    "HealthConfig",
    "build_report",
    "check_device",
    "check_http",
    "check_model",
    "check_output_root",
    "check_source",
    "health_config",
    "preflight_checks",
    "run_checks",
    "write_report",
]

Check = tuple[bool, str]


@dataclasses.dataclass(frozen=True)
class HealthConfig:
    """What to check; built from the settings, plus the sources a deployment reads."""

    engine: EngineConfig
    output_root: Path
    tracking_uri: str
    prefect_api_url: str | None
    policy: SourcePolicy
    sources: tuple[FileSource | UrlSource | DuckDBSource, ...] = ()
    min_free_bytes: int = 1 << 30
    check_model: bool = True


def check_model(engine: EngineConfig) -> Check:
    """The checkpoint resolves, the model loads, and a tiny forecast comes back finite."""
    try:
        model = load_engine(engine)
        result = model.forecast([np.sin(np.arange(64) / 4)], horizon=8)
    except ForecastModelError as exc:
        return False, str(exc)
    if not np.isfinite(result.quantiles).all():
        return False, "The model answered a test forecast with non-finite values."
    return True, f"{engine.checkpoint} answers on {model.device} ({model.precision})"


def check_device(name: str, min_free_bytes: int = 1 << 30, index: int | None = None) -> Check:
    """The requested device exists; on CUDA, with at least ``min_free_bytes`` free."""
    try:
        device = resolve_device(name, index)
    except ForecastModelError as exc:
        return False, str(exc)
    if device.type != "cuda":
        return True, f"{device} (torch {torch.__version__})"
    free, total = torch.cuda.mem_get_info(device)
    detail = f"{device} {torch.cuda.get_device_name(device)}: {free / 2**30:.1f} of {total / 2**30:.1f} GiB free"
    return free >= min_free_bytes, detail


def check_output_root(root: Path, min_free_bytes: int) -> Check:
    """The output root accepts a file, and has at least ``min_free_bytes`` free."""
    probe = root / f".health-{uuid.uuid4().hex}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        return False, f"Output root {root} is not writable: {exc.strerror or exc}."
    free = shutil.disk_usage(root).free
    if free < min_free_bytes:
        return False, f"Output root {root} has {free / 2**30:.2f} GiB free, less than {min_free_bytes / 2**30:.2f}."
    return True, f"{root} writable, {free / 2**30:.1f} GiB free"


def check_http(url: str, timeout: float = 5.0, headers: dict[str, str] | None = None) -> Check:
    """A GET answers 2xx within ``timeout`` seconds."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=timeout) as response:
            return 200 <= response.status < 300, f"{redact_url(url)} answered {response.status}"
    except OSError as exc:
        return False, f"{redact_url(url)} did not answer: {getattr(exc, 'reason', exc)}"


def check_source(source: FileSource | UrlSource | DuckDBSource, policy: SourcePolicy) -> Check:
    """A file or database exists under a data root, or a URL's host passes the guard and answers."""
    try:
        if isinstance(source, FileSource):
            paths = expand(source.path, policy)
            missing = [str(p) for p in paths if not p.is_file()]
            return not missing, (f"missing: {missing}" if missing else f"{len(paths)} file(s) for {source.describe()}")
        if isinstance(source, DuckDBSource):
            return True, f"{database_path(source, policy)} exists"
        url = source.resolved_url(policy.secret_blocks)
        check_address(url, policy)
        return check_http(url, timeout=policy.connect_timeout, headers=source.resolved_headers(policy.secret_blocks))
    except (InputDataError, TransientSourceError) as exc:
        return False, str(exc)


def _timed(check: Callable[[], Check]) -> dict[str, Any]:
    started = time.perf_counter()
    ok, detail = check()
    return {"ok": ok, "detail": detail, "seconds": round(time.perf_counter() - started, 3)}


def run_checks(config: HealthConfig, check_tracking: Callable[[str], Check]) -> dict[str, dict[str, Any]]:
    """Runs every configured check; none raises, each reports ``ok`` and a ``detail``.

    ``check_tracking`` checks the MLflow store at a URI; the task layer passes its own (``tasks.health``),
    so this package never imports MLflow.
    """
    checks: dict[str, Callable[[], Check]] = {
        **_preflight(config),
        "tracking": lambda: check_tracking(config.tracking_uri),
    }
    if config.check_model:
        checks["model"] = lambda: check_model(config.engine)
    if config.prefect_api_url:
        checks["prefect_api"] = functools.partial(check_http, config.prefect_api_url.rstrip("/") + "/health")
    for index, source in enumerate(config.sources):
        checks[f"source_{index}"] = functools.partial(check_source, source, config.policy)
    return {name: _timed(check) for name, check in checks.items()}


def preflight_checks(config: HealthConfig) -> dict[str, dict[str, Any]]:
    """The checks whose failure would fail every run a worker takes: its device and the output root.

    A worker runs them before it polls its pool (``forecast worker``), so one that cannot serve never takes
    a run only to fail it; tracking and sources are the runs' own concern (a run may go on without MLflow).
    """
    return {name: _timed(check) for name, check in _preflight(config).items()}


def _preflight(config: HealthConfig) -> dict[str, Callable[[], Check]]:
    return {
        "device": lambda: check_device(config.engine.device, config.min_free_bytes, config.engine.device_index),
        "output_root": lambda: check_output_root(config.output_root, config.min_free_bytes),
    }


def build_report(checks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The earlier service's health JSON, plus the checks."""
    status = model_status()
    return {
        "status": "healthy" if all(c["ok"] for c in checks.values()) else "unhealthy",
        "timestamp": datetime.now(timezone.utc).isoformat(),
        "api_version": metadata.version("timesfm-batch-forecast"),
        "models": {"timesfm20": {"status": status.status.value, "error": status.error,
                                 "checkpoint": status.checkpoint, "device": status.device}},
        "checks": checks,
        "host": os.uname().nodename,
    }


def health_config(settings: Any, engine: EngineConfig, sources: tuple[FileSource | UrlSource | DuckDBSource, ...] = (),
                  *, output_root: Path | None = None, min_free_gb: float = 1.0, check_model: bool = True,
                  prefect_api_url: str | None = None) -> HealthConfig:
    """The checks for these settings (a ``pipeline.settings.Settings``)."""
    return HealthConfig(engine=engine, output_root=output_root or settings.resolved_output_root(),
                        tracking_uri=settings.resolved_tracking_uri(), prefect_api_url=prefect_api_url,
                        policy=settings.source_policy(), sources=sources, min_free_bytes=int(min_free_gb * 2**30),
                        check_model=check_model)


def write_report(report: dict[str, Any], output_root: Path) -> Path | None:
    """Replaces ``<output_root>/_health/health.json`` atomically; ``None`` if the root is not writable."""
    target = output_root / "_health" / "health.json"
    temporary = target.with_name(f".health.{os.getpid()}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_text(json.dumps(report, indent=2))
        os.replace(temporary, target)
    except OSError:
        return None
    return target
