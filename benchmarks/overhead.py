"""Overhead of the pipeline against a plain scikit-learn script doing the same fits.

Both sides read the same CSV, cut the same time windows, try the same hyperparameter
configurations of the linear model and the random forest with the same successive-halving schedule
and race on the same recent rows (the last round on all training rows), refit the best on train+validation
and score it once on the test window. The pipeline adds Prefect task runs,
MLflow runs (one nested run per trial), the model registry, plots and a drift reference sample.

Both run in this process, back to back, after a warm-up of each (imports and Prefect's
ephemeral API start once per process and are reported apart). The flow runs as `retrain run`
runs it: on the project's ephemeral Prefect API, started before the imports, and without
Prefect's heartbeat thread (`cli.app.run_flow`). Prints the wall-time ratio and both test metrics.

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
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import yaml
from common import REPO, add_data_option
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.metrics import mean_squared_error, r2_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

if TYPE_CHECKING:
    from core.config import PipelineConfig

CONFIG = REPO / "configs" / "bike_sharing.yaml"
TARGET, TIME = "cnt", "dteday"
DROP = ["instant", "casual", "registered"]
CATEGORICAL = ["season", "weathersit"]


def plain_script(csv: Path, fixed: dict, estimators: dict, config: PipelineConfig) -> dict:
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
            model.set_params(random_state=config.tuning.seed)
        return Pipeline([("p", pre), ("m", model)])

    def rmse(model: Pipeline, window: pd.DataFrame) -> float:
        return float(np.sqrt(mean_squared_error(window[TARGET], model.predict(window[features]))))

    # Which fits to make (configurations and rows per round, the forest's trees in the rounds
    # before the last, and which candidates stay in the race) and which wins come from the
    # pipeline's rules (`halving_search`, `trial_params`, `best_of`); making and scoring each fit
    # is plain scikit-learn.
    from core.search import Trial, TrialSpec, best_of, halving_search, trial_params

    def run_round(specs: list[TrialSpec]) -> list[Trial]:
        trials = []
        for spec in specs:
            recent = train.tail(spec.rows)
            params = trial_params(config, spec, len(train))
            fitted = pipeline(spec.candidate, params).fit(recent[features], recent[TARGET])
            score = rmse(fitted, validation)
            trials.append(Trial(spec.candidate, spec.params, spec.round, spec.rows, score, 0.0))
        return trials

    winner = best_of(halving_search(len(train), config, run_round), greater_is_better=False)
    best = (winner.best_score, winner.candidate, winner.best_params)
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
    # The Prefect API `retrain run` uses: the project's ephemeral server (which replays a write
    # SQLite turned away instead of the client's 2 s back-off), started before the imports.
    from cli.process import start_command_api

    start_command_api()

    started = time.perf_counter()
    from cli.app import run_flow
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
    catalogue = CATALOGUE["regression"]
    fixed = {name: catalogue[name][1] for name in config.candidates}
    estimators = {name: catalogue[name][0] for name in config.candidates}

    def pipeline_run(pipeline_config: PipelineConfig):
        # As `retrain run` runs it (`cli.app.run_flow`: no heartbeat thread to wait for at the end).
        return run_flow(lambda: retrain_flow(pipeline_config), debug=True)

    started = time.perf_counter()
    pipeline_run(next(configs))  # warm-up: waits for the Prefect API, creates the MLflow store
    warm_up = time.perf_counter() - started
    plain_script(csv, fixed, estimators, config)

    plain_times, pipeline_times = [], []
    for _ in range(args.repeats):
        started = time.perf_counter()
        plain = plain_script(csv, fixed, estimators, config)
        plain_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        result = pipeline_run(next(configs))
        pipeline_times.append(time.perf_counter() - started)

    plain_s, pipeline_s = statistics.median(plain_times), statistics.median(pipeline_times)
    print(f"data: {csv.name}, {args.repeats} repeats each, median wall time")
    print(f"imports of prefect+mlflow+project (once per process): {imports:.1f} s")
    print(f"first pipeline run incl. the wait for the Prefect API (once per process): {warm_up:.1f} s")
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
