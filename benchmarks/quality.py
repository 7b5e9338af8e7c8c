"""Model quality and wall time: the pipeline's default run against a strong plain scikit-learn script.

The plain script is what a good practitioner writes by hand, with no orchestration: a time-ordered
70/15/15 split, a randomized search of 6 settings each for a linear model, a random forest and
histogram gradient boosting (200 iterations) fitted on all training rows and scored on the
validation window, the best refit on train+validation and one test score. It shares no code with
the pipeline.

Both sides run as fresh processes, everything included (imports; for the pipeline Prefect, MLflow
logging and registration), after one warm-up run each in the same folder (as a user's second run;
the pipeline's warm-up leaves out the last row, so the timed run trains and meets a champion).
Prints both sides' test metric and wall time and the targets of issue 14.

Usage: python benchmarks/quality.py [--datasets bike,car_loan] [--shared DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO

DATASETS = {
    # name: (file, config, target, time column, dropped columns, task, metric, time-ratio target)
    "bike": (
        "bike_sharing_hourly.csv",
        "bike_sharing.yaml",
        "cnt",
        "dteday",
        ["instant", "casual", "registered"],
        "regression",
        "rmse",
        1.5,
    ),
    "car_loan": (
        "car_loan.csv",
        "car_loan.yaml",
        "repaid",
        "timestamp",
        ["id"],
        "classification",
        "f1_macro",
        1.1,
    ),
}


def plain_script(csv: str, target: str, time_column: str, drop: list[str], task: str, seed: int = 42) -> dict:
    """The hand-written run: split by time, randomized search on all training rows, refit, test."""
    import numpy as np
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import (
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.metrics import f1_score, mean_squared_error
    from sklearn.model_selection import ParameterSampler
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame = pd.read_csv(csv).sort_values(time_column, kind="stable").reset_index(drop=True)
    features = [c for c in frame.columns if c not in {target, time_column, *drop}]
    text = [c for c in features if frame[c].dtype == object or frame[c].dtype == bool]
    numbers = [c for c in features if c not in text]
    n = len(frame)
    train, validation, test = (
        frame[: int(0.7 * n)],
        frame[int(0.7 * n) : int(0.85 * n)],
        frame[int(0.85 * n) :],
    )
    regression = task == "regression"
    families = {
        "linear": (Ridge, {"alpha": [0.01, 0.1, 1, 10, 100]})
        if regression
        else (LogisticRegression, {"C": [0.01, 0.1, 1, 10], "max_iter": [2000]}),
        "forest": (
            RandomForestRegressor if regression else RandomForestClassifier,
            {
                "n_estimators": [100],
                "max_depth": [8, 16, None],
                "min_samples_leaf": [1, 3, 10],
                "max_features": [0.5, 1.0] if regression else ["sqrt", 0.5],
                "n_jobs": [-1],
            },
        ),
        "boosting": (
            HistGradientBoostingRegressor if regression else HistGradientBoostingClassifier,
            {
                "max_iter": [200],
                "learning_rate": [0.05, 0.1, 0.2],
                "max_leaf_nodes": [15, 31, 63],
                "min_samples_leaf": [10, 20, 50],
            },
        ),
    }

    def model(estimator: type, params: dict):
        prep = ColumnTransformer(
            [("n", StandardScaler(), numbers), ("c", OneHotEncoder(handle_unknown="ignore"), text)]
        )
        extra = {"random_state": seed} if "random_state" in estimator().get_params() else {}
        return make_pipeline(prep, estimator(**params, **extra))

    def score(fitted, window) -> float:
        predicted = fitted.predict(window[features])
        if regression:
            return float(np.sqrt(mean_squared_error(window[target], predicted)))
        return float(f1_score(window[target], predicted, average="macro"))

    best = None
    for estimator, space in families.values():
        for params in ParameterSampler(space, n_iter=6, random_state=seed):
            value = score(model(estimator, params).fit(train[features], train[target]), validation)
            if best is None or (value < best[0] if regression else value > best[0]):
                best = (value, estimator, params)
    full = pd.concat([train, validation])
    final = model(best[1], best[2]).fit(full[features], full[target])
    return {"metric": score(final, test), "model": best[1].__name__}


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, dict]:
    """Wall seconds of `command` and the JSON object on its last output line."""
    started = time.perf_counter()
    completed = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - started
    if completed.returncode != 0:
        raise RuntimeError(f"{command} failed:\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}")
    return wall, json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="bike,car_loan")
    parser.add_argument("--shared", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--plain", help=argparse.SUPPRESS)  # run the plain script on this dataset
    args = parser.parse_args()
    if args.plain:
        file, _, target, time_column, drop, task, _, _ = DATASETS[args.plain]
        print(json.dumps(plain_script(str(Path(args.shared) / file), target, time_column, drop, task)))
        return
    rows = []
    for name in args.datasets.split(","):
        file, config, _, _, _, _, metric, target_ratio = DATASETS[name]
        csv = str(Path(args.shared).resolve() / file)
        work = Path(tempfile.mkdtemp(prefix=f"retrain-quality-{name}-"))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_", "RETRAIN_"))}

        def pipeline_on(data: str, config: str = config) -> list[str]:
            retrain = str(Path(sys.executable).parent / "retrain")
            return [retrain, "run", "--config", str(REPO / "configs" / config), "--data", data, "--json"]

        pipeline = pipeline_on(csv)
        plain = [sys.executable, str(Path(__file__).resolve()), "--plain", name, "--shared", args.shared]
        # Warm-up (fresh stores, file cache). The pipeline's leaves out the last row of the file:
        # a rerun on the champion's own data registers nothing, and the timed run must train.
        warm_up = work / f"warm-up-{file}"
        lines = Path(csv).read_text().splitlines(keepends=True)
        warm_up.write_text("".join(lines[:-1]))
        timed(pipeline_on(str(warm_up)), work, env)
        timed(plain, work, env)
        pipeline_s, pipeline_out = timed(pipeline, work, env)
        plain_s, plain_out = timed(plain, work, env)
        rows.append(
            (
                name,
                metric,
                pipeline_out["metrics"][metric],
                pipeline_s,
                plain_out["metric"],
                plain_s,
                plain_out["model"],
                target_ratio,
            )
        )
    print(
        f"{'data':<10} {'metric':<9} {'pipeline':>9} {'time s':>7} {'plain':>9} {'time s':>7} "
        f"{'ratio':>6} {'target':>7}  plain model"
    )
    for name, metric, ours, ours_s, theirs, theirs_s, model, target_ratio in rows:
        better = ours <= theirs if metric == "rmse" else ours >= theirs
        print(
            f"{name:<10} {metric:<9} {ours:>9.4f} {ours_s:>7.1f} {theirs:>9.4f} {theirs_s:>7.1f} "
            f"{ours_s / theirs_s:>5.2f}x {target_ratio:>6.1f}x  {model}; "
            f"metric {'matches or beats' if better else 'WORSE than'} plain, "
            f"time {'OK' if ours_s / theirs_s <= target_ratio else 'OVER'}"
        )


if __name__ == "__main__":
    main()
