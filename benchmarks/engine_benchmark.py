"""Throughput and correctness of this project's engine against the `timesfm` 1.3.0 API, same process.

    python benchmarks/engine_benchmark.py --quick                    # CI: tiny checkpoint, correctness only
    python benchmarks/engine_benchmark.py --workload w1-cpu          # 2-core CPU: real architecture
    python benchmarks/engine_benchmark.py --workload short-cpu       # 2-core CPU: 64 to 256 points
    python benchmarks/engine_benchmark.py --workload w1 --device cuda --precisions fp32,tf32,bf16

W1: lengths log-uniform in [64, 2048] (seeded); values = random level + sine of random period (4..60) +
small trend + unit noise; horizon 128; the TimesFM-2.0-500m architecture with seeded random weights
(cost does not depend on weight values; accuracy is not measured here). ``short-cpu``: the same recipe
with lengths in [64, 256]. The API runs at batch 256 (or the series count, if fewer) and is the fp32
reference: relative error is max|engine - api| / max|api| per series, worst series shown. Timed rounds
interleave the API and every engine configuration; each row shows its median round.
Imports only torch, numpy and `timesfm`, so it runs where Prefect and MLflow are not installed.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from forecast_model import ModelHparams, TimesFmEngine, make_tiny_checkpoint
from forecast_model.checkpoint import CKPT_FILENAME, build_decoder

# name: (series, shortest, longest); "short-cpu" is W1's recipe on short series (2 to 8 patches).
WORKLOADS = {"w1": (4096, 64, 2048), "w1-cpu": (24, 64, 2048), "short-cpu": (128, 64, 256), "quick": (16, 64, 2048)}


def make_w1(n: int, seed: int = 0, shortest: int = 64, longest: int = 2048) -> list[np.ndarray]:
    """W1 series, lengths log-uniform in [shortest, longest] (W1 itself: [64, 2048])."""
    rng = np.random.default_rng(seed)
    lengths = np.exp(rng.uniform(np.log(shortest), np.log(longest), size=n)).astype(int)
    series = []
    for length in lengths:
        t = np.arange(length)
        period = rng.uniform(4, 60)
        series.append(rng.uniform(-100, 100) + 10 * np.sin(2 * np.pi * t / period) + rng.normal(0, 0.01) * t
                      + rng.normal(size=length))
    return series


def random_checkpoint(directory: Path, hparams: ModelHparams, seed: int = 0) -> Path:
    """The architecture with seeded random weights at sane scales (RMSNorm scales 1, not the init's 0)."""
    torch.manual_seed(seed)
    module = build_decoder(hparams)
    with torch.no_grad():
        for name, param in module.named_parameters():
            if name.endswith("input_layernorm.weight"):
                param.fill_(1.0)
            elif name.endswith("scaling"):
                param.zero_()
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(module.state_dict(), directory / CKPT_FILENAME)
    (directory / "config.json").write_text(hparams.to_json())
    return directory / CKPT_FILENAME


def timesfm_api(weights: Path, hparams: ModelHparams, horizon: int, device: torch.device,
                batch: int):
    with contextlib.redirect_stdout(io.StringIO()):
        import timesfm
    return timesfm.TimesFm(
        hparams=timesfm.TimesFmHparams(
            backend="gpu" if device.type == "cuda" else "cpu", per_core_batch_size=batch, horizon_len=horizon,
            num_layers=hparams.num_layers, model_dims=hparams.model_dims, num_heads=hparams.num_heads,
            context_len=hparams.context_len, use_positional_embedding=hparams.use_positional_embedding),
        checkpoint=timesfm.TimesFmCheckpoint(version="torch", path=str(weights)))


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS, KiB on Linux


def timed(fn, device: torch.device):
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    synchronize(device)
    started = time.perf_counter()
    result = fn()
    synchronize(device)
    return result, time.perf_counter() - started


def relative_error(actual: np.ndarray, reference: np.ndarray) -> float:
    return max(float(np.abs(a - r).max() / max(np.abs(r).max(), 1e-12)) for a, r in zip(actual, reference, strict=True))


def workload(args: argparse.Namespace) -> tuple[int, int, int]:
    """Series count, shortest and longest length the arguments ask for."""
    default_n, shortest, longest = WORKLOADS["quick" if args.quick else args.workload]
    return args.series or default_n, shortest, longest


def run(args: argparse.Namespace) -> list[dict]:
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    n, shortest, longest = workload(args)
    series = make_w1(n, args.seed, shortest, longest)
    freq = [i % 3 for i in range(len(series))]
    with tempfile.TemporaryDirectory() as tmp:
        if args.quick:
            hparams = make_tiny_checkpoint(Path(tmp)).hparams
            weights = Path(tmp) / CKPT_FILENAME
        else:
            hparams = ModelHparams()
            weights = random_checkpoint(Path(tmp), hparams, args.seed)
        # The API pads the last batch to a full one: with fewer series than 256 it would compute 256.
        api_batch = args.api_batch or min(256, len(series))
        api = timesfm_api(weights, hparams, args.horizon, device, api_batch)
        api.forecast(series[:2], freq=freq[:2])  # warm-up
        module = api._model  # the same weights, already on the device
    configurations = [(layout, precision, int(batch)) for layout in args.layouts.split(",")
                      for precision in args.precisions.split(",") for batch in args.batch_sizes.split(",")]
    engines = {c: TimesFmEngine(module, hparams, device, c[2], precision=c[1],  # type: ignore[arg-type]
                                packed=c[0] == "packed") for c in configurations}
    for engine in engines.values():
        engine.forecast(series[:4], args.horizon, freq[:4])  # warm-up
    # Rounds interleave the API and every engine so that a slow spell of a shared machine hits them alike;
    # each row reports its median round.
    seconds: dict[object, list[float]] = {c: [] for c in ["api", *configurations]}
    peaks: dict[object, float] = dict.fromkeys(seconds, 0.0)
    results = {}
    for _ in range(args.repeats):
        (_, api_full), elapsed = timed(lambda: api.forecast(series, freq=freq), device)
        seconds["api"].append(elapsed)
        peaks["api"] = max(peaks["api"], peak_memory_mb(device))
        for c, engine in engines.items():
            results[c], elapsed = timed(lambda e=engine: e.forecast(series, args.horizon, freq), device)
            seconds[c].append(elapsed)
            peaks[c] = max(peaks[c], peak_memory_mb(device))
    api_seconds = float(np.median(seconds["api"]))
    rows = [{"method": "timesfm API", "precision": "fp32", "batch": api_batch, "seconds": api_seconds,
             "round_seconds": seconds["api"],
             "series_per_s": len(series) / api_seconds, "ratio": 1.0, "rel_error": 0.0,
             "nan": int(np.isnan(api_full).sum()), "peak_mb": peaks["api"]}]
    for c in configurations:
        layout, precision, batch = c
        median = float(np.median(seconds[c]))
        rows.append({"method": f"engine {layout}", "precision": precision, "batch": batch, "seconds": median,
                     "round_seconds": seconds[c],
                     "series_per_s": len(series) / median, "ratio": api_seconds / median,
                     "rel_error": relative_error(results[c].quantiles, api_full[:, :, 1:]),
                     "nan": int(np.isnan(results[c].quantiles).sum()), "peak_mb": peaks[c]})
    return rows


def cpu_name() -> str:
    """The CPU model and the threads torch uses (``platform.processor()`` is often empty on Linux)."""
    try:
        models = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")]
    except OSError:
        models = []
    return f"{models[0] if models else platform.processor() or 'cpu'}, {torch.get_num_threads()} threads"


def describe(device_name: str, n: int) -> str:
    versions = f"torch {torch.__version__}, numpy {np.__version__}, python {platform.python_version()}"
    return f"device: {device_name}; series: {n}; {versions}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny checkpoint, correctness only (CI)")
    parser.add_argument("--workload", choices=["w1", "w1-cpu", "short-cpu"], default="w1-cpu")
    parser.add_argument("--series", type=int, help="number of series (default by workload)")
    parser.add_argument("--horizon", type=int, default=128)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--precisions", default="fp32")
    parser.add_argument("--batch-sizes", default="256")
    parser.add_argument("--layouts", default="packed,padded",
                        help="packed: real patches only, stacked (the CPU default); padded: to each batch's longest")
    parser.add_argument("--api-batch", type=int, help="API batch (default: 256, or the series count if fewer)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds; each row shows its median")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    rows = run(args)
    device = torch.cuda.get_device_name() if rows and torch.cuda.is_available() and args.device != "cpu" else \
        cpu_name()
    print(describe(device, workload(args)[0]))
    print(f"{'method':<15} {'prec':<5} {'batch':>5} {'series/s':>10} {'x API':>7} {'rel err':>9} {'NaN':>5} "
          f"{'peak MB':>9}")
    for r in rows:
        print(f"{r['method']:<15} {r['precision']:<5} {r['batch']:>5} {r['series_per_s']:>10.1f} {r['ratio']:>7.2f} "
              f"{r['rel_error']:>9.1e} {r['nan']:>5} {r['peak_mb']:>9.0f}")
    if args.json:
        args.json.write_text(json.dumps({"device": device, "rows": rows}, indent=2))
    failed = [r for r in rows if r["nan"] or (r["precision"] == "fp32" and r["rel_error"] > 1e-5)]
    if failed:
        print(f"FAILED: {len(failed)} configuration(s) with NaN, or fp32 not within 1e-5 of the API")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
