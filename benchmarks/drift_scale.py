"""The drift check at 1M and 10M rows of bike-sharing data: its cost against Evidently, and its memory.

Data: a champion trained on the 2011 rows of the real UCI bike-sharing table (the bundled config,
linear candidate only: the model is not what is measured), and batches of 2012 rows resampled with
replacement and jittered like `benchmarks/scale.py` (weather by up to 2% of its range), without
labels, 12 feature columns (plus `instant`, `dteday`). The 10M-row batch is written as Parquet in 1M-row
chunks, so the generator stays small; all data sit in a temporary folder.

1. Marginal cost, in one process after training (Prefect's ephemeral API and the imports warm,
   Evidently's too, so both flows draw their report in this process, not in a helper process):
   the drift-check flow on a 20,000-row batch, then on a 1M-row Parquet batch, five times in turns
   (other batches of the same shift each time); the difference of the medians is
   what the other 980,000 rows cost (reading, validation, fingerprint, the tests). Both draw the
   HTML report from 20,000 rows (`drift.report_rows`), so the report's cost cancels out. Then the
   verdict's own steps on the 1M rows, timed one by one: reading, validation, fingerprint, tests.
   Beside it, from the same process and data: Evidently's `DataDriftPreset` report with tests on
   the full batch against the champion's reference sample, and a plain NumPy/SciPy pass (pyarrow
   reads the 12 columns, then `scipy.stats.wasserstein_distance` / Jensen-Shannon on value counts
   for each) as the hardware reference. Target: Evidently / marginal cost >= 10x.
2. Memory: `retrain drift --current <batch> --json` on the 1M-row and the 10M-row Parquet batch,
   each a fresh command; peak RSS is the command process's VmHWM, read every 50 ms until it exits.
   The 10M-row batch is streamed in record batches. Targets: peak RSS 10M / 1M <= 1.3x, and the
   same verdict and drifted columns (the two batches share one distribution shift).

Usage: python benchmarks/drift_scale.py [--data PATH] [--big-rows 10000000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
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
from scale import JITTERED

CHUNK_ROWS = 1_000_000
# Pairs of drift-check flows (20,000 and 1M rows) timed in turns: each flow's own overhead varies by
# up to a second (Prefect's flow-run bookkeeping), so the marginal cost is a difference of medians.
REPEATS = 5
# The bundled config's 12 features: everything but the row id, the date, the target and its parts.
NOT_FEATURES = ("instant", "dteday", "casual", "registered", "cnt")


def features(frame: pd.DataFrame) -> list[str]:
    """The bike-sharing table's feature columns."""
    return [c for c in frame.columns if c not in NOT_FEATURES]


def resampled(real: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    """`rows` rows drawn from `real` with replacement, weather jittered as in `benchmarks/scale.py`."""
    rng = np.random.default_rng(seed)
    frame = real.iloc[rng.integers(0, len(real), rows)][["instant", "dteday", *features(real)]]
    frame = frame.reset_index(drop=True)
    for column, share in JITTERED.items():
        low, high = real[column].min(), real[column].max()
        frame[column] = (frame[column] + rng.uniform(-share, share, rows) * (high - low)).clip(low, high)
    frame["instant"] = np.arange(rows) + seed * CHUNK_ROWS
    return frame


def write_parquet(real: pd.DataFrame, rows: int, path: Path, seed: int) -> Path:
    """A Parquet batch written in 1M-row chunks (one row group each)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    for index, start in enumerate(range(0, rows, CHUNK_ROWS)):
        table = pa.Table.from_pandas(
            resampled(real, min(CHUNK_ROWS, rows - start), seed + index), preserve_index=False
        )
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    writer.close()
    return path


def bench_config(history: Path, work: Path) -> Path:
    raw = yaml.safe_load((REPO / "configs" / "bike_sharing.yaml").read_text())
    raw["name"] = "bike-drift-scale"
    raw["data"] = {"source": str(history)}
    raw["candidates"] = {"linear": {}}
    raw["tuning"] = {"n_trials": 2}
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def plain_pass(path: Path, reference: pd.DataFrame) -> tuple[float, dict[str, float]]:
    """The hardware reference: read the 12 columns, then one SciPy/NumPy test per column."""
    import pyarrow.parquet as pq
    from scipy import stats
    from scipy.spatial import distance

    started = time.perf_counter()
    columns = [c for c in features(reference) if c != "dteday"]
    table = pq.read_table(path, columns=columns)
    scores = {}
    for column in columns:
        current = table.column(column).to_numpy()
        ref = reference[column].to_numpy()
        values = (
            np.union1d(np.unique(ref), np.unique(current)) if column in ("season", "weathersit") else None
        )
        if values is None and len(np.unique(np.concatenate([ref, current[:100_000]]))) > 5:
            scores[column] = stats.wasserstein_distance(ref, current) / max(np.std(ref), 0.001)
        else:
            values = np.union1d(np.unique(ref), np.unique(current))
            p = np.array([(ref == v).sum() for v in values]) / len(ref)
            q = np.array([(current == v).sum() for v in values]) / len(current)
            scores[column] = float(distance.jensenshannon(p, q))
    return time.perf_counter() - started, scores


def in_process(config_path: Path, work: Path, batch_1m: Path, real_2012: pd.DataFrame) -> dict[str, Any]:
    """Train, then time the drift flow at 20,000 and 1M rows, Evidently and the plain pass."""
    import evidently  # noqa: F401  (warm: so the flow draws its report here, not in a helper process)

    from cli.app import run_flow
    from core.config import DataConfig, DriftConfig, parse_config
    from core.drift import evidently_report
    from flows.drift import drift_check_flow
    from flows.retrain import retrain_flow

    config = parse_config(yaml.safe_load(config_path.read_text()))
    retrain_flow(config)
    rows = config.drift.report_rows
    small = [
        write_parquet(real_2012, rows, work / f"small{i}.parquet", seed=100 + i) for i in range(1 + REPEATS)
    ]
    # Other 1M-row batches of the same shift for the repeats: a batch already checked is skipped.
    larges = [batch_1m] + [
        write_parquet(real_2012, 1_000_000, work / f"large{i}.parquet", seed=200 + i)
        for i in range(REPEATS - 1)
    ]

    def check(batch: Path):
        # As `retrain drift` runs it (`cli.app.run_flow`: no heartbeat thread to wait for at the end)
        return run_flow(lambda: drift_check_flow(config, DataConfig(source=str(batch))), debug=True)

    check(small[0])  # warm-up
    small_walls, large_walls = [], []
    for small_batch, large_batch in zip(small[1:], larges, strict=True):  # in turns, so load falls alike
        started = time.perf_counter()
        check(small_batch)
        small_walls.append(time.perf_counter() - started)
        started = time.perf_counter()
        large = check(large_batch)
        large_walls.append(time.perf_counter() - started)
    small_s, large_s = statistics.median(small_walls), statistics.median(large_walls)

    from tasks.monitoring import load_reference
    from tasks.registry import find_champion
    from tasks.settings import Settings

    settings = Settings.from_environment()
    champion = find_champion.fn(settings, config.name)
    reference = load_reference.fn(settings, champion)
    schema = champion.input_schema(config.target, config.time_column)
    steps, batch = verdict_steps(config, champion, reference, schema, batch_1m)
    started = time.perf_counter()
    snapshot = evidently_report(reference, batch, schema, DriftConfig())
    snapshot.dict()
    evidently_s = time.perf_counter() - started
    plain_s, _ = plain_pass(batch_1m, reference)
    return {
        "steps": steps,
        "small_rows": rows,
        "small_s": small_s,
        "large_s": large_s,
        "evidently_s": evidently_s,
        "plain_s": plain_s,
        "drifted": large.drifted_columns,
    }


def verdict_steps(config, champion, reference, schema, path: Path) -> tuple[dict[str, float], pd.DataFrame]:
    """Seconds of each step of the verdict on the whole batch, as the flow runs them (no Prefect)."""
    from core.config import DataConfig
    from core.drift import detect_columns
    from core.tables import columns_to_read, fingerprint, read_file
    from core.validation import validate_table

    steps = {}
    started = time.perf_counter()
    raw = read_file(path, columns_to_read(config), DataConfig(source=str(path)))
    steps["read (pyarrow, compact types)"] = time.perf_counter() - started
    started = time.perf_counter()
    batch, _ = validate_table(
        raw, config, champion.schema, require_target=False, now=pd.Timestamp.now(tz="UTC")
    )
    steps["validate"] = time.perf_counter() - started
    started = time.perf_counter()
    fingerprint(raw)
    steps["fingerprint"] = time.perf_counter() - started
    started = time.perf_counter()
    detect_columns(reference, batch, schema, config.drift)
    steps["per-column tests"] = time.perf_counter() - started
    return steps, batch


def command_peak(config_path: Path, batch: Path, work: Path) -> dict[str, Any]:
    """`retrain drift --current batch --json` in a fresh process: wall time, peak RSS, verdict."""
    command = [str(Path(sys.executable).with_name("retrain")), "drift", "--config", str(config_path)]
    command += ["--current", str(batch), "--json"]
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0]

    def sample() -> None:
        status = Path(f"/proc/{process.pid}/status")
        while process.poll() is None:
            try:
                for line in status.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak[0] = max(peak[0], int(line.split()[1]))
            except OSError:
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    out, err = process.communicate()
    watcher.join()
    if process.returncode != 0:
        raise SystemExit(f"retrain drift on {batch.name} failed ({process.returncode}):\n{err[-3000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    return {"wall_s": time.perf_counter() - started, "peak_mb": peak[0] / 1024, **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_option(parser)
    parser.add_argument("--big-rows", type=int, default=10_000_000)
    parser.add_argument("--only-memory", action="store_true", help="train, then run part 2 only")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="retrain-drift-scale-"))
    os.chdir(work)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
    os.environ["PREFECT_HOME"] = str(work / "prefect")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ["PYTHONPATH"] = str(REPO)
    from cli.process import use_local_defaults

    use_local_defaults()
    real = pd.read_csv(args.data)
    history = work / "bike_2011.csv"
    real[real["yr"] == 0].to_csv(history, index=False)
    real_2012 = real[real["yr"] == 1]
    config_path = bench_config(history, work)

    started = time.perf_counter()
    batch_1m = write_parquet(real_2012, 1_000_000, work / "batch_1m.parquet", seed=1)
    batch_1m_command = write_parquet(real_2012, 1_000_000, work / "batch_1m_command.parquet", seed=21)
    batch_big = write_parquet(real_2012, args.big_rows, work / "batch_big.parquet", seed=11)
    print(
        f"batches written in {time.perf_counter() - started:.0f} s: 1,000,000 rows "
        f"{batch_1m.stat().st_size / 2**20:.0f} MB, {args.big_rows:,} rows "
        f"{batch_big.stat().st_size / 2**20:.0f} MB (Parquet, {len(features(real))} features); "
        f"{os.cpu_count()} CPUs, shared"
    )

    if args.only_memory:
        from core.config import parse_config
        from flows.retrain import retrain_flow

        retrain_flow(parse_config(yaml.safe_load(config_path.read_text())))
    else:
        part_one(config_path, work, batch_1m, real_2012)
    part_two(config_path, work, batch_1m_command, batch_big, args.big_rows)
    os.chdir(tempfile.gettempdir())
    shutil.rmtree(work, ignore_errors=True)


def part_one(config_path: Path, work: Path, batch_1m: Path, real_2012: pd.DataFrame) -> None:
    """Train, then the marginal cost of 1M rows against Evidently and the plain pass."""
    timed = in_process(config_path, work, batch_1m, real_2012)
    marginal = timed["large_s"] - timed["small_s"]
    print("\n1. cost of the verdict on 1,000,000 rows (one process, warm)")
    small_label = f"drift-check flow, {timed['small_rows']:,} rows (median of {REPEATS})"
    print(f"  {small_label:<46} {timed['small_s']:7.2f} s")
    print(f"  {f'drift-check flow, 1,000,000 rows (median of {REPEATS})':<46} {timed['large_s']:7.2f} s")
    print(f"  marginal cost of the 1M rows (project)        {marginal:7.2f} s")
    verdict_s = sum(timed["steps"].values())
    for step, seconds in timed["steps"].items():
        print(f"    verdict step: {step:31} {seconds:7.2f} s")
    print(f"  verdict on 1M rows (the steps above)          {verdict_s:7.2f} s")
    print(f"  Evidently DataDriftPreset + tests, full batch {timed['evidently_s']:7.2f} s")
    print(f"  plain pyarrow + SciPy pass (hardware ref.)    {timed['plain_s']:7.2f} s")
    speedup = timed["evidently_s"] / marginal
    print(
        f"  Evidently / project marginal: {speedup:.1f}x (target >= 10x): "
        f"{'OK' if speedup >= 10 else 'UNDER'}; "
        f"project marginal / plain pass: {marginal / timed['plain_s']:.2f}x; Evidently / verdict steps: "
        f"{timed['evidently_s'] / verdict_s:.1f}x"
    )


def part_two(config_path: Path, work: Path, batch_1m: Path, batch_big: Path, big_rows: int) -> None:
    """Peak RSS and verdicts of `retrain drift` on the 1M-row and the large batch."""
    # Another 1M-row batch than part one's: that one would be skipped as already checked.
    small = command_peak(config_path, batch_1m, work)
    big = command_peak(config_path, batch_big, work)
    ratio = big["peak_mb"] / small["peak_mb"]
    same = (small["drift_detected"], sorted(small["drifted_columns"])) == (
        big["drift_detected"],
        sorted(big["drifted_columns"]),
    )
    print("\n2. `retrain drift --current` as a command (ephemeral Prefect API), peak RSS of the process")
    for label, result in (
        ("1,000,000 rows (whole batch)", small),
        (f"{big_rows:,} rows (streamed)", big),
    ):
        print(
            f"  {label:32} {result['wall_s']:7.1f} s  {result['peak_mb']:7.0f} MB  drift "
            f"{result['drift_detected']}, drifted: {', '.join(sorted(result['drifted_columns']))}"
        )
    print(f"  peak RSS {big_rows:,} / 1M: {ratio:.2f}x (target <= 1.3x): {'OK' if ratio <= 1.3 else 'OVER'}")
    print(f"  same verdict and drifted columns: {'yes' if same else 'NO'}")
    borderline = [r for r in big["reasons"] if r.startswith("borderline")]
    print(f"  borderline columns in the streamed check: {borderline or 'none'}")


if __name__ == "__main__":
    main()
