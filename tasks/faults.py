"""Named fault points for crash tests: inert unless `$RETRAIN_FAILPOINT` names one.

`RETRAIN_FAILPOINT=<point>` kills the process (SIGKILL, as a crashing machine would) when it
reaches `<point>`; `<point>:pause` writes `<state>/failpoints/<point>.reached` and waits until
`<point>.release` appears, so a test can interleave two runs at exactly that step.
"""

from __future__ import annotations

import os
import signal
import time

from tasks.settings import Settings

PAUSE_LIMIT_S = 600


def reach(settings: Settings, point: str) -> None:
    """Act on the configured fault if it names `point`; otherwise return at once."""
    if not settings.failpoint:
        return
    name, _, action = settings.failpoint.partition(":")
    if name != point:
        return
    if action == "pause":
        folder = settings.state_dir / "failpoints"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{point}.reached").touch()
        deadline = time.monotonic() + PAUSE_LIMIT_S
        while not (folder / f"{point}.release").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        return
    os.kill(os.getpid(), signal.SIGKILL)
