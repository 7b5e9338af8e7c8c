"""The orphan reaper: stops what a `retrain` command started (Prefect's ephemeral server) when it dies.

Run as `python -m cli.watchdog <pid>` in its own session by the command itself. It remembers the
command's descendants (from /proc) while the command lives; once the command is gone, even by
SIGKILL, it stops the remembered processes that still run, then exits. Standard library only:
it starts in milliseconds.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

POLL_S = 0.5
GRACE_S = 5.0


def start_time(pid: int) -> str | None:
    """A live process's start time in clock ticks (tells it from a reused pid); None once it died.

    A zombie counts as dead: a killed command stays one until its own parent reaps it, which may
    wait for the very pipes the orphaned server holds open.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in {"Z", "X"} else fields[19]


def descendants(root: int) -> dict[int, str]:
    """Every live descendant of `root`, with its start time."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found, pending = {}, list(children.get(root, []))
    while pending:
        pid = pending.pop()
        if (started := start_time(pid)) is not None:
            found[pid] = started
        pending.extend(children.get(pid, []))
    return found


def stop(processes: dict[int, str]) -> None:
    """SIGTERM the processes that are still the same ones, then SIGKILL those left after a grace."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = [pid for pid, started in processes.items() if start_time(pid) == started]
        for pid in alive:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                continue
        deadline = time.monotonic() + GRACE_S
        while alive and time.monotonic() < deadline:
            alive = [pid for pid in alive if start_time(pid) == processes[pid]]
            time.sleep(0.1)


def watch(pid: int) -> None:
    """Remember `pid`'s descendants until it ends, then stop those still running."""
    started = start_time(pid)
    remembered: dict[int, str] = {}
    while start_time(pid) == started and started is not None:
        remembered.update(descendants(pid))
        time.sleep(POLL_S)
    remembered.pop(os.getpid(), None)
    stop(remembered)


if __name__ == "__main__":
    watch(int(sys.argv[1]))
