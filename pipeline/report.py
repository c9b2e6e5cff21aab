"""What a run tells the people who open it: the Prefect run summary, the links between Prefect and MLflow,
and a validation summary that renders anywhere.

Pure functions of the manifest and what was published; the tasks that hand them to Prefect and MLflow
live in ``tasks/``.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pipeline.manifest import RunManifest
from pipeline.series_checks import FAILED_REASON
from pipeline.sources import DuckDBSource, FileSource, UrlSource, redact_url

__all__ = ["artifact_key", "dataset_uri", "mlflow_run_url", "monitoring_markdown", "plot_title", "run_name",
           "run_summary",
           "series_count_rows", "validation_html"]

_METRICS = (("device", "device"), ("precision", "precision"), ("batch_size", "batch size"),
            ("series_per_second", "series/s"), ("inference_seconds", "inference s"), ("shards", "shards"),
            ("workers", "workers"))


def artifact_key(flow_name: str, job: str) -> str:
    """The start of a run's Prefect artifact keys (lowercase letters, digits, dashes), one per flow and job:
    the Artifacts page then keeps each job's latest summary, with the earlier ones as its versions."""
    slug = re.sub(r"[^a-z0-9]+", "-", f"{flow_name}-{job}".lower()).strip("-")[:80].strip("-")
    return slug or "run"


def dataset_uri(source: FileSource | UrlSource | DuckDBSource) -> str | None:
    """Where the input came from, as an MLflow dataset source: the file path or glob, the address (without
    credentials), the database file; None for an address kept in a secret (it must not be logged)."""
    if isinstance(source, FileSource):
        return str(Path(source.path).absolute())
    if isinstance(source, UrlSource):
        return redact_url(source.url) if source.url else None
    return str(Path(source.database).absolute())


def plot_title(job: str, as_of: str, checkpoint: str, sha256: str) -> str:
    """The sample plot's title: which job, which day, which weights."""
    return f"{_cut(job, 60)} as of {as_of} | {_cut(checkpoint, 80)} (sha256 {sha256[:12]})"


def run_name(job: str, as_of: str) -> str:
    """The MLflow run name of a job's run: ``<job>/<as_of>`` (a re-run for the same day gets the same name)."""
    return f"{job}/{as_of}"


def mlflow_run_url(ui_url: str | None, tracking_uri: str, experiment_id: str, run_id: str) -> str | None:
    """The MLflow UI page of a run: under ``ui_url`` (MLFLOW_UI_URL), else under an HTTP tracking server;
    None for a local store nobody serves."""
    base = ui_url or (tracking_uri if tracking_uri.startswith(("http://", "https://")) else None)
    if base is None:
        return None
    return f"{base.rstrip('/')}/#/experiments/{quote(experiment_id)}/runs/{quote(run_id)}"


def series_count_rows(manifest: RunManifest) -> list[dict[str, Any]]:
    """Series by outcome, and the left-out ones by reason: the run's status counts as table rows."""
    rows: list[dict[str, Any]] = [{"outcome": "forecast", "reason": "", "series": manifest.series_ok}]
    for reason, count in sorted(manifest.rejected_by_reason.items()):
        rows.append({"outcome": "failed" if reason == FAILED_REASON else "rejected", "reason": reason,
                     "series": count})
    rows.append({"outcome": "total", "reason": "", "series": manifest.series_in})
    return rows


def run_summary(manifest: RunManifest, *, outputs: dict[str, str], catalog: Path, metrics: dict[str, float],
                mlflow_url: str | None, tracking_uri: str, warnings: list[str]) -> str:
    """The run summary in Markdown: outcome, model, timings, where the outputs are and how to query them."""
    lines = [f"# {manifest.flow_name}: {manifest.job} as of {manifest.as_of}", "",
             f"**{manifest.series_ok:,} of {manifest.series_in:,} series forecast**, {manifest.series_rejected:,} "
             f"rejected, {manifest.series_failed:,} failed; {manifest.output_rows:,} output rows.", ""]
    if manifest.rejected_by_reason:
        lines += ["Left out by reason: " + ", ".join(f"`{reason}` {count:,}" for reason, count
                                                      in sorted(manifest.rejected_by_reason.items())) + ".", ""]
    figures = [f"{label} {_figure(metrics[key])}" for key, label in _METRICS if key in metrics]
    weights = "random weights (no accuracy meaning)" if manifest.random_weights else "published weights"
    lines += ["| | |", "|---|---|",
              f"| source | {_code(manifest.source)} |",
              f"| checkpoint | {_code(manifest.checkpoint)} ({weights}) |",
              f"| checkpoint SHA-256 | `{manifest.checkpoint_sha256}` |",
              f"| input fingerprint | `{manifest.input_fingerprint}` |",
              f"| horizon | {manifest.parameters.get('horizon', '')} |",
              f"| device | {_cut(manifest.device, 100)}, {_cut(manifest.precision, 100)} |",
              f"| engine | {', '.join(figures)} |",
              f"| stages (s) | {_timings(manifest.timings)} |",
              f"| MLflow | {_mlflow_cell(manifest, mlflow_url, tracking_uri)} |", ""]
    lines += ["## Outputs", ""] + [f"- `{name}`: {_code(path, 500)}" for name, path in sorted(outputs.items())] + [""]
    lines += ["## Query", "", f"The DuckDB catalog `{catalog}` has a view per table:", "", "```sql",
              f"-- duckdb -readonly {catalog}",
              "SELECT unique_id, ds, forecast, q10, q90 FROM forecasts",
              f"WHERE job = '{_sql_text(manifest.job)}' AND as_of = DATE '{manifest.as_of}'",
              "ORDER BY unique_id, ds LIMIT 20;", "```", ""]
    if warnings:
        lines += ["## Warnings", ""] + [f"- {_cut(w, 500)}" for w in warnings] + [""]
    return "\n".join(lines)


def monitoring_markdown(job: str, as_of: str, summary: dict[str, Any], threshold: float) -> str:
    """The run's monitoring artifact: revisions since the previous run, realized accuracy, most revised series."""
    lines = [f"# Monitoring of {_cut(job, 64)} as of {as_of}", ""]
    if summary.get("previous_as_of"):
        share = summary["series_revised"] / max(summary["series_compared"], 1)
        lines += [f"**{summary['series_revised']} of {summary['series_compared']} series revised** ({share:.1%}) "
                  f"since the run of {summary['previous_as_of']} (scaled revision above {threshold:g}); "
                  f"{summary['series_new']} new, {summary['series_gone']} gone.", ""]
    else:
        lines += ["No earlier run of this job: nothing to compare.", ""]
    accuracy = summary.get("accuracy") or {}
    lines += [f"**{summary['points_scored']} points scored** of {summary['forecast_runs_scored']} earlier forecast "
              "run(s) against this run's actuals.", ""]
    if accuracy:
        lines += ["| accuracy of these points | value |", "|---|---|",
                  *[f"| {name} | {value:.4g} |" for name, value in accuracy.items()], ""]
    if summary.get("most_revised"):
        lines += ["| most revised series | scaled revision | largest change | at |", "|---|---|---|---|",
                  *[f"| {_code(str(r['unique_id']), 80)} | {r['scaled_revision']} | {r['largest_revision']} | "
                    f"{r['largest_revision_ds']} |" for r in summary["most_revised"]]]
    return "\n".join(lines)


def validation_html(result: dict[str, Any], title: str) -> str:
    """The great-expectations result as one self-contained HTML page (inline style, no scripts or fetched
    assets): MLflow's artifact viewer shows GX's own Data Docs without their stylesheets."""
    rows = []
    for entry in result.get("results", []):
        config = entry.get("expectation_config") or {}
        kwargs = {k: v for k, v in (config.get("kwargs") or {}).items() if k not in ("batch_id", "result_format")}
        outcome = entry.get("result") or {}
        unexpected = outcome.get("unexpected_count", "")
        ok = bool(entry.get("success"))
        rows.append(f"<tr class='{'ok' if ok else 'bad'}'><td>{'passed' if ok else 'FAILED'}</td>"
                    f"<td>{html.escape(str(config.get('type', '')))}</td>"
                    f"<td>{html.escape(_cut(str(kwargs), 300))}</td><td>{html.escape(str(unexpected))}</td></tr>")
    statistics = result.get("statistics") or {}
    verdict = "passed" if result.get("success") else "failed"
    return ("<!doctype html><html><head><meta charset='utf-8'><title>" + html.escape(title) + "</title><style>"
            "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}"
            "tr.ok td:first-child{color:#1a7f37}tr.bad td:first-child{color:#c62828;font-weight:bold}"
            "</style></head><body>"
            f"<h1>{html.escape(title)}</h1><p>The suite {verdict}: "
            f"{statistics.get('successful_expectations', '?')} of {statistics.get('evaluated_expectations', '?')} "
            "expectations met. Row-level failures reject the series concerned (see series_status), not the run.</p>"
            "<table><tr><th>result</th><th>expectation</th><th>arguments</th><th>unexpected rows</th></tr>"
            + "".join(rows) + "</table></body></html>")


def _figure(value: object) -> str:
    return f"{value:,.2f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)


def _timings(timings: dict[str, float]) -> str:
    shown = [f"{name} {seconds:.2f}" for name, seconds in timings.items() if "." not in name and name != "total"]
    return ", ".join(shown + ([f"**total {timings['total']:.2f}**"] if "total" in timings else []))


def _mlflow_cell(manifest: RunManifest, url: str | None, tracking_uri: str) -> str:
    if manifest.mlflow_run_id is None:
        return f"not recorded ({_cut(manifest.tracking_error or manifest.tracking_status, 300)})"
    if url:
        return f"[run {manifest.mlflow_run_id}]({url})"
    return (f"run `{manifest.mlflow_run_id}` in `{redact_url(tracking_uri)}` (see it with "
            f"`mlflow ui --backend-store-uri {redact_url(tracking_uri)}`)")


def _cut(text: str, limit: int) -> str:
    """Text from the input for one Markdown line or table cell: cut short, on one line, no cell breaks."""
    flat = " ".join(text[:limit].split()).replace("|", "\\|")
    return flat if len(text) <= limit else f"{flat}... ({len(text) - limit:,} more characters)"


def _code(text: str, limit: int = 200) -> str:
    """``text`` as inline code; a backtick in it would end the span, so it becomes a quote."""
    return "`" + _cut(text, limit).replace("`", "'") + "`"


def _sql_text(text: str) -> str:
    return text.replace("'", "''")
