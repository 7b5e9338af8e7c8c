"""The drift trigger against the calendar: `retrain backtest` on the three shared datasets.

Each dataset is replayed by the real command (`retrain backtest --json`, a fresh process with
Prefect and MLflow) with the default trigger settings and the default policies: `never`, the
calendar ladder (the step, 2x, 4x and 8x it) and `drift`. The ratio that matters is measured in the
same run: the trigger's mean metric against the calendar's interpolated at the same retrain count.
Prints each table, the acceptance of issue 11 (at most half the windows retrained, better than the
calendar; where retraining does not pay, `never` among the best and the trigger quiet) and the
wall time of each replay.

The backtest's own first tuning is cut to boosting with 4 configurations (what a retrain refits is
tuned once, before the replay); everything else is the bundled config.

Usage: python benchmarks/backtest.py [--datasets bike,car_loan,car_prices] [--shared DIR] [--docs]
(`--docs` copies each plot and table into docs/backtest/).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO

DATASETS = {
    # name: (file, config, step, start)
    "bike": ("bike_sharing_hourly.csv", "bike_sharing.yaml", "7d", "2012-01-01"),
    "car_loan": ("car_loan.csv", "car_loan.yaml", "14d", None),
    "car_prices": ("car_prices.csv", "car_prices.yaml", "1d", None),
}
BENCH_TUNING = "candidates:\n  hist_gradient_boosting: {}\ntuning:\n  n_trials: 4\n"


def run_backtest(name: str, shared: Path, work: Path) -> tuple[dict, float]:
    """One `retrain backtest --json` in a fresh process; its JSON summary and wall seconds."""
    file, config_name, step, start = DATASETS[name]
    config = work / f"{name}.yaml"
    config.write_text((REPO / "configs" / config_name).read_text() + BENCH_TUNING)
    command = [
        str(Path(sys.executable).with_name("retrain")),
        "backtest",
        "--config",
        str(config),
        "--data",
        str(shared / file),
        "--step",
        step,
        "--out",
        str(work / name),
        "--json",
        *(["--start", start] if start else []),
    ]
    environment = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}"}
    started = time.perf_counter()
    done = subprocess.run(command, cwd=work, env=environment, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{name}: retrain backtest failed\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1]), seconds


def acceptance(summary: dict) -> list[str]:
    """Issue 11's checks on one dataset's summary, as lines."""
    policies, windows = summary["policies"], summary["windows"]
    drift = policies["drift"]
    greater = summary["metric"] in {"accuracy", "f1_macro", "roc_auc", "r2"}
    means = {p: v["mean_metric"] for p, v in policies.items() if p != "drift"}
    best_calendar = (max if greater else min)(means.values())
    never_gap = abs(means["never"] - best_calendar) / abs(best_calendar)
    lines = [
        f"drift retrained on {drift['retrains']} of {windows} windows "
        f"({drift['retrains'] / windows:.0%}; at most half: {drift['retrains'] <= windows / 2})",
        f"drift {drift['mean_metric']:.4g} against the calendar's "
        f"{drift['calendar_metric_at_same_retrains']:.4g} at {drift['retrains']} retrains: "
        f"beats the calendar: {drift['beats_calendar']}",
        f"never is {never_gap:.2%} from the best calendar policy; the trigger fired on "
        f"{drift['retrains'] / windows:.0%} of the windows (quiet: at most 10%)",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument(
        "--shared", default=os.environ.get("RETRAIN_SHARED_DATA", str(REPO.parent / "shared" / "data"))
    )
    parser.add_argument("--docs", action="store_true", help="copy plots and tables into docs/backtest/")
    args = parser.parse_args()
    total = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in args.datasets.split(","):
            summary, seconds = run_backtest(name, Path(args.shared), work)
            total += seconds
            print(Path(summary["plot"]).with_name("backtest.md").read_text())
            print("\n".join(f"- {line}" for line in acceptance(summary)))
            print(f"- wall time {seconds:.0f} s ({summary['windows']} windows)\n", flush=True)
            if args.docs:
                docs = REPO / "docs" / "backtest"
                docs.mkdir(parents=True, exist_ok=True)
                shutil.copy(summary["plot"], docs / f"{name}.png")
                shutil.copy(Path(summary["plot"]).with_name("backtest.md"), docs / f"{name}.md")
    print(f"All replays: {total:.0f} s (target: under 600 s on 2 cores).")


if __name__ == "__main__":
    main()
