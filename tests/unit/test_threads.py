"""Only the flow's own thread runs OpenMP wide: side tasks and trials use one thread each.

OpenMP keeps a team of workers for every Python thread that used more than one thread; once the
teams outnumber the cores every boosting fit in the process slows down several times. The limit
is per thread, so it is checked in a fresh interpreter without the suite's OMP_NUM_THREADS=1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.config import TuningConfig
from core.search import threads_per_trial

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import json
from concurrent.futures import ThreadPoolExecutor
import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor  # loads scikit-learn's OpenMP
from threadpoolctl import threadpool_info
from core.threads import on_one_openmp_thread

def openmp_threads_here():
    return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "openmp"][0]

HistGradientBoostingRegressor(max_iter=2).fit(np.arange(40.0).reshape(20, 2), np.arange(20.0))
with ThreadPoolExecutor(1) as pool:
    wide = pool.submit(openmp_threads_here).result()
    limited = pool.submit(on_one_openmp_thread(openmp_threads_here)).result()
    after = pool.submit(openmp_threads_here).result()
print(json.dumps({"wide": wide, "limited": limited, "after": after}))
"""


def test_work_beside_the_flow_runs_on_one_openmp_thread_and_only_for_its_call() -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "OPENBLAS_", "MKL_"))}
    environment["PYTHONPATH"] = str(REPO)
    completed = subprocess.run(
        [sys.executable, "-c", PROBE], env=environment, capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    seen = json.loads(completed.stdout.strip().splitlines()[-1])
    assert seen["limited"] == 1
    if (os.cpu_count() or 1) > 1:
        assert seen["wide"] > 1 and seen["after"] == seen["wide"]


def test_the_tasks_submitted_beside_the_flow_are_limited_to_one_openmp_thread() -> None:
    from tasks.registry import register_model, score_champion
    from tasks.tracking import log_plots

    for side_task in (score_champion, register_model, log_plots):
        assert getattr(side_task.fn, "one_openmp_thread", False), side_task.name


@pytest.mark.parametrize(("runner", "threads"), [("threads", 1), ("dask", None)])
def test_trials_on_threads_use_one_openmp_thread_each(runner: str, threads: int | None) -> None:
    assert threads_per_trial(TuningConfig(runner=runner)) == threads
