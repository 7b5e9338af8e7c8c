"""The whole retraining flow at 100k, 1M and 3M rows, against a plain scikit-learn script.

Data: the real UCI bike-sharing hourly table (17,379 rows), scaled up by resampling its rows with
replacement (seed 0) and jittering them: the weather columns (temp, atemp, hum, windspeed) move
by up to 2% of their range and the counts by up to 5%, so rows are not exact copies. Each row keeps
its date, so the time split still cuts 2011-2012 into the same windows. The scaled tables are
written as CSV, the format users most often start from.

Config: the bundled bike-sharing config with two candidates, linear and hist_gradient_boosting:
a 100-tree random forest refit on 2.5M rows would dominate every figure here, and it is the
same work for the pipeline and the plain script. Tuning is capped at the most recent
`tuning.subset_rows` (5,000) rows, the final fit uses all training rows.

Every measurement runs in a fresh process. The pipeline process first runs the flow once on a
small file, so imports and Prefect's ephemeral API start are left out (the overhead benchmark
reports them); its MLflow store is a local SQLite file. Peak memory is the process's highest
resident set size during the timed run, sampled every 20 ms, minus what it held before; the
frame size is the table as the pipeline holds it after reading (compact types).

Usage: python benchmarks/scale.py [--data PATH] [--sizes 100000,1000000,3000000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from common import REPO, add_data_option

CANDIDATES = ("linear", "hist_gradient_boosting")
JITTERED = {"temp": 0.02, "atemp": 0.02, "hum": 0.02, "windspeed": 0.02}
COUNTS = ("casual", "registered")


def scaled_table(source: Path, rows: int, seed: int = 0) -> pd.DataFrame:
    """`rows` rows resampled from the real table, with jittered weather and counts."""
    real = pd.read_csv(source)
    rng = np.random.default_rng(seed)
    frame = real.iloc[rng.integers(0, len(real), rows)].reset_index(drop=True)
    for column, share in JITTERED.items():
        low, high = real[column].min(), real[column].max()
        noise = rng.uniform(-share, share, rows) * (high - low)
        frame[column] = (frame[column] + noise).clip(low, high).round(4)
    for column in COUNTS:
        factor = rng.uniform(0.95, 1.05, rows)
        frame[column] = np.rint(frame[column] * factor).astype("int64")
    frame["cnt"] = frame["casual"] + frame["registered"]
    frame["instant"] = np.arange(1, rows + 1)
    return frame.sort_values(["dteday", "hr"], kind="stable").reset_index(drop=True)


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    """Write fast with pyarrow (pandas' writer takes minutes at 3M rows)."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    pa_csv.write_csv(pa.Table.from_pandas(frame, preserve_index=False), path)
    return path


def bench_config(csv: Path, name: str) -> dict[str, Any]:
    raw = yaml.safe_load((REPO / "configs" / "bike_sharing.yaml").read_text())
    raw["name"] = name
    raw["data"] = {"source": str(csv)}
    raw["candidates"] = {name: {} for name in CANDIDATES}
    return raw


class PeakMemory:
    """Highest resident set size of this process while the block runs, sampled every 20 ms."""

    def __enter__(self) -> PeakMemory:
        import psutil

        self._process = psutil.Process()
        self.before_mb = self._process.memory_info().rss / 2**20
        self.peak_mb = self.before_mb
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak_mb = max(self.peak_mb, self._process.memory_info().rss / 2**20)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, self._process.memory_info().rss / 2**20)


def child_pipeline(csv: Path, warm_csv: Path) -> dict[str, Any]:
    """Run the retraining flow on `csv` in this (fresh) process."""
    work = Path(tempfile.mkdtemp(prefix="retrain-scale-"))
    os.chdir(work)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
    os.environ["PREFECT_HOME"] = str(work / "prefect")
    from cli.process import use_local_defaults

    use_local_defaults()
    from core.config import parse_config
    from core.tables import columns_to_read
    from flows.retrain import retrain_flow
    from tasks.ingest import load_table

    retrain_flow(parse_config(bench_config(warm_csv, "scale-warm-up")))
    config = parse_config(bench_config(csv, "scale"))
    with PeakMemory() as memory:
        started = time.perf_counter()
        result = retrain_flow(config)
        wall = time.perf_counter() - started
    frame = load_table(config.data, columns_to_read(config))
    return {
        "wall_s": wall,
        "peak_mb": memory.peak_mb - memory.before_mb,
        "frame_mb": frame.memory_usage(deep=True).sum() / 2**20,
        "rmse": result.metrics["rmse"],
        "candidate": result.best_candidate,
    }


def child_plain(csv: Path) -> dict[str, Any]:
    """Run the plain scikit-learn script (the overhead benchmark's) on `csv`."""
    sys.path.insert(0, str(Path(__file__).parent))
    from overhead import plain_script

    from core.catalogue import CATALOGUE
    from core.config import parse_config

    config = parse_config(bench_config(csv, "plain"))
    catalogue = CATALOGUE["regression"]
    spaces = {name: catalogue[name][2] for name in CANDIDATES}
    fixed = {name: catalogue[name][1] for name in CANDIDATES}
    estimators = {name: catalogue[name][0] for name in CANDIDATES}
    with PeakMemory() as memory:
        started = time.perf_counter()
        result = plain_script(csv, spaces, fixed, estimators, config.tuning.model_dump())
        wall = time.perf_counter() - started
    frame = pd.read_csv(csv)
    return {
        "wall_s": wall,
        "peak_mb": memory.peak_mb - memory.before_mb,
        "frame_mb": frame.memory_usage(deep=True).sum() / 2**20,
        "rmse": result["rmse"],
        "candidate": result["candidate"],
    }


def measure(kind: str, csv: Path, warm_csv: Path) -> dict[str, Any]:
    """One measurement in a fresh process; its JSON result is the last line it prints."""
    command = [sys.executable, __file__, "--child", kind, "--csv", str(csv), "--warm-csv", str(warm_csv)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "PREFECT_LOGGING_LEVEL": "WARNING"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{kind} on {csv.name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_option(parser)
    parser.add_argument("--sizes", default="100000,1000000,3000000")
    parser.add_argument("--child", choices=["pipeline", "plain"])
    parser.add_argument("--csv", type=Path)
    parser.add_argument("--warm-csv", type=Path)
    args = parser.parse_args()
    if args.child:
        result = (
            child_pipeline(args.csv, args.warm_csv) if args.child == "pipeline" else child_plain(args.csv)
        )
        print(json.dumps(result))
        return

    source = Path(args.data).resolve()
    sizes = [int(size) for size in args.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="retrain-scale-data-"))
    warm_csv = write_csv(scaled_table(source, 20_000, seed=1), work / "warm.csv")
    print(f"bike-sharing rows resampled with jitter (seed 0); candidates {', '.join(CANDIDATES)}")
    header = (
        f"{'rows':>9} {'side':>8} {'wall s':>8} {'us/row':>7} {'peak MB':>8} "
        f"{'frame MB':>8} {'peak/frame':>10} {'test rmse':>9}"
    )
    print(header)
    results: dict[int, dict[str, dict[str, Any]]] = {}
    for rows in sizes:
        csv = write_csv(scaled_table(source, rows), work / f"bike_{rows}.csv")
        results[rows] = {kind: measure(kind, csv, warm_csv) for kind in ("plain", "pipeline")}
        for kind, result in results[rows].items():
            print(
                f"{rows:>9,} {kind:>8} {result['wall_s']:>8.1f} {result['wall_s'] / rows * 1e6:>7.1f} "
                f"{result['peak_mb']:>8.0f} {result['frame_mb']:>8.0f} "
                f"{result['peak_mb'] / result['frame_mb']:>10.2f} {result['rmse']:>9.2f}",
                flush=True,
            )
        csv.unlink()
    smallest, largest = min(sizes), max(sizes)
    per_row = {rows: results[rows]["pipeline"]["wall_s"] / rows for rows in sizes}
    growth = per_row[largest] / per_row[smallest]
    print(
        f"time per row, pipeline, {largest:,} vs {smallest:,} rows: {growth:.2f}x (target <= 1.30x): "
        f"{'OK' if growth <= 1.3 else 'OVER'}"
    )
    for rows in sizes:
        pipeline, plain = results[rows]["pipeline"], results[rows]["plain"]
        memory = pipeline["peak_mb"] / pipeline["frame_mb"]
        ratio = pipeline["wall_s"] / plain["wall_s"]
        print(
            f"{rows:>9,} rows: pipeline/plain wall time {ratio:.2f}x (target <= 1.30x): "
            f"{'OK' if ratio <= 1.3 else 'OVER'}; peak memory {memory:.2f}x the compact frame "
            f"(target < 4x): {'OK' if memory < 4 else 'OVER'}, "
            f"{pipeline['peak_mb'] / plain['frame_mb']:.2f}x the frame pd.read_csv returns, "
            f"{pipeline['peak_mb'] / plain['peak_mb']:.2f}x the plain script's peak"
        )


if __name__ == "__main__":
    main()
