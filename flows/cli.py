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

# None of these import Prefect, which must see the environment defaults below before it loads.
from flows.params import ModelParams
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="forecast", description="TimesFM-2.0 batch forecasting.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="Forecast a CSV or Parquet file and publish Parquet results.")
    run.add_argument("--source", required=True,
                     help="A .csv/.parquet path or glob, an http(s):// URL, or duckdb:///path/to.db "
                          "(with --table or --query).")
    run.add_argument("--table", help="DuckDB source: table or view to read.")
    run.add_argument("--query", help="DuckDB source: one SELECT/WITH query; use ? placeholders.")
    run.add_argument("--query-param", action="append", default=[], metavar="VALUE",
                     help="DuckDB source: a value bound to the next ? placeholder (repeatable).")
    run.add_argument("--content", choices=["auto", "csv", "parquet"], default="auto",
                     help="URL source: file type (default: detect).")
    run.add_argument("--horizon", type=int, help="Steps to forecast (default TIMESFM20_DEFAULT_HORIZON_LEN).")
    run.add_argument("--format", choices=["long", "wide"], default="long")
    run.add_argument("--id-col", default="unique_id")
    run.add_argument("--time-col", default="ds")
    run.add_argument("--target-col", default="y")
    run.add_argument("--freq", help="Pandas frequency alias (e.g. D, W, MS, QS); inferred if omitted.")
    run.add_argument("--checkpoint", help="Hugging Face repo id or local checkpoint path.")
    run.add_argument("--device", choices=["auto", "cpu", "gpu"])
    run.add_argument("--context-len", type=int)
    run.add_argument("--job", help="Job name (default: derived from the source's name).")
    run.add_argument("--max-rejected-fraction", type=float,
                     help="Fail when a larger share of series is rejected (default 0.2).")
    run.add_argument("--max-staleness", type=int,
                     help="Reject series whose last value is more than this many periods before --as-of.")
    run.add_argument("--output-root", help="Output directory (default FORECAST_OUTPUT_ROOT or data/outputs).")
    run.add_argument("--as-of", type=date.fromisoformat, help="Logical date YYYY-MM-DD (default today, UTC).")
    tiny = commands.add_parser("make-tiny-checkpoint",
                               help="Write a tiny random-weight checkpoint (meaningless forecasts, for smoke runs).")
    tiny.add_argument("directory")
    return parser


def _source(args: argparse.Namespace) -> FileSource | UrlSource | DuckDBSource:
    columns = ColumnMapping(id_col=args.id_col, time_col=args.time_col, target_col=args.target_col)
    common = {"format": args.format, "columns": columns}
    if args.source.startswith(("http://", "https://")):
        return UrlSource(url=args.source, content=args.content, **common)
    if args.source.startswith("duckdb://"):
        return DuckDBSource(database=args.source.removeprefix("duckdb://"), table=args.table, query=args.query,
                            params=args.query_param, **common)
    return FileSource(path=args.source, **common)


def _run(args: argparse.Namespace) -> int:
    from flows.batch_forecast import batch_forecast

    checks = {k: v for k, v in (("max_rejected_fraction", args.max_rejected_fraction),
                                ("max_staleness", args.max_staleness)) if v is not None}
    model = ModelParams(checkpoint=args.checkpoint, device=args.device, context_len=args.context_len)
    summary = batch_forecast(source=_source(args), horizon=args.horizon, model=model,
                             checks=SeriesChecks(**checks), freq=args.freq, job=args.job, as_of=args.as_of,
                             output_root=args.output_root)
    print(f"Forecast {summary.series_ok} of {summary.series_in} series ({summary.forecast_rows} rows; "
          f"{summary.series_rejected} rejected, {summary.series_failed} failed) for job {summary.job!r}, "
          f"as_of {summary.as_of}.")
    for table, path in summary.outputs.items():
        print(f"{table}: {path}")
    print(f"MLflow run: {summary.mlflow_run_id}")
    print(json.dumps(summary.model_dump(mode="json")))
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
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", os.environ.get("LOG_LEVEL", "INFO").upper())
    from pydantic import ValidationError

    from forecast_model import ConfigurationError

    try:
        return _run(args) if args.command == "run" else _make_tiny(args)
    except (ConfigurationError, ValidationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        logging.getLogger("forecast").exception("Run failed")
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
