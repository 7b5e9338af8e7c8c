"""A fresh local MLflow store opened by several processes at once: its tables are created once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO

OPENERS = 4
# Each process imports, says it is ready, waits for the others, then opens the store at once.
OPEN_STORE = """
import sys, time
from pathlib import Path
from tasks.settings import Settings
from tasks.tracking import client
folder, me, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
(folder / f"ready-{me}").touch()
while len(list(folder.glob("ready-*"))) < count:
    time.sleep(0.001)
client(Settings.from_environment()).search_experiments()
"""


def test_processes_opening_a_fresh_sqlite_store_together_all_succeed(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "PYTHONPATH": str(REPO),
    }
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_STORE, str(tmp_path), str(i), str(OPENERS)],
            cwd=tmp_path,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(OPENERS)
    ]
    errors = [p.communicate(timeout=300)[1] for p in processes]
    failed = [err[-1500:] for p, err in zip(processes, errors, strict=True) if p.returncode != 0]
    assert not failed, "opening the store failed:\n" + "\n---\n".join(failed)
    assert (tmp_path / ".retrain" / "locks" / "mlflow-store.lock").exists()
