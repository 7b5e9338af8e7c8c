"""Start-up tax of the commands: the whole `retrain drift` and the fixed cost of `retrain run`.

The reference is a bare `python -c "import prefect, mlflow, sklearn, pandas"`, measured in the same
run, in turns with the commands (so load from other jobs falls on both sides alike). On the real
bike-sharing data (`--data`), in a fresh folder:

1. a champion trained on 2011 (`retrain run --data <2011 rows>`, also the warm-up);
2. `retrain drift --current <batch>` on 2,000 rows of 2012 resampled with jitter (a new batch each
   time: a batch already checked is skipped), with Prefect's ephemeral API and against a running
   local server (the one `retrain dashboard` starts; here the same helper, `cli.servers`);
3. `retrain run` on all rows but the last few (other rows each time, so each run trains), both
   ways: its fixed cost is its wall time minus the time in model fits, the union of the intervals
   of its fitting task runs (`features` with the calendar probe, `baseline`, every `trial`,
   `refit`) as the Prefect API recorded them.

Prints the median of each and its ratio to the bare import, against the targets of issue 15
(whole drift command at most 2x the import with a local server; the run's fixed cost the same).

Usage: python benchmarks/startup.py [--data PATH] [--repeats N] [--runs N] [--ephemeral-runs N]
       [--champion-trials N]
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
import yaml
from common import REPO, add_data_option

CONFIG = REPO / "configs" / "bike_sharing.yaml"
BARE_IMPORT = [sys.executable, "-c", "import prefect, mlflow, sklearn, pandas"]
FIT_TASKS = {"features", "baseline", "refit", "trial"}
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


def read_runs(api_url: str, kind: str, since: datetime, until: datetime) -> list[dict]:
    """The finished task runs or flow runs (`kind`) that started within [since, until], with times."""
    runs, offset = [], 0
    while True:
        body = {
            kind: {"start_time": {"after_": since.isoformat(), "before_": until.isoformat()}},
            "limit": 200,
            "offset": offset,
        }
        request = urllib.request.Request(
            f"{api_url}/{kind}/filter",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            page = json.loads(response.read())
        for run in page:
            if run["start_time"] and run["end_time"]:
                runs.append(
                    {
                        "name": run["name"],
                        "start": datetime.fromisoformat(run["start_time"]),
                        "end": datetime.fromisoformat(run["end_time"]),
                    }
                )
        if len(page) < 200:
            return runs
        offset += 200


def task_name(run: dict) -> str:
    """The task of a task run: its default name is `<task>-<suffix>`, a trial's `<family>-round<k>`."""
    return "trial" if "-round" in run["name"] else run["name"].rsplit("-", 1)[0]


def covered_seconds(spans: list[dict]) -> float:
    """Seconds during which at least one of the runs was running (the union of their intervals)."""
    covered, end = 0.0, None
    for run in sorted(spans, key=lambda r: r["start"]):
        if end is None or run["start"] > end:
            covered += (run["end"] - run["start"]).total_seconds()
            end = run["end"]
        elif run["end"] > end:
            covered += (run["end"] - end).total_seconds()
            end = run["end"]
    return covered


def where_the_time_goes(api_url: str, wall: float, since: datetime, until: datetime) -> tuple[float, str]:
    """The seconds in model fits, and a line saying where the rest of the run's seconds went."""
    tasks = read_runs(api_url, "task_runs", since, until)
    fits = covered_seconds([t for t in tasks if task_name(t) in FIT_TASKS])
    main_flow = min(read_runs(api_url, "flow_runs", since, until), key=lambda f: f["start"])
    before = (main_flow["start"] - since).total_seconds()
    after = (until - main_flow["end"]).total_seconds()
    others: dict[str, float] = {}
    for run in tasks:
        if task_name(run) not in FIT_TASKS:
            others[task_name(run)] = (
                others.get(task_name(run), 0.0) + (run["end"] - run["start"]).total_seconds()
            )
    top = ", ".join(
        f"{name} {seconds:.1f}" for name, seconds in sorted(others.items(), key=lambda i: -i[1])[:7]
    )
    inside = wall - before - after - fits
    line = (
        f"    before the flow run starts (imports, config, Prefect API) {before:.1f} s; after it ends "
        f"{after:.1f} s; in the flow {inside:.1f} s outside fits; other task runs (s, may overlap): {top}"
    )
    return fits, line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_option(parser)
    parser.add_argument("--repeats", type=int, default=5, help="drift checks (and bare imports) each way")
    parser.add_argument("--runs", type=int, default=2, help="`retrain run` on all rows, local server")
    parser.add_argument("--ephemeral-runs", type=int, help="the same, ephemeral API (default: --runs)")
    parser.add_argument("--champion-trials", type=int, help="tuning.n_trials of the 2011 champion (quicker)")
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
    if args.champion_trials:
        raw = yaml.safe_load(CONFIG.read_text())
        raw["tuning"] = {**raw.get("tuning", {}), "n_trials": args.champion_trials}
        (work / "champion.yaml").write_text(yaml.safe_dump(raw))
        config = str(work / "champion.yaml")
    timed(retrain("run", "--config", config, "--data", str(train_2011), "--json"), work, env)
    config = str(CONFIG)
    batches = iter(write_batch(frame, work / f"batch-{i}.csv", i) for i in range(2 * args.repeats + 2))

    def drift_checks(count: int) -> list[float]:
        walls = []
        for _ in range(count):
            wall, summary = timed(
                retrain("drift", "--config", config, "--current", str(next(batches)), "--json"), work, env
            )
            assert summary and "drift_detected" in summary, summary
            walls.append(wall)
            print(f"  (retrain drift: {wall:.2f} s)", file=sys.stderr, flush=True)
        return walls

    run_data = iter(range(1, 100))

    def full_runs(count: int) -> list[tuple[float, datetime, datetime]]:
        runs = []
        for _ in range(count):
            # Each run on other rows (the last k left out): a rerun on the champion's data trains nothing
            rows = work / "run-data.csv"
            frame.iloc[: -next(run_data)].to_csv(rows, index=False)
            started = datetime.now().astimezone()
            wall, _ = timed(retrain("run", "--config", config, "--data", str(rows), "--json"), work, env)
            runs.append((wall, started, datetime.now().astimezone()))
            print(f"  (retrain run: {wall:.2f} s)", file=sys.stderr, flush=True)
        return runs

    bare = [timed(BARE_IMPORT, work, env)[0] for _ in range(2)]  # warm the file cache
    drift_checks(1)  # warm-up of the ephemeral path
    bare, ephemeral_drift = [], []
    for _ in range(args.repeats):
        bare.append(timed(BARE_IMPORT, work, env)[0])
        print(f"  (bare import: {bare[-1]:.2f} s)", file=sys.stderr, flush=True)
        ephemeral_drift += drift_checks(1)
    ephemeral_runs = full_runs(args.runs if args.ephemeral_runs is None else args.ephemeral_runs)

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
            print(f"  (bare import: {bare[-1]:.2f} s)", file=sys.stderr, flush=True)
            server_drift += drift_checks(1)
        server_runs = full_runs(args.runs)
        # The ephemeral runs' task runs are in the same database (.retrain/prefect), now served here.
        fits = {id(r): where_the_time_goes(api_url, *r) for r in ephemeral_runs + server_runs}

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
        if not runs:
            continue
        wall = statistics.median(r[0] for r in runs)
        fit = statistics.median(fits[id(r)][0] for r in runs)
        fixed = wall - fit
        verdict = f"<= {TARGET_RATIO:.1f}x: {'OK' if fixed / bare_s <= TARGET_RATIO else 'OVER'}"
        print(f"retrain run, {label}: wall {wall:.2f} s, in model fits {fit:.2f} s")
        print(f"{'  fixed cost (wall - fits)':<52} {fixed:>9.2f} {fixed / bare_s:>8.2f}x  {verdict}")
        print(fits[id(runs[-1])][1])


if __name__ == "__main__":
    main()
