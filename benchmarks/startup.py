"""Start-up tax of the commands: the whole `retrain drift` and the fixed cost of `retrain run`.

The reference is a bare `python -c "import prefect, mlflow, sklearn, pandas"`, measured in the same
run, in turns with the commands (so load from other jobs falls on both sides alike). On the real
bike-sharing data (`--data`), in a fresh folder:

1. a champion trained on 2011 (`retrain run --data <2011 rows>`, also the warm-up);
2. `retrain drift --current <batch>` on 2,000 rows of 2012 resampled with jitter (a new batch each
   time: a batch already checked is skipped), with Prefect's ephemeral API and against a running
   local server (the one `retrain dashboard` starts; here the same helper, `cli.servers`);
3. `retrain run` on all rows, both ways: its fixed cost is its wall time minus the time in model
   fits, the union of the intervals of its fitting task runs (`features` with the calendar probe,
   `baseline`, every `trial`, `refit`) as the Prefect API recorded them.

Prints the median of each and its ratio to the bare import, against the targets of issue 15
(whole drift command at most 2x the import with a local server; the run's fixed cost the same).

Usage: python benchmarks/startup.py [--data PATH] [--repeats N] [--runs N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
from common import REPO, add_data_option

CONFIG = REPO / "configs" / "bike_sharing.yaml"
BARE_IMPORT = [sys.executable, "-c", "import prefect, mlflow, sklearn, pandas"]
FIT_TASKS = {"features", "baseline", "refit"}
BATCH_ROWS = 2_000
JITTERED = ["temp", "atemp", "hum", "windspeed"]
TARGET_RATIO = 2.0


def retrain(*args: str) -> list[str]:
    """The `retrain` command line (this interpreter, so the checkout under test is what runs)."""
    return [sys.executable, "-m", "cli", *args]


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, dict | None]:
    """Wall seconds of `command`, and the JSON object on its last output line (when it prints one)."""
    started = time.perf_counter()
    completed = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - started
    if completed.returncode != 0:
        raise RuntimeError(f"{command} failed:\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}")
    last = completed.stdout.strip().splitlines()[-1:] or [""]
    return wall, json.loads(last[0]) if last[0].startswith("{") else None


def write_batch(frame: pd.DataFrame, path: Path, seed: int) -> Path:
    """2,000 rows of 2012 drawn with replacement, the weather columns jittered."""
    rng = np.random.default_rng(seed)
    recent = frame[frame["dteday"] >= "2012-01-01"]
    batch = recent.sample(n=BATCH_ROWS, replace=True, random_state=seed).sort_values("dteday")
    for column in JITTERED:
        batch[column] = (batch[column] + rng.normal(0, 0.02, len(batch))).clip(0, 1).round(4)
    batch.to_csv(path, index=False)
    return path


def fit_intervals(api_url: str, since: datetime, until: datetime) -> float:
    """Seconds within [since, until] during which at least one fitting task run was running."""
    spans, offset = [], 0
    while True:
        body = {
            "task_runs": {"start_time": {"after_": since.isoformat(), "before_": until.isoformat()}},
            "limit": 200,
            "offset": offset,
        }
        request = urllib.request.Request(
            f"{api_url}/task_runs/filter",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            page = json.loads(response.read())
        for run in page:
            fitting = "-round" in run["name"] or run["name"].rsplit("-", 1)[0] in FIT_TASKS
            if fitting and run["start_time"] and run["end_time"]:
                spans.append(
                    (datetime.fromisoformat(run["start_time"]), datetime.fromisoformat(run["end_time"]))
                )
        if len(page) < 200:
            break
        offset += 200
    covered, end = 0.0, None
    for start, stop in sorted(spans):
        if end is None or start > end:
            covered += (stop - start).total_seconds()
            end = stop
        elif stop > end:
            covered += (stop - end).total_seconds()
            end = stop
    return covered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_option(parser)
    parser.add_argument("--repeats", type=int, default=5, help="drift checks (and bare imports) each way")
    parser.add_argument("--runs", type=int, default=2, help="`retrain run` on all rows, each way")
    parser.add_argument(
        "--explicit-url",
        action="store_true",
        help="give the local server's URL as PREFECT_API_URL instead of letting the commands find it",
    )
    args = parser.parse_args()
    csv = Path(args.data).resolve()
    frame = pd.read_csv(csv)
    work = Path(tempfile.mkdtemp(prefix="retrain-startup-"))
    os.chdir(work)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_", "RETRAIN_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    train_2011 = work / "bike-2011.csv"
    frame[frame["dteday"] < "2012-01-01"].to_csv(train_2011, index=False)
    config = str(CONFIG)
    timed(retrain("run", "--config", config, "--data", str(train_2011), "--json"), work, env)
    batches = iter(write_batch(frame, work / f"batch-{i}.csv", i) for i in range(2 * args.repeats + 2))

    def drift_checks(count: int) -> list[float]:
        walls = []
        for _ in range(count):
            wall, summary = timed(
                retrain("drift", "--config", config, "--current", str(next(batches)), "--json"), work, env
            )
            assert summary and "drift_detected" in summary, summary
            walls.append(wall)
        return walls

    def full_runs(count: int) -> list[tuple[float, datetime, datetime]]:
        runs = []
        for _ in range(count):
            started = datetime.now().astimezone()
            wall, _ = timed(retrain("run", "--config", config, "--data", str(csv), "--json"), work, env)
            runs.append((wall, started, datetime.now().astimezone()))
        return runs

    bare = [timed(BARE_IMPORT, work, env)[0] for _ in range(2)]  # warm the file cache
    drift_checks(1)  # warm-up of the ephemeral path
    bare, ephemeral_drift = [], []
    for _ in range(args.repeats):
        bare.append(timed(BARE_IMPORT, work, env)[0])
        ephemeral_drift += drift_checks(1)
    ephemeral_runs = full_runs(args.runs)

    sys.path.insert(0, str(REPO))
    from cli.servers import local_prefect_server
    from tasks.settings import Settings

    with local_prefect_server(Settings.from_environment(), 4290) as api_url:
        if args.explicit_url:
            env["PREFECT_API_URL"] = api_url
        drift_checks(1)  # warm-up against the server
        server_drift = []
        for _ in range(args.repeats):
            bare.append(timed(BARE_IMPORT, work, env)[0])
            server_drift += drift_checks(1)
        server_runs = full_runs(args.runs)
        # The ephemeral runs' task runs are in the same database (.retrain/prefect), now served here.
        fits = {id(r): fit_intervals(api_url, r[1], r[2]) for r in ephemeral_runs + server_runs}

    bare_s = statistics.median(bare)
    print(f"data: {csv.name}; batch {BATCH_ROWS} rows of 2012 (jittered), champion trained on 2011")
    print(f"bare `import prefect, mlflow, sklearn, pandas`: {bare_s:.2f} s (median of {len(bare)})")
    print(f"{'what':<52} {'median s':>9} {'x import':>9}  target")
    for label, seconds, target in (
        ("retrain drift, ephemeral Prefect (whole command)", statistics.median(ephemeral_drift), None),
        ("retrain drift, local server (whole command)", statistics.median(server_drift), TARGET_RATIO),
    ):
        verdict = (
            "" if target is None else f"<= {target:.1f}x: {'OK' if seconds / bare_s <= target else 'OVER'}"
        )
        print(f"{label:<52} {seconds:>9.2f} {seconds / bare_s:>8.2f}x  {verdict}")
    for label, runs in (("ephemeral Prefect", ephemeral_runs), ("local server", server_runs)):
        wall = statistics.median(r[0] for r in runs)
        fit = statistics.median(fits[id(r)] for r in runs)
        fixed = wall - fit
        ok = "OK" if fixed / bare_s <= TARGET_RATIO else "OVER"
        print(f"retrain run, {label}: wall {wall:.2f} s, in model fits {fit:.2f} s")
        label = "  fixed cost (wall - fits)"
        print(f"{label:<52} {fixed:>9.2f} {fixed / bare_s:>8.2f}x  <= {TARGET_RATIO:.1f}x: {ok}")


if __name__ == "__main__":
    main()
