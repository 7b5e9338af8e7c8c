"""Flow tier for how the command line runs its flows: without Prefect's heartbeat thread, whose
one-second sleeps the end of every flow run waited for."""

from __future__ import annotations

import time

from prefect import flow
from prefect.runtime import flow_run

from cli.app import run_flow
from conftest import received_events

HEARTBEAT = "prefect.flow-run.heartbeat"


@flow
def short_flow() -> str:
    time.sleep(1.5)  # long enough for a heartbeat thread, if there is one, to send its first beat
    return str(flow_run.id)


def test_a_commands_flow_run_sends_no_heartbeats() -> None:
    in_command = run_flow(short_flow, debug=True)
    outside = short_flow()
    # The same flow outside a command sends them (waited for until the API has stored one) ...
    assert received_events(HEARTBEAT, f"prefect.flow-run.{outside}")
    # ... and by then it would have stored the command's, sent earlier.
    assert received_events(HEARTBEAT, f"prefect.flow-run.{in_command}", expect=False) == []
