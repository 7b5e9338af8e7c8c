"""Overhead of the pipeline against a plain scikit-learn script doing the same fits.

Both sides read the same CSV, cut the same time windows, try the same hyperparameter
configurations of the linear model and the random forest with the same successive-halving schedule
and race on the same recent rows (the last round on all training rows), refit the best on train+validation
and score it once on the test window. The pipeline adds Prefect task runs,
MLflow runs (one nested run per trial), the model registry, plots and a drift reference sample.

Both run in this process, back to back, after a warm-up of each (imports and Prefect's
ephemeral API start once per process and are reported apart). Prints the wall-time ratio and
both test metrics.

Usage: python benchmarks/overhead.py [--data PATH] [--repeats N]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from common import REPO, add_data_option
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.metrics import mean_squared_error, r2_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

CONFIG = REPO / "configs" / "bike_sharing.yaml"
TARGET, TIME = "cnt", "dteday"
DROP = ["instant", "casual", "registered"]
CATEGORICAL = ["season", "weathersit"]


def plain_script(csv: Path, spaces: dict, fixed: dict, estimators: dict, tuning: dict) -> dict:
    """The hand-written scikit-learn version of one retraining run."""
    frame = pd.read_csv(csv)
    frame[TIME] = pd.to_datetime(frame[TIME])
    numeric = [c for c in frame.columns if c not in {TARGET, TIME, *DROP, *CATEGORICAL}]
    times = np.sort(frame[TIME].to_numpy())
    validation_start, test_start = times[int(len(times) * 0.70)], times[int(len(times) * 0.85)]
    train = frame[frame[TIME] < validation_start]
    validation = frame[(frame[TIME] >= validation_start) & (frame[TIME] < test_start)]
    test = frame[frame[TIME] >= test_start]
    features = numeric + CATEGORICAL

    def pipeline(name: str, params: dict) -> Pipeline:
        pre = ColumnTransformer(
            [
                ("n", Pipeline([("i", SimpleImputer(strategy="median")), ("s", StandardScaler())]), numeric),
                (
                    "c",
                    OneHotEncoder(handle_unknown="ignore", min_frequency=5, sparse_output=False),
                    CATEGORICAL,
                ),
            ]
        )
        model = estimators[name](**{**fixed[name], **params})
        if "random_state" in model.get_params():
            model.set_params(random_state=tuning["seed"])
        return Pipeline([("p", pre), ("m", model)])

    def rmse(model: Pipeline, window: pd.DataFrame) -> float:
        return float(np.sqrt(mean_squared_error(window[TARGET], model.predict(window[features]))))

    # Which fits to make (configurations and rows per round, and which candidates stay in the
    # race) comes from the pipeline's rules; making them, scoring and selecting is plain
    # scikit-learn below.
    from core.search import Trial, halving_schedule, sample_configurations, still_racing

    plans = {}
    for name, space in spaces.items():
        configs = sample_configurations(space, tuning["n_trials"], tuning["seed"])
        schedule = halving_schedule(
            len(configs), tuning["subset_rows"], len(train), tuning["halving_factor"], tuning["strategy"]
        )
        plans[name] = (configs, schedule)
    ranked: dict[str, list[Trial]] = {}
    racing = set(plans)
    for round_index in range(max(len(schedule) for _, schedule in plans.values())):
        for name, (configs, schedule) in plans.items():
            if name not in racing or round_index >= len(schedule):
                continue
            kept, rows = schedule[round_index]
            order = [t.params for t in ranked[name]] if name in ranked else configs
            recent = train.tail(rows)
            scores = [
                rmse(pipeline(name, p).fit(recent[features], recent[TARGET]), validation)
                for p in order[:kept]
            ]
            trials = [
                Trial(name, p, round_index, rows, v, 0.0) for p, v in zip(order[:kept], scores, strict=True)
            ]
            ranked[name] = sorted(trials, key=lambda t: t.score)
        going_on = {
            n: schedule[round_index + 1][0]
            for n, (_, schedule) in plans.items()
            if n in racing and round_index + 1 < len(schedule)
        }
        racing = still_racing(ranked, going_on, greater=False)
    finalists = [r[0] for r in ranked.values() if r[0].rows == len(train)]
    winner = min(finalists, key=lambda t: t.score)
    best = (winner.score, winner.candidate, winner.params)
    full = pd.concat([train, validation])
    model = pipeline(best[1], best[2]).fit(full[features], full[TARGET])
    predictions = model.predict(test[features])
    return {
        "rmse": float(np.sqrt(mean_squared_error(test[TARGET], predictions))),
        "r2": float(r2_score(test[TARGET], predictions)),
        "candidate": best[1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_option(parser)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    csv = Path(args.data).resolve()

    work = Path(tempfile.mkdtemp(prefix="retrain-bench-"))
    os.chdir(work)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
    os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "CRITICAL")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if not os.environ.get("PREFECT_API_URL"):
        (work / "prefect").mkdir()
        os.environ["PREFECT_HOME"] = str(work / "prefect")

    started = time.perf_counter()
    from core.catalogue import CATALOGUE
    from core.config import parse_config
    from flows.retrain import retrain_flow

    imports = time.perf_counter() - started
    raw = yaml.safe_load(CONFIG.read_text())
    raw["data"] = {"source": str(csv)}
    # Boosting picks its iterations on validation (early stopping): compare the other two families,
    # whose fits are the same on both sides. benchmarks/quality.py compares the full default run.
    raw["candidates"] = {"linear": {}, "random_forest": {}}
    config = parse_config(raw)
    # A run on the champion's own data and config trains nothing, so each run gets a model of its own.
    configs = iter(parse_config({**raw, "name": f"{raw['name']}-{i}"}) for i in range(args.repeats + 1))
    tuning = config.tuning.model_dump()
    catalogue = CATALOGUE["regression"]
    spaces = {name: catalogue[name][2] for name in config.candidates}
    fixed = {name: catalogue[name][1] for name in config.candidates}
    estimators = {name: catalogue[name][0] for name in config.candidates}

    started = time.perf_counter()
    retrain_flow(next(configs))  # warm-up: starts the ephemeral Prefect API, creates the MLflow store
    warm_up = time.perf_counter() - started
    plain_script(csv, spaces, fixed, estimators, tuning)

    plain_times, pipeline_times = [], []
    for _ in range(args.repeats):
        started = time.perf_counter()
        plain = plain_script(csv, spaces, fixed, estimators, tuning)
        plain_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        result = retrain_flow(next(configs))
        pipeline_times.append(time.perf_counter() - started)

    plain_s, pipeline_s = statistics.median(plain_times), statistics.median(pipeline_times)
    print(f"data: {csv.name}, {args.repeats} repeats each, median wall time")
    print(f"imports of prefect+mlflow+project (once per process): {imports:.1f} s")
    print(f"first pipeline run incl. ephemeral Prefect API start (once per process): {warm_up:.1f} s")
    print(f"plain scikit-learn script: {plain_s:.2f} s  test rmse {plain['rmse']:.2f}  r2 {plain['r2']:.4f}")
    print(
        f"pipeline (Prefect + MLflow): {pipeline_s:.2f} s  test rmse {result.metrics['rmse']:.2f}  "
        f"r2 {result.metrics['r2']:.4f}  baseline rmse {result.baseline_metrics['rmse']:.2f}"
    )
    ratio = pipeline_s / plain_s
    # The pipeline reads floats as float32 (data.compact_dtypes): equal to a few parts in 10,000.
    same = math.isclose(plain["rmse"], result.metrics["rmse"], rel_tol=1e-3)
    print(
        f"overhead ratio pipeline/plain: {ratio:.2f}x (target <= 1.30x): {'OK' if ratio <= 1.3 else 'OVER'}"
    )
    print(f"equal quality (test rmse within 0.1%): {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
