"""Task options of the I/O edges (files, network, MLflow): retried, never for bad input, not cached."""

from __future__ import annotations

from typing import Any

from prefect.cache_policies import NO_CACHE

from core.errors import BadInputError


def retry_unless_bad_input(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect `retry_condition_fn`: retry I/O failures, never the user's bad input."""
    try:
        state.result()
    except BadInputError:
        return False
    except Exception:
        return True
    return False


def io_edge_options() -> dict[str, object]:
    """Options of every I/O edge task: two retries 2 s apart unless the input is bad, no cache.

    Edges read what is there now (a file, a registry alias), so a cached result would be stale.
    """
    return {
        "cache_policy": NO_CACHE,
        "retries": 2,
        "retry_delay_seconds": 2,
        "retry_condition_fn": retry_unless_bad_input,
    }
