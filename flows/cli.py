"""The ``forecast`` command: run the batch flow locally, check health, start a (GPU-pinned) worker, or make a
tiny checkpoint for smoke runs.

Exit codes: 0 success, 2 bad input or configuration (the message says what to fix), 1 anything else.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import sys
import traceback
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

# None of these import Prefect, which must see the environment defaults below before it loads.
from forecast_model.errors import MAX_MESSAGE_CHARS, ConfigurationError
from pipeline.canonical import ColumnMapping
from pipeline.params import (
    AnomalySummary,
    BacktestSummary,
    CovariateParams,
    ModelParams,
    MonitorParams,
    RunSummary,
)
from pipeline.series_checks import SeriesChecks
from pipeline.sources import DuckDBSource, FileSource, UrlSource
from pipeline.sources.files import base_directory

# Defaults for a local run, set before Prefect is imported (it reads them at import).
_ENV_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    "PREFECT_LOGGING_EXTRA_LOGGERS": "forecast_model",
    # Prefect's own logging config plus the shared log file (pipeline/logfile.py); a user's own path wins.
    "PREFECT_LOGGING_SETTINGS_PATH": str(Path(__file__).with_name("logging.yml")),
    "MLFLOW_DISABLE_TELEMETRY": "true",
}


def _common_arguments(command: argparse.ArgumentParser) -> None:
    """Source, model and run arguments shared by `run`, `backtest` and `detect`."""
    command.add_argument("--source", required=True,
                         help="A .csv/.parquet path or glob, an http(s):// URL, secret:NAME (a URL kept in "
                              "Prefect Secret block NAME, or secret:env:VAR), or duckdb:///path/to.db "
                              "(with --table or --query).")
    command.add_argument("--table", help="DuckDB source: table or view to read.")
    command.add_argument("--query", help="DuckDB source: one SELECT/WITH query; use ? placeholders.")
    command.add_argument("--query-param", action="append", default=[], metavar="VALUE",
                         help="DuckDB source: a value bound to the next ? placeholder (repeatable).")
    command.add_argument("--content", choices=["auto", "csv", "parquet"], default="auto",
                         help="URL source: file type (default: detect).")
    command.add_argument("--headers-secret", metavar="NAME",
                         help="URL source: Prefect Secret block (or env:VAR) holding a JSON object of HTTP headers.")
    command.add_argument("--format", choices=["long", "wide"], default="long")
    command.add_argument("--id-col", default="unique_id")
    command.add_argument("--time-col", default="ds")
    command.add_argument("--target-col", default="y")
    command.add_argument("--freq", help="Pandas frequency alias (e.g. D, W, MS, QS); inferred if omitted.")
    command.add_argument("--checkpoint", help="Hugging Face repo id or local checkpoint path.")
    command.add_argument("--expected-sha256", help="Fail unless the weights file has this SHA-256.")
    command.add_argument("--device", choices=["auto", "cpu", "gpu"])
    command.add_argument("--context-len", type=int)
    command.add_argument("--job", help="Job name (default: derived from the source's name).")
    command.add_argument("--max-rejected-fraction", type=float,
                         help="Fail when a larger share of series is rejected (default 0.2).")
    command.add_argument("--max-staleness", type=int,
                         help="Reject series whose last value is more than this many periods before --as-of.")
    command.add_argument("--output-root", help="Output directory (default FORECAST_OUTPUT_ROOT or data/outputs).")
    command.add_argument("--as-of", type=date.fromisoformat, help="Logical date YYYY-MM-DD (default today, UTC).")
    command.add_argument("--tracking-required", action="store_true",
                         help="Fail, publishing nothing, if the run cannot be recorded in MLflow.")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="forecast", description="TimesFM-2.0 batch forecasting.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true",
                        help="Log everything to the terminal, tracebacks included (as LOG_LEVEL=DEBUG).")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", parents=[common], help="Forecast a source and publish Parquet results.")
    _common_arguments(run)
    run.add_argument("--horizon", type=int, help="Steps to forecast (default TIMESFM20_DEFAULT_HORIZON_LEN).")
    run.add_argument("--revision-threshold", type=float,
                     help="A series is revised when its scaled change since the previous run exceeds this (0.5).")
    run.add_argument("--lookback-runs", type=int,
                     help="Earlier runs of the job whose forecasts are scored against this run's actuals (60).")
    run.add_argument("--no-monitor", action="store_true",
                     help="Skip revisions and realized accuracy (tables revisions, realized_accuracy).")
    _covariate_arguments(run)
    backtest = commands.add_parser("backtest", parents=[common],
                                   help="Score TimesFM against naive baselines on a source.")
    _common_arguments(backtest)
    _covariate_arguments(backtest)
    backtest.add_argument("--h", type=int, default=12, help="Horizon of each window (default 12).")
    backtest.add_argument("--n-windows", type=int, default=3, help="Number of cutoffs (default 3).")
    backtest.add_argument("--step", type=int, help="Steps between cutoffs (default: h).")
    backtest.add_argument("--season-length", type=int, help="Seasonal period (default: from the frequency).")
    detect = commands.add_parser("detect", parents=[common],
                                 help="Flag the latest observations of a source that its forecast did not expect.")
    _common_arguments(detect)
    detect.add_argument("--window", type=int, help="Points scored per series (default: one season, else 7).")
    detect.add_argument("--since", type=date.fromisoformat, help="Score the points on or after this date instead.")
    detect.add_argument("--scoring", choices=["block", "rolling"], default="block",
                        help="block: one forecast of the whole window (default); rolling: --stride points each.")
    detect.add_argument("--stride", type=int, default=1, help="Points per forecast when rolling (default 1).")
    detect.add_argument("--threshold", type=float, default=0.95,
                        help="Anomaly probability from which a point is an anomaly (default 0.95).")
    health = commands.add_parser("health", parents=[common],
                                 help="Print the health report as JSON; exit 0 healthy, 1 unhealthy.")
    health.add_argument("--checkpoint", help="Checkpoint to check (default TIMESFM20_DEFAULT_CHECKPOINT).")
    health.add_argument("--device", choices=["auto", "cpu", "gpu"])
    health.add_argument("--device-index", type=int, metavar="N",
                        help="The GPU to check (as FORECAST_DEVICE_INDEX; default GPU 0).")
    health.add_argument("--source", action="append", default=[],
                        help="A source to check for reachability: path or glob, URL, or duckdb://file (repeatable).")
    health.add_argument("--no-model", action="store_true", help="Skip loading the model (a cheap liveness check).")
    health.add_argument("--min-free-gb", type=float, default=1.0)
    health.add_argument("--output-root")
    worker = commands.add_parser(
        "worker", parents=[common],
        help="Check this host can serve (device, output root), then start a Prefect process worker; exit 2 "
             "with the health report if it cannot.")
    worker.add_argument("--pool", required=True, help="Work pool to poll (cpu or gpu in prefect.yaml).")
    worker.add_argument("--device-index", type=int, metavar="N",
                        help="Pin this worker and its runs to GPU N (sets FORECAST_DEVICE_INDEX): one worker per "
                             "GPU on a multi-GPU host. Implies --device gpu.")
    worker.add_argument("--device", choices=["auto", "cpu", "gpu"],
                        help="Device to check (default: gpu with --device-index or on the gpu pool, cpu on the cpu "
                             "pool, else TIMESFM20_DEFAULT_BACKEND).")
    worker.add_argument("--work-queue", action="append", default=[],
                        help="Queue(s) of the pool to poll (repeatable; default: all).")
    worker.add_argument("--limit", type=int,
                        help="Flow runs at once (default: 1 on a GPU, as runs size batches from its free memory; "
                             "else no limit).")
    worker.add_argument("--name", help="Worker name (default: <pool>-<host>-gpu<N>[-<queues>] when pinned, else "
                                       "Prefect's).")
    worker.add_argument("--min-free-gb", type=float, default=1.0,
                        help="Least free GPU memory and output-root space to start (default 1).")
    worker.add_argument("--check", action="store_true",
                        help="Only run the checks: print the report and exit 0 if the worker could start, else 2.")
    metrics = commands.add_parser(
        "metrics-exporter", parents=[common],
        help="Serve Prometheus metrics of the published runs, backtests and the last health report at /metrics.")
    metrics.add_argument("--host", default="127.0.0.1", help="Address to listen on (default 127.0.0.1; 0.0.0.0 "
                                                              "for a Prometheus on another host).")
    metrics.add_argument("--port", type=int, default=9108, help="Port (default 9108).")
    metrics.add_argument("--output-root", help="Output root to report on (default FORECAST_OUTPUT_ROOT or "
                                               "data/outputs).")
    tiny = commands.add_parser("make-tiny-checkpoint", parents=[common],
                               help="Write a tiny random-weight checkpoint (meaningless forecasts, for smoke runs).")
    tiny.add_argument("directory")
    return parser


def _covariate_arguments(command: argparse.ArgumentParser) -> None:
    group = command.add_argument_group("covariates", "What the forecast regresses on (docs/DATA_FORMAT.md, "
                                                     "Covariates); names are comma-separated input columns.")
    for kind, example in (("dynamic-numerical", "price,temperature"), ("dynamic-categorical", "promo"),
                          ("static-numerical", "store_size"), ("static-categorical", "region")):
        group.add_argument(f"--{kind}", type=_names, default=(), metavar="COLUMNS", help=f"e.g. {example}")
    group.add_argument("--calendar", type=_names, default=(), metavar="FEATURES",
                       help="Calendar features from ds, e.g. day_of_week,month,holiday:US.")
    group.add_argument("--future-source", metavar="PATH_OR_URL",
                       help="File or URL with future values of the dynamic covariates (unique_id, ds, columns; "
                            "the same column names as --source), instead of future rows in the input.")
    group.add_argument("--xreg-mode", choices=["xreg + timesfm", "timesfm + xreg"], default="xreg + timesfm")
    group.add_argument("--ridge", type=float, default=0.0, help="Ridge penalty of the regression (default 0).")
    group.add_argument("--no-normalize", action="store_true", help="Do not standardise series before regressing.")
    group.add_argument("--no-effects", action="store_true", help="Do not publish the covariate_effects table.")


def _names(value: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in value.split(",") if name.strip())


def _covariates(args: argparse.Namespace) -> CovariateParams:
    """The covariate parameters of the command line; a future source the user typed may be read, as ``--source``."""
    future = _source(args, args.future_source, flag="--future-source") if args.future_source else None
    if isinstance(future, DuckDBSource):
        raise ConfigurationError("--future-source takes a file or an http(s) URL; a DuckDB future source is given as "
                                 "the covariates.future_source parameter of a deployment run.")
    if future is not None:
        _allow_source_directory(future)
    return CovariateParams(dynamic_numerical=args.dynamic_numerical, dynamic_categorical=args.dynamic_categorical,
                           static_numerical=args.static_numerical, static_categorical=args.static_categorical,
                           calendar=args.calendar, xreg_mode=args.xreg_mode, ridge=args.ridge,
                           normalize=not args.no_normalize, future_source=future, effects=not args.no_effects)


def _source(args: argparse.Namespace, given: str | None = None,
            flag: str = "--source") -> FileSource | UrlSource | DuckDBSource:
    columns = ColumnMapping(id_col=args.id_col, time_col=args.time_col, target_col=args.target_col)
    common = {"format": args.format, "columns": columns}
    given = args.source if given is None else given
    scheme = _scheme(given)
    if scheme in ("http", "https") or given.startswith("secret:"):
        address = ({"url_secret": given.removeprefix("secret:")} if given.startswith("secret:")
                   else {"url": given})
        return UrlSource(**address, headers_secret=args.headers_secret, content=args.content, **common)
    if scheme == "duckdb":
        return DuckDBSource(database=given[len("duckdb://"):], table=args.table, query=args.query,
                            params=args.query_param, **common)
    if scheme is not None:
        raise ConfigurationError(
            f"{flag} uses the scheme {scheme[:20]}://, which is not supported. Fix: give a local path "
            "or glob (without file://), an http(s):// URL, secret:NAME, or duckdb:///path/to.db.")
    return FileSource(path=given, **common)


def _scheme(source: str) -> str | None:
    """The URL scheme of ``--source``, lower-cased (schemes are case-insensitive), or None for a path."""
    match = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", source)
    return match.group(1).lower() if match else None


def _run_options(args: argparse.Namespace) -> dict[str, Any]:
    checks = {k: v for k, v in (("max_rejected_fraction", args.max_rejected_fraction),
                                ("max_staleness", args.max_staleness)) if v is not None}
    model = ModelParams(checkpoint=args.checkpoint, device=args.device, context_len=args.context_len,
                        expected_sha256=args.expected_sha256)
    source = _source(args)
    _allow_source_directory(source)
    return {"source": source, "model": model, "checks": SeriesChecks(**checks), "freq": args.freq,
            "job": args.job, "as_of": args.as_of, "output_root": args.output_root,
            "tracking_required": args.tracking_required}


def _monitor(args: argparse.Namespace) -> MonitorParams:
    given = {k: v for k, v in (("revision_threshold", args.revision_threshold),
                               ("lookback_runs", args.lookback_runs)) if v is not None}
    return MonitorParams(enabled=not args.no_monitor, **given)


def _allow_source_directory(source: FileSource | UrlSource | DuckDBSource) -> None:
    """Adds the directory of the file or database the user typed to FORECAST_DATA_ROOTS for this process.

    The data roots keep deployment runs, whose parameters come from the UI or the API, away from the
    worker's other files; a user at a shell already has the file, so refusing it would only be in the way.
    """
    if isinstance(source, UrlSource):
        return
    directory = base_directory(source.path if isinstance(source, FileSource) else source.database).resolve()
    roots = os.environ.get("FORECAST_DATA_ROOTS") or os.getcwd()  # unset means the working directory
    os.environ["FORECAST_DATA_ROOTS"] = os.pathsep.join([roots, str(directory)])


def _report(summary: RunSummary | BacktestSummary | AnomalySummary, headline: str) -> int:
    print(headline)
    for warning in summary.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for table, path in summary.outputs.items():
        print(f"{table}: {path}")
    print(f"MLflow run: {summary.mlflow_run_id or 'not recorded (' + summary.tracking_status + ')'}")
    print(json.dumps(summary.model_dump(mode="json")))
    return 0


def _call(flow: Any, parameters: dict[str, Any]) -> Any:
    """Checks the parameters (no server needed, so a typo fails at once), runs the flow and returns its result;
    a failure is re-raised carrying the flow run's id, for the error report."""
    flow.validate_parameters(parameters)
    state = flow(**parameters, return_state=True)
    try:
        return state.result()
    except Exception as exc:
        raise _RunFailed(str(state.state_details.flow_run_id), exc) from exc


class _RunFailed(Exception):
    """A flow run ended in failure; ``error`` is what it raised."""

    def __init__(self, run_id: str, error: Exception) -> None:
        super().__init__(str(error))
        self.run_id, self.error = run_id, error


def _run(args: argparse.Namespace) -> int:
    from flows.batch_forecast import batch_forecast

    covariates = _covariates(args)
    summary = _call(batch_forecast, {"horizon": args.horizon, "monitor": _monitor(args), "covariates": covariates,
                                     **_run_options(args)})
    return _report(summary, f"Forecast {summary.series_ok} of {summary.series_in} series ({summary.forecast_rows} "
                            f"rows; {summary.series_rejected} rejected, {summary.series_failed} failed) for job "
                            f"{summary.job!r}, as_of {summary.as_of}.")


def _backtest(args: argparse.Namespace) -> int:
    from flows.batch_backtest import batch_backtest

    covariates = _covariates(args)
    summary = _call(batch_backtest, {"h": args.h, "n_windows": args.n_windows, "step": args.step,
                                     "season_length": args.season_length, "covariates": covariates,
                                     **_run_options(args)})
    lines = [f"  {model:<18} " + "  ".join(f"{k}={v:.4g}" for k, v in metrics.items())
             for model, metrics in summary.overall.items()]
    return _report(summary, f"Backtested {summary.series_ok} of {summary.series_in} series for job {summary.job!r}; "
                            f"TimesFM beats seasonal naive on {summary.share_beating_seasonal_naive:.0%} of them"
                            + ("" if summary.share_covariates_beating_plain is None else
                               f"; covariates improve it on {summary.share_covariates_beating_plain:.0%}") + ".\n"
                            + "\n".join(lines))


def _detect(args: argparse.Namespace) -> int:
    from flows.batch_detect_anomalies import batch_detect_anomalies
    from pipeline.detection import DetectionSpec

    DetectionSpec(window=args.window, since=args.since, scoring=args.scoring, stride=args.stride,
                  threshold=args.threshold)  # a contradiction fails here, before any server starts
    summary = _call(batch_detect_anomalies, {"window": args.window, "since": args.since, "scoring": args.scoring,
                                             "stride": args.stride, "threshold": args.threshold,
                                             **_run_options(args)})
    return _report(summary, f"Scored {summary.points_scored} observations of {summary.series_ok} series "
                            f"({summary.points_missing} missing, not scored) for job {summary.job!r}, as_of "
                            f"{summary.as_of}: {summary.anomalies} anomalies.")


def _health(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pipeline.health import health_config
    from pipeline.params import engine_config
    from pipeline.settings import load_settings
    from tasks.health import health_report

    if args.device_index is not None:
        os.environ["FORECAST_DEVICE_INDEX"] = str(args.device_index)
    settings = load_settings()
    sources = tuple(UrlSource(url=s) if s.startswith(("http://", "https://")) else
                    DuckDBSource(database=s.removeprefix("duckdb://"), query="SELECT 1") if s.startswith("duckdb://")
                    else FileSource(path=s) for s in args.source)
    model = ModelParams(checkpoint=args.checkpoint, device=args.device)
    config = health_config(settings, engine_config(model, settings), sources, min_free_gb=args.min_free_gb,
                           check_model=not args.no_model, prefect_api_url=os.environ.get("PREFECT_API_URL"),
                           output_root=Path(args.output_root).resolve() if args.output_root else None)
    report = health_report(config)
    print(json.dumps(report, indent=2))
    return 0 if report["status"] == "healthy" else 1


def _worker(args: argparse.Namespace) -> int:
    import shutil

    from pipeline.health import build_report, health_config, preflight_checks
    from pipeline.params import engine_config
    from pipeline.settings import load_settings

    device = args.device or ("gpu" if args.device_index is not None else
                             args.pool if args.pool in ("cpu", "gpu") else None)
    if args.device_index is not None:
        if device == "cpu":
            raise ConfigurationError("--device-index pins a GPU; it cannot go with --device cpu. Fix: drop one.")
        os.environ["FORECAST_DEVICE_INDEX"] = str(args.device_index)  # the flow runs inherit it
    settings = load_settings()
    config = health_config(settings, engine_config(ModelParams(device=device), settings), check_model=False,
                           min_free_gb=args.min_free_gb)
    report = build_report(preflight_checks(config))
    if report["status"] != "healthy":
        print(json.dumps(report, indent=2))
        failed = " ".join(f"[{name}] {c['detail']}" for name, c in report["checks"].items() if not c["ok"])
        raise ConfigurationError(f"This worker cannot serve, so it did not start. {failed}")
    if args.check:
        print(json.dumps(report, indent=2))
        return 0
    on_gpu = config.engine.device == "gpu" or report["checks"]["device"]["detail"].startswith("cuda")
    limit = args.limit or (1 if on_gpu else None)
    name = args.name
    if name is None and args.device_index is not None:  # which GPU of which host, in the UI's worker list
        name = "-".join([args.pool, os.uname().nodename, f"gpu{args.device_index}", *args.work_queue])
    sibling = Path(sys.executable).with_name("prefect")  # this environment's Prefect, not another on PATH
    prefect = str(sibling) if sibling.is_file() else shutil.which("prefect") or "prefect"
    command = [prefect, "worker", "start", "--pool", args.pool, "--type", "process"]
    command += ["--name", name] if name else []
    command += [arg for queue in args.work_queue for arg in ("--work-queue", queue)]
    command += ["--limit", str(limit)] if limit else []
    logging.getLogger(__name__).info("Starting %s (device: %s)", " ".join(command[1:]),
                                     report["checks"]["device"]["detail"])
    sys.stdout.flush()
    # Prefect stops its worker on SIGTERM by sending itself SIGINT. A shell's background job (`cmd &`, as
    # ./setup.sh serve starts it) begins with SIGINT ignored, which the exec would keep: the worker would
    # then never stop on SIGTERM, only on SIGKILL. Default again, Python turns it into KeyboardInterrupt.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.execv(prefect, command)  # the worker replaces this process: signals and exit status are its own


def _metrics_exporter(args: argparse.Namespace) -> int:
    import threading

    from pipeline.metrics import serve_metrics
    from pipeline.settings import load_settings

    root = Path(args.output_root).resolve() if args.output_root else load_settings().resolved_output_root()
    server, _ = serve_metrics(root, args.host, args.port)
    print(f"Serving metrics of {root} at http://{args.host}:{server.server_port}/metrics (Ctrl-C stops)",
          flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.shutdown()
    return 0


def _make_tiny(args: argparse.Namespace) -> int:
    from forecast_model import make_tiny_checkpoint

    checkpoint = make_tiny_checkpoint(args.directory)
    print(f"Wrote a tiny random-weight checkpoint to {checkpoint.weights.parent} "
          "(its forecasts are meaningless: use it for smoke runs only).")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``forecast`` console script."""
    for key, value in _ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    args = _parser().parse_args(argv)
    level = "DEBUG" if args.verbose else os.environ.get("LOG_LEVEL", "INFO").upper()
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", level)
    commands = {"run": _run, "backtest": _backtest, "detect": _detect, "health": _health, "worker": _worker,
                "metrics-exporter": _metrics_exporter, "make-tiny-checkpoint": _make_tiny}
    log_file = None
    try:
        log_file = _configure_logging(verbose=level == "DEBUG")
        return commands[args.command](args)
    except _RunFailed as failed:
        return _error(failed.error, log_file, failed.run_id)
    except Exception as exc:  # noqa: BLE001 - the last stop: any error is reported once, with its exit code
        return _error(exc, log_file)


def _configure_logging(verbose: bool) -> Path | None:
    """Everything goes to the log file; the terminal gets progress and warnings, and errors only from the CLI.

    Prefect sets up both at its import, from ``flows/logging.yml`` (``_ENV_DEFAULTS``). Where Prefect was
    configured otherwise (imported earlier in this process, or a user's own logging.yml without the file),
    the file handler is added to the root logger here: the CLI always leaves a full log behind.

    Prefect logs a failing run's traceback and its failed state at ERROR; the CLI reports the failure once
    itself, so those records stay off the terminal (they remain in the run's log and in the log file).
    """
    import prefect.main  # noqa: F401 - sets up Prefect's logging, which the handlers below extend

    from pipeline.logfile import file_handler

    root = logging.getLogger()
    if not verbose:
        for handler in root.handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler) and \
                    not any(isinstance(f, _CliReportsErrors) for f in handler.filters):
                handler.addFilter(_CliReportsErrors())
    path = next((getattr(h, "baseFilename", None) for h in root.handlers if _writes_the_log_file(h)), None)
    if path is None:
        handler = file_handler()
        root.addHandler(handler)
        path = getattr(handler, "baseFilename", None)
    return Path(path) if path else None


def _writes_the_log_file(handler: logging.Handler) -> bool:
    from pipeline.logfile import RunFields

    return hasattr(handler, "baseFilename") and any(isinstance(f, RunFields) for f in handler.filters)


class _CliReportsErrors(logging.Filter):
    """Keeps Prefect's error records (tracebacks) and its failed-state line, both restating the error the CLI
    prints, off the terminal."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("prefect"):
            return True
        return record.levelno < logging.ERROR and not record.getMessage().startswith(_FAILED_STATE_LINES)


_FAILED_STATE_LINES = ("Finished in state Failed", "Finished in state Crashed")


def _error(exc: BaseException, log_file: Path | None, run_id: str | None = None) -> int:
    """Prints one error line (bad input: exit 2) or one traceback and the line (anything else: exit 1)."""
    from prefect.exceptions import ParameterTypeError
    from pydantic import ValidationError

    bad_input = isinstance(exc, (ConfigurationError, ValidationError, ParameterTypeError))
    if not bad_input:
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    print(f"error: {_describe(exc)}", file=sys.stderr)
    where = [f"flow run {run_id}"] if run_id else []
    where += [f"full log: {log_file}"] if log_file else []
    if where:
        print("(" + "; ".join(where) + ")", file=sys.stderr)
    return 2 if bad_input else 1


def _describe(exc: BaseException) -> str:
    """The message of an error on one line; pydantic's without the offending input (it may be a secret)."""
    from prefect.exceptions import ParameterTypeError
    from pydantic import ValidationError

    from pipeline.errors import describe_invalid

    if isinstance(exc, ValidationError):
        text = describe_invalid(exc)
    elif isinstance(exc, ParameterTypeError):
        lines = [line.strip().removeprefix("- ") for line in str(exc).splitlines()[1:]]
        text = "invalid parameters: " + "; ".join(line.replace("Value error, ", "") for line in lines)
    else:
        text = str(exc) if isinstance(exc, ConfigurationError) else f"{type(exc).__name__}: {exc}"
    return text if len(text) <= MAX_MESSAGE_CHARS else f"{text[:MAX_MESSAGE_CHARS]}... (cut)"


if __name__ == "__main__":
    sys.exit(main())
