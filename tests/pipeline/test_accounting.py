"""Run accounting: counts add up across shards, and the two publish rules hold at their edges."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline.accounting import (
    SeriesCounts,
    check_rejected_fraction,
    check_something_forecast,
    reason_examples,
    rejection_report,
)
from pipeline.errors import DataValidationError


def statuses(ok: int, rejected: int, failed: int) -> pd.DataFrame:
    kinds = ["ok"] * ok + ["rejected"] * rejected + ["failed"] * failed
    reasons = [None] * ok + ["constant"] * rejected + ["non_finite_forecast"] * failed
    return pd.DataFrame({"unique_id": [f"s{i:02d}" for i in range(len(kinds))], "status": kinds, "reason": reasons})


def test_counts_of_a_status_table() -> None:
    counts = SeriesCounts.from_status(statuses(3, 2, 1))
    assert counts == SeriesCounts(ok=3, rejected=2, failed=1, by_reason={"constant": 2, "non_finite_forecast": 1})
    assert (counts.total(), counts.left_out()) == (6, 3)
    assert counts.published_fields() == {"series_in": 6, "series_ok": 3, "series_rejected": 2, "series_failed": 1}


def test_shard_counts_add_up_to_the_job() -> None:
    a = SeriesCounts(ok=2, rejected=1, by_reason={"constant": 1})
    b = SeriesCounts(ok=1, failed=2, rejected=1, by_reason={"constant": 1, "non_finite_forecast": 2})
    assert a + b == SeriesCounts(ok=3, rejected=2, failed=2, by_reason={"constant": 2, "non_finite_forecast": 2})
    assert SeriesCounts.sum([a, b, SeriesCounts()]) == a + b
    assert SeriesCounts.sum([]) == SeriesCounts() and SeriesCounts().total() == 0


@pytest.mark.parametrize(("rejected", "failed", "limit", "fails"),
                         [(1, 1, 0.2, False), (1, 1, 0.19, True), (0, 3, 0.2, True), (3, 0, 0.2, True),
                          (0, 0, 0.0, False), (0, 10, 1.0, False)])
def test_failed_series_count_against_the_limit_like_rejected_ones(rejected: int, failed: int, limit: float,
                                                                  fails: bool) -> None:
    status = statuses(10 - rejected - failed, rejected, failed)
    counts = SeriesCounts.from_status(status)
    if not fails:
        check_rejected_fraction(counts, limit)
        return
    with pytest.raises(DataValidationError) as raised:
        check_rejected_fraction(counts, limit, reason_examples(status))
    message = str(raised.value)
    assert f"{rejected + failed} of 10 series cannot be forecast ({rejected} rejected, {failed} failed" in message
    assert all(f"{reason} (" in message for reason in status["reason"].dropna().unique()), message
    assert "e.g. " in message and "s0" in message.split("e.g. ", 1)[1], "examples are named when given"
    assert "nothing is published" in message and "Fix:" in message


def test_nothing_forecast_fails_with_the_reasons_and_something_forecast_passes() -> None:
    check_something_forecast(SeriesCounts(ok=1, rejected=99, by_reason={"constant": 99}))
    status = statuses(0, 2, 3)
    with pytest.raises(DataValidationError, match=r"all 5 were rejected or failed \(2 rejected, 3 failed\).*"
                                                  r"constant \(.*\): 2 series, e\.g\. 's00', 's01'.*"
                                                  r"non_finite_forecast \(.*\): 3 series.*Fix:"):
        check_something_forecast(SeriesCounts.from_status(status), reason_examples(status))


def test_examples_are_bounded_per_reason() -> None:
    status = statuses(0, 8, 0)
    status.loc[0, "unique_id"] = "x" * 10_000
    examples = reason_examples(status, limit=3)
    assert list(examples) == ["constant"] and len(examples["constant"]) < 250
    assert "s03" not in examples["constant"], "only the first few ids are named"


def test_rejection_report_names_status_reason_and_a_few_bounded_examples() -> None:
    status = statuses(0, 0, 1)
    status.loc[0, "unique_id"] = "x" * 10_000
    (row,) = rejection_report(status)
    assert (row["reason"], row["status"], row["series"]) == ("non_finite_forecast", "failed", 1)
    assert len(row["examples"]) < 200, "an id of any length is shown cut"
