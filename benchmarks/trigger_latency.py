"""Latency from a drift alert to the retrain it triggers, on a self-hosted Prefect server.

Starts `prefect server start` (SQLite database in a temporary PREFECT_HOME), trains a champion of a
tiny synthetic model with `retrain run` (MLflow on a SQLite file), then `retrain serve` for its
three deployments, exactly as a user would. Then emits N distinct `retrain.drift.detected` events
for the model's resource (`prefect.events.emit_event`, what the drift check sends), one at a time:
each event's retrain must finish before the next is sent, because the on-drift deployment's
concurrency limit (1, CANCEL_NEW) would cancel an overlapping one. The drift check's cooldown is
not involved: it lives in the drift flow, before the event, not in the trigger.

For every event it prints, from the event's `occurred` time:
- created: when the trigger's automation created the flow run (the server's reaction);
- pending: when `retrain serve` picked the run up (its runner polls every
  PREFECT_RUNNER_POLL_FREQUENCY seconds: 5 in `retrain serve`, 10 in Prefect by default);
- started: the flow run's `start_time`, when it was RUNNING in the process the runner started for
  it (after that process imported the pipeline);
- finished: when the retrain was done (for scale).
Then the median and max of each, against the target: started < 15 s. Exits 1 when any event misses it.

Usage: python benchmarks/trigger_latency.py [--events 5] [--target 15] [--poll-seconds N]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cli.servers import free_port, spawn, start_prefect_server, stop, wait_until_healthy  # noqa: E402
from deployments import deployment_names  # noqa: E402
from tasks.publish import DRIFT_EVENT  # noqa: E402

RETRAIN = str(Path(sys.executable).with_name("retrain"))


def synthetic(rows: int = 600, seed: int = 0) -> pd.DataFrame:
    """A small dated regression table (numeric x1, x2; categorical color; target y)."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=rows), rng.uniform(0, 10, size=rows)
    color = rng.choice(["red", "green", "blue"], size=rows)
    y = 3 * x1 + x2 + np.where(color == "red", 5.0, 0.0) + rng.normal(scale=0.5, size=rows)
    days = pd.date_range("2024-01-01", periods=rows, freq="D").strftime("%Y-%m-%d")
    return pd.DataFrame({"day": days, "x1": x1, "x2": x2, "color": color, "y": y})


def write_inputs(work: Path, name: str) -> Path:
    synthetic().to_csv(work / "data.csv", index=False)
    config = {
        "name": name,
        "task": "regression",
        "target": "y",
        "time_column": "day",
        "data": {"source": str(work / "data.csv")},
        "split": {"min_rows": 10},
        "tuning": {"n_trials": 2, "subset_rows": 300},
        "candidates": {"linear": {}},
        # Yearly: nothing but the benchmark's events may start a run.
        "schedule": {"cron": "0 3 1 1 *"},
        "drift": {"cron": "0 6 1 1 *"},
    }
    path = work / "bench.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def seconds(later: datetime | None, earlier: datetime) -> float | None:
    return None if later is None else (later - earlier).total_seconds()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=5)
    parser.add_argument("--target", type=float, default=15.0, help="seconds from event to start_time")
    parser.add_argument(
        "--poll-seconds",
        type=int,
        default=None,
        help="PREFECT_RUNNER_POLL_FREQUENCY for serve (default: Prefect's)",
    )
    parser.add_argument("--run-timeout", type=float, default=300.0)
    args = parser.parse_args()
    # drain_all() warns about the one event it is waiting for: expected here, not a problem.
    logging.getLogger("EventsWorker").setLevel(logging.ERROR)

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.events import emit_event
    from prefect.events.worker import EventsWorker
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

    name = f"latency-{uuid.uuid4().hex[:6]}"
    with tempfile.TemporaryDirectory(prefix="trigger-latency-") as tmp, ExitStack() as cleanup:
        work = Path(tmp)
        config = write_inputs(work, name)
        (work / "server-home").mkdir()
        (work / "client-home").mkdir()
        port = free_port(0)
        api_url = f"http://127.0.0.1:{port}/api"
        server = start_prefect_server(
            port, {"PREFECT_HOME": str(work / "server-home")}, work / "prefect-server.log"
        )
        cleanup.callback(stop, server, 20)
        started = time.monotonic()
        wait_until_healthy(f"{api_url}/health", server, timeout=120)
        print(f"Prefect server (SQLite) healthy in {time.monotonic() - started:.1f} s at {api_url}")

        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "RETRAIN_"))}
        env.update(
            {
                "PREFECT_API_URL": api_url,
                "PREFECT_HOME": str(work / "client-home"),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
                "MLFLOW_DISABLE_TELEMETRY": "true",
                "DO_NOT_TRACK": "true",
            }
        )
        if args.poll_seconds is not None:
            env["PREFECT_RUNNER_POLL_FREQUENCY"] = str(args.poll_seconds)
        started = time.monotonic()
        trained = subprocess.run(
            [RETRAIN, "run", "--config", str(config), "--json"],
            env=env, cwd=work, capture_output=True, text=True, timeout=args.run_timeout,
        )  # fmt: skip
        if trained.returncode != 0:
            print(trained.stderr[-4000:], file=sys.stderr)
            return 2
        champion = json.loads(trained.stdout.strip().splitlines()[-1])
        print(f"Champion {name} v{champion['model_version']} trained in {time.monotonic() - started:.1f} s")

        serve = spawn([RETRAIN, "serve", "--config", str(config)], work / "serve.log", env=env, cwd=work)
        cleanup.callback(stop, serve, 20)  # runs before the server's stop

        with temporary_settings(updates={PREFECT_API_URL: api_url, PREFECT_HOME: str(work / "client-home")}):
            with get_client(sync_client=True) as client:
                deadline = time.monotonic() + 120
                deployment = None
                while deployment is None:
                    if serve.poll() is not None or time.monotonic() > deadline:
                        print((work / "serve.log").read_text()[-4000:], file=sys.stderr)
                        return 2
                    try:
                        deployment = client.read_deployment_by_name(
                            f"retrain/{deployment_names(name)['on_drift']}"
                        )
                    except Exception:  # noqa: BLE001 - not registered yet
                        time.sleep(0.5)
                poll = env.get("PREFECT_RUNNER_POLL_FREQUENCY", "5 (retrain serve's default)")
                print(f"`retrain serve` ready; runner poll frequency {poll} s\n")

                def on_drift_runs() -> list:
                    return client.read_flow_runs(
                        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
                    )

                rows = []
                for index in range(args.events):
                    before = {run.id for run in on_drift_runs()}
                    reason = f"benchmark alert {index + 1} ({uuid.uuid4().hex[:8]})"
                    event = emit_event(
                        event=DRIFT_EVENT,
                        resource={
                            "prefect.resource.id": f"retrain.model.{name}",
                            "prefect.resource.name": name,
                        },
                        payload={"share_drifted": 1.0, "drifted_columns": ["x1"], "reasons": [reason]},
                    )
                    EventsWorker.drain_all(timeout=10)
                    deadline = time.monotonic() + args.run_timeout
                    while True:
                        new = [run for run in on_drift_runs() if run.id not in before]
                        if new and new[0].state and new[0].state.is_final():
                            break
                        if time.monotonic() > deadline:
                            print(f"event {index + 1}: no finished run after {args.run_timeout:.0f} s")
                            return 1
                        time.sleep(0.5)
                    run = new[0]
                    states = client.read_flow_run_states(run.id)
                    pending = min((s.timestamp for s in states if s.type.value == "PENDING"), default=None)
                    if len(new) != 1 or reason not in run.parameters.get("trigger", ""):
                        print(f"event {index + 1}: unexpected runs {[(r.name, r.parameters) for r in new]}")
                        return 1
                    rows.append(
                        {
                            "event": index + 1,
                            "run": run.name,
                            "state": run.state.type.value,
                            "created": seconds(run.created, event.occurred),
                            "pending": seconds(pending, event.occurred),
                            "started": seconds(run.start_time, event.occurred),
                            "finished": seconds(run.end_time, event.occurred),
                        }
                    )
                    row = rows[-1]
                    print(
                        f"event {row['event']}: run {row['run']:<24} {row['state']:<10} "
                        f"created +{row['created']:.2f} s  pending +{row['pending']:.2f} s  "
                        f"started +{row['started']:.2f} s  "
                        f"finished +{row['finished']:.2f} s"
                    )

        print()
        for key in ("created", "pending", "started", "finished"):
            values = [row[key] for row in rows]
            print(f"{key:>8}: median {statistics.median(values):6.2f} s   max {max(values):6.2f} s")
        slowest = max(row["started"] for row in rows)
        failed = [row for row in rows if row["state"] != "COMPLETED"]
        verdict = "MET" if slowest < args.target and not failed else "MISSED"
        print(
            f"target: every triggered retrain started < {args.target:.0f} s after its event: {verdict} "
            f"(max {slowest:.2f} s; {len(rows) - len(failed)}/{len(rows)} runs completed)"
        )
        return 0 if verdict == "MET" else 1


if __name__ == "__main__":
    sys.exit(main())
