"""The ``forecast`` command: run the batch flow locally, or make a tiny checkpoint for smoke runs.

Exit codes: 0 success, 2 bad input or configuration (the message says what to fix), 1 anything else.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from datetime import date
from typing import Any

# None of these import Prefect, which must see the environment defaults below before it loads.
from flows.params import BacktestSummary, ModelParams, RunSummary
from tasks.canonical import ColumnMapping
from tasks.series_checks import SeriesChecks
from tasks.sources import DuckDBSource, FileSource, UrlSource

# Defaults for a local run, set before Prefect is imported (it reads them at import).
_ENV_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    "PREFECT_LOGGING_EXTRA_LOGGERS": "forecast_model",
    "MLFLOW_DISABLE_TELEMETRY": "true",
}


def _common_arguments(command: argparse.ArgumentParser) -> None:
    """Source, model and run arguments shared by `run` and `backtest`."""
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
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="Forecast a source and publish Parquet results.")
    _common_arguments(run)
    run.add_argument("--horizon", type=int, help="Steps to forecast (default TIMESFM20_DEFAULT_HORIZON_LEN).")
    backtest = commands.add_parser("backtest", help="Score TimesFM against naive baselines on a source.")
    _common_arguments(backtest)
    backtest.add_argument("--h", type=int, default=12, help="Horizon of each window (default 12).")
    backtest.add_argument("--n-windows", type=int, default=3, help="Number of cutoffs (default 3).")
    backtest.add_argument("--step", type=int, help="Steps between cutoffs (default: h).")
    backtest.add_argument("--season-length", type=int, help="Seasonal period (default: from the frequency).")
    health = commands.add_parser("health", help="Print the health report as JSON; exit 0 healthy, 1 unhealthy.")
    health.add_argument("--checkpoint", help="Checkpoint to check (default TIMESFM20_DEFAULT_CHECKPOINT).")
    health.add_argument("--device", choices=["auto", "cpu", "gpu"])
    health.add_argument("--source", action="append", default=[],
                        help="A source to check for reachability: path or glob, URL, or duckdb://file (repeatable).")
    health.add_argument("--no-model", action="store_true", help="Skip loading the model (a cheap liveness check).")
    health.add_argument("--min-free-gb", type=float, default=1.0)
    health.add_argument("--output-root")
    tiny = commands.add_parser("make-tiny-checkpoint",
                               help="Write a tiny random-weight checkpoint (meaningless forecasts, for smoke runs).")
    tiny.add_argument("directory")
    return parser


def _source(args: argparse.Namespace) -> FileSource | UrlSource | DuckDBSource:
    columns = ColumnMapping(id_col=args.id_col, time_col=args.time_col, target_col=args.target_col)
    common = {"format": args.format, "columns": columns}
    if args.source.startswith(("http://", "https://", "secret:")):
        address = ({"url_secret": args.source.removeprefix("secret:")} if args.source.startswith("secret:")
                   else {"url": args.source})
        return UrlSource(**address, headers_secret=args.headers_secret, content=args.content, **common)
    if args.source.startswith("duckdb://"):
        return DuckDBSource(database=args.source.removeprefix("duckdb://"), table=args.table, query=args.query,
                            params=args.query_param, **common)
    return FileSource(path=args.source, **common)


def _run_options(args: argparse.Namespace) -> dict[str, Any]:
    checks = {k: v for k, v in (("max_rejected_fraction", args.max_rejected_fraction),
                                ("max_staleness", args.max_staleness)) if v is not None}
    model = ModelParams(checkpoint=args.checkpoint, device=args.device, context_len=args.context_len,
                        expected_sha256=args.expected_sha256)
    return {"source": _source(args), "model": model, "checks": SeriesChecks(**checks), "freq": args.freq,
            "job": args.job, "as_of": args.as_of, "output_root": args.output_root,
            "tracking_required": args.tracking_required}


def _report(summary: RunSummary | BacktestSummary, headline: str) -> int:
    print(headline)
    for table, path in summary.outputs.items():
        print(f"{table}: {path}")
    print(f"MLflow run: {summary.mlflow_run_id or 'not recorded (' + summary.tracking_status + ')'}")
    print(json.dumps(summary.model_dump(mode="json")))
    return 0


def _run(args: argparse.Namespace) -> int:
    from flows.batch_forecast import batch_forecast

    summary = batch_forecast(horizon=args.horizon, **_run_options(args))
    return _report(summary, f"Forecast {summary.series_ok} of {summary.series_in} series ({summary.forecast_rows} "
                            f"rows; {summary.series_rejected} rejected, {summary.series_failed} failed) for job "
                            f"{summary.job!r}, as_of {summary.as_of}.")


def _backtest(args: argparse.Namespace) -> int:
    from flows.batch_backtest import batch_backtest

    summary = batch_backtest(h=args.h, n_windows=args.n_windows, step=args.step,
                             season_length=args.season_length, **_run_options(args))
    lines = [f"  {model:<14} " + "  ".join(f"{k}={v:.4g}" for k, v in metrics.items())
             for model, metrics in summary.overall.items()]
    return _report(summary, f"Backtested {summary.series_ok} of {summary.series_in} series for job {summary.job!r}; "
                            f"TimesFM beats seasonal naive on {summary.share_beating_seasonal_naive:.0%} of them.\n"
                            + "\n".join(lines))


def _health(args: argparse.Namespace) -> int:
    from pathlib import Path

    from flows.params import engine_config
    from tasks.health import build_report, health_config, run_checks
    from tasks.settings import load_settings

    settings = load_settings()
    sources = tuple(UrlSource(url=s) if s.startswith(("http://", "https://")) else
                    DuckDBSource(database=s.removeprefix("duckdb://"), query="SELECT 1") if s.startswith("duckdb://")
                    else FileSource(path=s) for s in args.source)
    model = ModelParams(checkpoint=args.checkpoint, device=args.device)
    config = health_config(settings, engine_config(model, settings), sources, min_free_gb=args.min_free_gb,
                           check_model=not args.no_model, prefect_api_url=os.environ.get("PREFECT_API_URL"),
                           output_root=Path(args.output_root).resolve() if args.output_root else None)
    report = build_report(run_checks(config))
    print(json.dumps(report, indent=2))
    return 0 if report["status"] == "healthy" else 1


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
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", os.environ.get("LOG_LEVEL", "INFO").upper())
    from pydantic import ValidationError

    from forecast_model import ConfigurationError

    try:
        commands = {"run": _run, "backtest": _backtest, "health": _health, "make-tiny-checkpoint": _make_tiny}
        return commands[args.command](args)
    except (ConfigurationError, ValidationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        logging.getLogger("forecast").exception("Run failed")
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
