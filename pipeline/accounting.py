"""Run accounting: how many series went in, were forecast, rejected or failed, and the rules on those counts.

One model, :class:`SeriesCounts`, carries the counts of a stage, a shard or a whole job (shards add up
with ``+``); the two rules that decide whether a run may publish are stated here once and used by every
flow, sharded or not.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from forecast_model.errors import shorten_names
from pipeline.contracts import ID, SeriesStatus
from pipeline.errors import DataValidationError
from pipeline.series_checks import REASONS

__all__ = ["SeriesCounts", "check_rejected_fraction", "check_something_forecast", "reason_examples",
           "rejection_report"]


class SeriesCounts(BaseModel):
    """Series of a run (or a stage or shard of one) by outcome, and the left-out ones by reason code."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ok: int = Field(0, ge=0)
    rejected: int = Field(0, ge=0)
    failed: int = Field(0, ge=0)
    by_reason: dict[str, int] = Field(default_factory=dict, description="Rejected or failed series per reason.")

    @classmethod
    def from_status(cls, status: pd.DataFrame) -> SeriesCounts:
        """The counts of a series-status table (one row per series; ``status`` and ``reason`` columns)."""
        outcomes = status["status"].value_counts()
        return cls(ok=int(outcomes.get(SeriesStatus.OK.value, 0)),
                   rejected=int(outcomes.get(SeriesStatus.REJECTED.value, 0)),
                   failed=int(outcomes.get(SeriesStatus.FAILED.value, 0)),
                   by_reason={str(k): int(v) for k, v in status["reason"].dropna().value_counts().items()})

    @classmethod
    def sum(cls, parts: Iterable[SeriesCounts]) -> SeriesCounts:
        """The counts of a job from those of its shards."""
        total = cls()
        for part in parts:
            total = total + part
        return total

    def __add__(self, other: SeriesCounts) -> SeriesCounts:
        return SeriesCounts(ok=self.ok + other.ok, rejected=self.rejected + other.rejected,
                            failed=self.failed + other.failed,
                            by_reason=dict(Counter(self.by_reason) + Counter(other.by_reason)))

    def total(self) -> int:
        """Every series that went in."""
        return self.ok + self.rejected + self.failed

    def left_out(self) -> int:
        """Series absent from the output: rejected before inference or failed in it."""
        return self.rejected + self.failed

    def published_fields(self) -> dict[str, int]:
        """The counts under their published names (runs table, run summary, MLflow metrics)."""
        return {"series_in": self.total(), "series_ok": self.ok, "series_rejected": self.rejected,
                "series_failed": self.failed}


def reason_examples(status: pd.DataFrame, limit: int = 5) -> dict[str, str]:
    """A few ids (each cut short) of the left-out series of each reason, for messages."""
    left_out = status[status["status"] != SeriesStatus.OK.value]
    return {str(reason): shorten_names(group[ID].head(limit), each=60)[1:-1]
            for reason, group in left_out.groupby("reason", sort=True)}


def rejection_report(status: pd.DataFrame, limit: int = 5) -> list[dict[str, Any]]:
    """Series left out (rejected or failed) by reason: status, count, meaning and a few examples."""
    left_out = status[status["status"] != SeriesStatus.OK.value]
    examples = reason_examples(left_out, limit)
    return [{"reason": reason, "status": group["status"].iloc[0], "series": len(group), "meaning": REASONS[reason],
             "examples": examples[reason]} for reason, group in left_out.groupby("reason", sort=True)]


def _reasons(counts: SeriesCounts, examples: Mapping[str, str]) -> str:
    return "; ".join(f"{reason} ({REASONS.get(reason, 'unknown reason')}): {n} series"
                     + (f", e.g. {examples[reason]}" if reason in examples else "")
                     for reason, n in sorted(counts.by_reason.items()))


def check_rejected_fraction(counts: SeriesCounts, limit: float, examples: Mapping[str, str] | None = None) -> None:
    """Fails the run when more than ``limit`` of its series are rejected *or* failed: a series the model could
    not forecast is as absent from the output as one validation left out.

    Raises:
        DataValidationError: naming both counts, every reason (with examples where given) and the fix.
    """
    if counts.left_out() == 0 or counts.left_out() / counts.total() <= limit:
        return
    raise DataValidationError(
        f"{counts.left_out()} of {counts.total()} series cannot be forecast ({counts.rejected} rejected, "
        f"{counts.failed} failed; {counts.left_out() / counts.total():.0%}, more than max_rejected_fraction="
        f"{limit:.0%}), so nothing is published. {_reasons(counts, examples or {})}. Fix: correct those series in "
        "the input (for duplicates: aggregate or drop them), or raise checks.max_rejected_fraction.")


def check_something_forecast(counts: SeriesCounts, examples: Mapping[str, str] | None = None) -> None:
    """A run that forecast nothing must not publish: it would replace a good partition with an empty one.

    Raises:
        DataValidationError: naming every reason (with examples where given) and the fix.
    """
    if counts.ok > 0:
        return
    raise DataValidationError(
        f"No series could be forecast: all {counts.total()} were rejected or failed ({counts.rejected} rejected, "
        f"{counts.failed} failed), so nothing is published and earlier outputs are intact. "
        f"{_reasons(counts, examples or {})}. Fix: correct the input; docs/DATA_FORMAT.md explains each reason.")
