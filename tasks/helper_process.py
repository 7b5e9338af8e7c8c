"""A helper process that takes a slow import off a flow's path: started, handed one request, reaped.

Some libraries take most of a second or more to import (Evidently, matplotlib), and only one late
step of a flow needs them. A helper (`python -m <its module>`) is started when that step begins,
or earlier, and imports them on the other core while the flow goes on. It is then handed one
request, a JSON line on its standard input naming data files it reads (never code), and the step
collects what it wrote. This module imports only the standard library, so starting a helper
costs nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any, Self

# A helper's import and one request take seconds; far longer means it is stuck.
HELPER_TIMEOUT_S = 600


class HelperProcess:
    """The helper process of one step (a context manager: it never outlives the step).

    Subclasses name their worker module in `command` and the module whose presence in this
    process makes a helper pointless (`slow_import`).
    """

    command: tuple[str, ...] = ()
    slow_import = ""

    def __init__(self, spawn: bool = True) -> None:
        self.spawn_helper = spawn
        self.folder = Path(tempfile.mkdtemp(prefix="retrain-helper-"))
        self.log = self.folder / "worker.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.failure = "the helper process did not start"
        self.closed = False

    def __enter__(self) -> Self:
        early = _EARLY.pop() if _EARLY else None
        if (
            early is not None
            and self.spawn_helper
            and early.command == self.command
            and early.process is not None
            and early.process.poll() is None
        ):
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder, self.log, self.process = early.folder, early.log, early.process
            return self
        if early is not None:
            early.__exit__(None, None, None)  # dead, or started for another helper command
        self.process = self.spawn() if self.spawn_helper else None
        return self

    @classmethod
    def for_this_process(cls) -> Self:
        """A helper, unless its slow import is already done here (a warm process, such as a test
        session or a benchmark): then the work is done in this process, at no import cost."""
        worker = cls(spawn=cls.slow_import not in sys.modules)
        if not worker.spawn_helper:
            worker.failure = f"{cls.slow_import} is already imported in this process"
        return worker

    def spawn(self) -> subprocess.Popen[bytes] | None:
        """The helper process, importing its libraries and then waiting for its request (None: it
        could not start, and the work is done in this process)."""
        # The helper imports this checkout's code, wherever the flow runs from.
        project = str(Path(__file__).resolve().parent.parent)
        path = os.pathsep.join(p for p in (project, os.environ.get("PYTHONPATH")) if p)
        try:
            with self.log.open("wb") as log:
                return subprocess.Popen(
                    [sys.executable, *self.command],
                    stdin=subprocess.PIPE,
                    stdout=log,
                    stderr=log,
                    env={**os.environ, "PYTHONPATH": path},
                )
        except OSError:
            return None

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.closed = True  # the step is over: work still being done is no longer wanted
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)

    def serve(self, request: dict[str, Any], done: Path) -> bool:
        """Hand the helper `request` and wait for it to exit; whether it wrote `done` (when not,
        the reason is in `self.failure`)."""
        if self.process is None or self.process.stdin is None:
            return False
        try:
            self.process.stdin.write((json.dumps(request) + "\n").encode())
            self.process.stdin.close()
        except OSError:
            pass  # it has exited: its code and last words say why
        try:
            code = self.process.wait(timeout=HELPER_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.failure = f"the helper process took over {HELPER_TIMEOUT_S} s"
            return False
        if code != 0 or not done.is_file():
            tail = self.log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            self.failure = f"the helper process exited with {code}: {tail[0]}"
            return False
        return True


# A helper the command line started before its imports, for the step it is about to run.
_EARLY: list[HelperProcess] = []


def start_early(helper: type[HelperProcess]) -> None:
    """Start the next step's helper now (from the command line, before its slow imports).

    A helper nobody adopts reads end-of-file on its standard input when this process exits, and
    exits too.
    """
    worker = helper()
    worker.process = worker.spawn()
    if worker.process is not None:
        _EARLY.append(worker)
