"""Tuning a larger budget on 1 and 2 local Dask workers: the speed-up of the fan-out.

48 trials of hist_gradient_boosting (random search, so every trial is a full fit on the 5,000
most recent training rows of the real bike-sharing table, scored on the validation window). The
trials run through the pipeline's own `tune_candidates` inside a Prefect flow, on a local Dask
cluster started here with `--dask-address`-style settings. Each cluster is started and warmed up
(one small tuning run) before the timed run, so worker start-up is not counted; the same is done
on the default threads runner for reference. The leaderboards must be equal.

On an N-core machine, the speed-up of 2 workers over 1 is bounded by the cores: on 2 cores,
2x at best, less what the flow process itself uses.

Usage: python benchmarks/dask_tuning.py [--data PATH] [--trials 48]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from common import REPO, add_data_option


def timed_tuning(raw: dict[str, Any]) -> tuple[float, list[tuple[str, float]]]:
    """Seconds `tune_candidates` takes under a flow, and the trials' (params, score)."""
    from prefect import flow

    from core.config import parse_config
    from core.features import build_preprocessor
    from core.search import TuningData
    from core.split import split_frame
    from core.validation import validate_table
    from flows.tuning import tune_candidates

    config = parse_config(raw)

    @flow(name="tuning-benchmark")
    def tune_only() -> tuple[float, list[tuple[str, float]]]:
        from core.tables import columns_to_read
        from tasks.ingest import load_table

        frame, schema = validate_table(load_table(config.data, columns_to_read(config)), config)
        splits = split_frame(frame, config)
        preprocessor = build_preprocessor(schema).fit(splits.train[schema.features])
        started = time.perf_counter()
        rows = TuningData(splits.train, splits.validation, preprocessor, schema)
        results = tune_candidates(rows, config)
        elapsed = time.perf_counter() - started
        return elapsed, sorted((str(t.params), round(t.score, 6)) for r in results for t in r.trials)

    return tune_only()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_option(parser)
    parser.add_argument("--trials", type=int, default=48)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="retrain-dask-bench-"))
    os.chdir(work)
    os.environ["PREFECT_HOME"] = str(work / "prefect")
    from cli.process import use_local_defaults

    use_local_defaults()
    from distributed import Client, LocalCluster

    raw = yaml.safe_load((REPO / "configs" / "bike_sharing.yaml").read_text())
    raw["data"] = {"source": str(Path(args.data).resolve())}
    raw["candidates"] = {"hist_gradient_boosting": {}}
    space = {
        "learning_rate": [0.03, 0.05, 0.1, 0.2],
        "max_leaf_nodes": [15, 31, 63],
        "min_samples_leaf": [10, 20, 50, 100],
        "l2_regularization": [0.0, 1.0],
    }
    raw["candidates"]["hist_gradient_boosting"]["search_space"] = space
    tuning = {"strategy": "random", "n_trials": args.trials, "subset_rows": 5000, "seed": 42}
    warm = {**raw, "tuning": {**tuning, "n_trials": 2}}

    timings: dict[str, float] = {}
    boards: dict[str, list[tuple[str, float]]] = {}
    timed_tuning(warm)  # starts Prefect's ephemeral API
    timings["threads"], boards["threads"] = timed_tuning({**raw, "tuning": tuning})
    for workers in (1, 2):
        with LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None) as cluster:
            with Client(cluster) as client:
                client.wait_for_workers(workers)
            dask = {"runner": "dask", "dask_address": cluster.scheduler_address}
            timed_tuning({**warm, "tuning": {**warm["tuning"], **dask}})
            label = f"dask x{workers}"
            timings[label], boards[label] = timed_tuning({**raw, "tuning": {**tuning, **dask}})

    cores = os.cpu_count()
    print(f"{args.trials} hist_gradient_boosting trials on 5,000 rows, {cores} cores")
    for label, seconds in timings.items():
        print(f"  {label:>9}: {seconds:6.1f} s  ({seconds / args.trials:.2f} s/trial)")
    print(f"speed-up of 2 Dask workers over 1: {timings['dask x1'] / timings['dask x2']:.2f}x")
    same = boards["threads"] == boards["dask x1"] == boards["dask x2"]
    print(f"same trials and scores on every runner: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
