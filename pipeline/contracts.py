"""The data contracts, stated once: canonical input frame, forecast table, series-status table.

Every loader produces the canonical frame; every writer checks its table against the schema here; the
docs (docs/DATA_FORMAT.md) describe the same columns.
"""

from __future__ import annotations

import enum
from typing import Annotated

import pyarrow as pa
from pydantic import Field

__all__ = [
    "ANOMALY_SCHEMA",
    "COVARIATE_EFFECTS_SCHEMA",
    "DS",
    "EVALUATION_SCHEMA",
    "FORECAST_SCHEMA",
    "ID",
    "INPUT_SCHEMA",
    "MAX_CONTEXT",
    "MAX_HORIZON",
    "PENDING_SCHEMA",
    "QUANTILE_COLUMNS",
    "REALIZED_SCHEMA",
    "REALIZED_SERIES_SCHEMA",
    "REVISION_SCHEMA",
    "RUNS_SCHEMA",
    "SCALES_SCHEMA",
    "STATUS_SCHEMA",
    "ContextLength",
    "Horizon",
    "SeriesStatus",
    "Y",
]

ID, DS, Y = "unique_id", "ds", "y"

# One bound each, wherever a horizon or context length is given: flow parameters, settings, the shard wire.
# Past 128 steps TimesFM feeds back its own forecasts; 10,000 keeps a forecast table of any job bounded.
MAX_HORIZON = 10_000
MAX_CONTEXT = 16_384
Horizon = Annotated[int, Field(gt=0, le=MAX_HORIZON, description="Steps to forecast, in the series' frequency.")]
ContextLength = Annotated[int, Field(gt=0, le=MAX_CONTEXT,
                                     description="Most recent points given to the model (capped by the model).")]
QUANTILE_LEVELS = (10, 20, 30, 40, 50, 60, 70, 80, 90)
QUANTILE_COLUMNS = [f"q{level}" for level in QUANTILE_LEVELS]

# Canonical input: one row per series and timestamp, sorted by (unique_id, ds), (unique_id, ds) unique.
INPUT_SCHEMA = pa.schema([(ID, pa.string()), (DS, pa.timestamp("us")), (Y, pa.float64())])

FORECAST_SCHEMA = pa.schema(
    [
        (ID, pa.string()),
        (DS, pa.timestamp("us")),
        ("step", pa.int32()),
        ("forecast", pa.float64()),
        *[(name, pa.float64()) for name in QUANTILE_COLUMNS],
        # the seasonal-naive forecast from the same history (the backtest's baseline: the last season repeated)
        ("seasonal_naive", pa.float64()),
        ("model", pa.string()),
        ("cutoff", pa.timestamp("us")),
        ("run_id", pa.string()),
        ("created_at", pa.timestamp("us", tz="UTC")),
    ]
)


class SeriesStatus(str, enum.Enum):
    """Outcome for one input series."""

    OK = "ok"
    REJECTED = "rejected"  # left out before inference; `reason` says why
    FAILED = "failed"  # inference ran but gave no usable forecast


STATUS_SCHEMA = pa.schema(
    [
        (ID, pa.string()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("n_obs", pa.int64()),
        ("first_ds", pa.timestamp("us")),
        ("last_ds", pa.timestamp("us")),
        ("freq", pa.string()),
        ("missing_fraction", pa.float64()),
        # forecasts with categorical covariates: (covariate, level) pairs of the horizon its context lacks
        ("unseen_covariate_levels", pa.int64()),
    ]
)

# One row per series and regression effect of a forecast run with covariates (optional: covariates.effects).
COVARIATE_EFFECTS_SCHEMA = pa.schema(
    [
        (ID, pa.string()),
        ("covariate", pa.string()),  # "(intercept)", a numerical covariate's name, or "<covariate>=<level>"
        ("coefficient", pa.float64()),  # in the series' units (per unit of a numerical covariate)
        ("run_id", pa.string()),
    ]
)

# One row per published run (the run manifest); JSON columns hold nested detail.
RUNS_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("flow_name", pa.string()),
        ("deployment", pa.string()),
        ("source", pa.string()),
        ("input_fingerprint", pa.string()),
        ("series_in", pa.int64()),
        ("series_ok", pa.int64()),
        ("series_rejected", pa.int64()),
        ("series_failed", pa.int64()),
        ("output_rows", pa.int64()),
        ("rejected_by_reason", pa.string()),
        ("checkpoint", pa.string()),
        ("checkpoint_sha256", pa.string()),
        ("random_weights", pa.bool_()),
        ("device", pa.string()),
        ("precision", pa.string()),
        ("versions", pa.string()),
        ("parameters", pa.string()),
        ("timings", pa.string()),
        ("shards", pa.string()),
        ("mlflow_run_id", pa.string()),
        ("tracking_status", pa.string()),
        ("tracking_error", pa.string()),
        ("monitoring", pa.string()),
        ("covariates", pa.string()),  # the run's covariate parameters (JSON); empty without covariates
        ("created_at", pa.timestamp("us", tz="UTC")),
    ]
)

# One row per series and model of a backtest, plus rows with unique_id "__all__" for the whole job.
EVALUATION_SCHEMA = pa.schema(
    [
        (ID, pa.string()),
        ("model", pa.string()),
        ("n_windows", pa.int32()),
        ("n_points", pa.int64()),
        ("mae", pa.float64()),
        ("rmse", pa.float64()),
        ("smape", pa.float64()),
        ("mase", pa.float64()),
        ("scaled_crps", pa.float64()),
        ("coverage_80", pa.float64()),
        ("beats_seasonal_naive", pa.bool_()),
        ("season_length", pa.int32()),
        ("run_id", pa.string()),
        ("created_at", pa.timestamp("us", tz="UTC")),
    ]
)

# One row per scored observation of an anomaly-detection run (a missing observation is not scored).
ANOMALY_SCHEMA = pa.schema(
    [
        (ID, pa.string()),
        (DS, pa.timestamp("us")),
        (Y, pa.float64()),
        ("expected", pa.float64()),  # the forecast's median (q50) at that step
        ("lower", pa.float64()),  # the central `threshold` interval of the forecast's distribution
        ("upper", pa.float64()),
        ("anomaly_probability", pa.float64()),
        ("is_anomaly", pa.bool_()),
        ("cutoff", pa.timestamp("us")),  # the last point of the history the forecast came from
        ("model", pa.string()),
        ("run_id", pa.string()),
    ]
)

# One row per series of a forecast run or of the job's previous run: how this run's forecast moved since then.
REVISION_SCHEMA = pa.schema(
    [
        (ID, pa.string()),
        ("change", pa.string()),  # compared, new (not in the previous run), gone (not in this one), no_overlap
        ("n_dates", pa.int64()),  # target dates both runs forecast
        ("mean_abs_revision", pa.float64()),
        ("scaled_revision", pa.float64()),  # mean_abs_revision / scale
        ("largest_revision", pa.float64()),  # signed: this run's forecast minus the previous one's
        ("largest_revision_ds", pa.timestamp("us")),
        ("mean_width_change", pa.float64()),  # of the q10-q90 width, this run minus the previous one
        ("scale", pa.float64()),  # mean absolute seasonal difference of the series' history (the MASE scale)
        ("revised", pa.bool_()),
        ("threshold", pa.float64()),
        ("previous_as_of", pa.date32()),
        ("previous_run_id", pa.string()),
        ("run_id", pa.string()),
    ]
)

# Realized accuracy is published as sums (and counts), so that any group of rows adds up to exact metrics: the
# catalog's views and a BI tool divide them (mae = sum_abs_error / n_points, ...; docs/DATA_FORMAT.md).
_REALIZED_SUMS = [
    ("n_points", pa.int64()),  # points scored
    ("sum_abs_error", pa.float64()),
    ("sum_squared_error", pa.float64()),
    ("sum_smape", pa.float64()),
    ("n_scaled", pa.int64()),  # points whose series has a scale (not constant)
    ("sum_scaled_error", pa.float64()),  # of abs_error / scale: over n_scaled, the MASE
    ("sum_quantile_loss", pa.float64()),  # of the mean pinball loss over q10..q90
    ("sum_abs_y", pa.float64()),  # the scaled CRPS is 2 * sum_quantile_loss / sum_abs_y
    ("n_covered", pa.int64()),  # points with q10 <= y <= q90
    ("n_sn", pa.int64()),  # points with a seasonal-naive forecast (forecasts.seasonal_naive not empty)
    ("sum_sn_abs_error", pa.float64()),
    ("sum_sn_squared_error", pa.float64()),
    ("sum_sn_smape", pa.float64()),
    ("n_sn_scaled", pa.int64()),
    ("sum_sn_scaled_error", pa.float64()),
    ("sum_paired_scaled_error", pa.float64()),  # sum_scaled_error over the n_sn_scaled points: for the skill
]

# One row per earlier forecast run and horizon step a forecast run scored: the points of that forecast run at
# that step whose actuals this run's input holds (and no other run scored).
REALIZED_SCHEMA = pa.schema(
    [
        ("forecast_as_of", pa.date32()),
        ("step", pa.int32()),
        ("first_ds", pa.timestamp("us")),  # the target dates of the points
        ("last_ds", pa.timestamp("us")),
        *_REALIZED_SUMS,
        ("forecast_run_id", pa.string()),
        ("run_id", pa.string()),
    ]
)

# One row per series a forecast run scored points of (over every earlier forecast run and step it scored).
REALIZED_SERIES_SCHEMA = pa.schema(
    [
        (ID, pa.string()),
        ("first_forecast_as_of", pa.date32()),
        ("last_forecast_as_of", pa.date32()),
        *_REALIZED_SUMS,
        ("scale", pa.float64()),
        ("season_length", pa.int32()),
        ("run_id", pa.string()),
    ]
)

# Monitoring's input, staged by the forecast stage beside the forecasts (not a published table): each forecast
# series' seasonal period and scale, the mean absolute seasonal difference of its history (the MASE denominator).
SCALES_SCHEMA = pa.schema([(ID, pa.string()), ("season_length", pa.int32()), ("scale", pa.float64())])

# Monitoring's own state (not a BI table): the forecast points a run could not score yet (their actual missing,
# or their series not in its input), so that the next run reads them instead of every earlier forecast again.
PENDING_SCHEMA = pa.schema(
    [
        (ID, pa.string()),
        ("forecast_as_of", pa.date32()),
        ("step", pa.int32()),
        (DS, pa.timestamp("us")),
        ("cutoff", pa.timestamp("us")),
        ("forecast", pa.float64()),
        *[(name, pa.float64()) for name in QUANTILE_COLUMNS],
        ("seasonal_naive", pa.float64()),
        ("forecast_run_id", pa.string()),
    ]
)
