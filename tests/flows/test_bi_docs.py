"""docs/BI.md as a BI analyst meets it: every query runs as written on the sample, and the catalog opens in
the DuckDB 1.x that BI tools bundle."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from flows.batch_backtest import batch_backtest
from flows.batch_forecast import batch_forecast
from forecast_model import ResolvedCheckpoint
from pipeline.params import ModelParams
from pipeline.sources import FileSource
from tests.conftest import REPO, SAMPLE

# Two flow runs, then DuckDB 1.x wheels from the package index: the full suite runs these, test-fast does not.
pytestmark = [pytest.mark.usefixtures("prefect_api"), pytest.mark.slow]


def statements() -> list[str]:
    """Every SQL statement of the docs' sql blocks, in order."""
    blocks = re.findall(r"```sql\n(.*?)```", (REPO / "docs" / "BI.md").read_text(), re.S)
    return [s.strip() for block in blocks for s in block.split(";") if s.strip()]


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: ResolvedCheckpoint) -> Path:
    """The catalog after `./setup.sh run` (the day before on the sample cut two quarters short, then on the
    whole sample) and a backtest of the sample, as docs/BI.md assumes."""
    root = tmp_path_factory.mktemp("bi") / "outputs"
    model = ModelParams(checkpoint=str(tiny_checkpoint.weights.parent))
    sample = pd.read_csv(SAMPLE)
    cut = root.parent / "us_macro_quarterly_cut.csv"
    sample[sample["ds"] < sorted(sample["ds"].unique())[-2]].to_csv(cut, index=False)
    yesterday = datetime.now(timezone.utc).date() - timedelta(days=1)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("FORECAST_DATA_DIR", str(root.parent))
        env.setenv("FORECAST_DATA_ROOTS", os.pathsep.join([str(SAMPLE.parent), str(root.parent)]))
        env.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root.parent / 'mlflow.db'}")
        batch_forecast(source=FileSource(path=str(cut)), horizon=8, model=model, output_root=str(root),
                       job="us_macro_quarterly", as_of=yesterday)
        batch_forecast(source=FileSource(path=str(SAMPLE)), horizon=8, model=model, output_root=str(root))
        batch_backtest(source=FileSource(path=str(SAMPLE)), h=4, n_windows=2, model=model, output_root=str(root))
    return root / "catalog.duckdb"


def test_every_example_query_returns_rows_on_the_sample(published: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # the docs' relative paths are from the repository root, as after ./setup.sh run
    queries = statements()
    assert len(queries) >= 6, "docs/BI.md lost its examples"
    with duckdb.connect(str(published), read_only=True) as con:
        for sql in queries:
            rows = con.execute(sql).fetchall()
            assert rows, f"returns nothing on the sample: {sql}"


@pytest.mark.parametrize("version", ["1.1.3", "1.5.6"])
def test_duckdb_1x_opens_the_catalog(published: Path, tmp_path: Path, version: str) -> None:
    target = tmp_path / "duckdb"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
                    f"duckdb=={version}"], check=True, timeout=600, capture_output=True)
    code = ("import duckdb, json, sys\n"
            "con = duckdb.connect(sys.argv[1], read_only=True)\n"
            "rows = con.execute('SELECT count(*), count(DISTINCT unique_id) FROM forecasts_latest').fetchone()\n"
            "print(json.dumps([duckdb.__version__, *rows]))\n")
    done = subprocess.run([sys.executable, "-c", code, str(published)], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-1500:]
    reader, rows, series = json.loads(done.stdout)
    assert reader == version, f"the test ran DuckDB {reader}, not {version}"
    assert rows == series * 8 and series > 0
