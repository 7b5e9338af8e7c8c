"""The promotion lease: one holder per model name across processes, for re-read, compare and moves.

The lock's reach matches the registry's. A local MLflow store (SQLite under the state folder) has
writers on this machine only: an exclusive `flock` on `<state>/locks/<name>.lock` excludes them
all, and the kernel releases it the moment a holder dies. A remote MLflow server is shared by
runs on many workers: with a Prefect API the lease is a global concurrency limit of one slot
(`retrain-promote-<name>`), leased and renewed while held, which the server frees when a crashed
holder's lease expires. Without a Prefect API (the ephemeral one lives in this process only) it
falls back to the local lock.
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Iterator
from contextlib import contextmanager

from prefect import get_run_logger

from tasks.settings import Settings

LEASE_WAIT_S = 900
LEASE_DURATION_S = 60


def lease_name(name: str) -> str:
    """The global concurrency limit that guards promotions of model `name`."""
    return f"retrain-promote-{name}"


def uses_prefect_lease(settings: Settings, api_url: str | None) -> bool:
    """Whether the lease is Prefect's (a shared MLflow server and a Prefect API) or a local lock."""
    return bool(api_url) and not settings.tracking_is_local


@contextmanager
def promotion_lease(settings: Settings, name: str, api_url: str | None) -> Iterator[None]:
    """Hold the promotion lease of model `name` for the block (waits up to 15 minutes)."""
    if uses_prefect_lease(settings, api_url):
        with prefect_lease(lease_name(name)):
            yield
    else:
        with file_lock(settings, name):
            yield


@contextmanager
def prefect_lease(limit: str) -> Iterator[None]:
    """One slot of the global concurrency limit `limit` (created with one slot on first use)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.concurrency.sync import concurrency
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as prefect_client:
        try:
            prefect_client.read_global_concurrency_limit_by_name(limit)
        except ObjectNotFound:
            try:
                prefect_client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=limit, limit=1)
                )
            except ObjectAlreadyExists:
                pass
    with concurrency(
        limit, occupy=1, timeout_seconds=LEASE_WAIT_S, lease_duration=LEASE_DURATION_S, strict=True
    ):
        yield


@contextmanager
def file_lock(settings: Settings, name: str) -> Iterator[None]:
    """An exclusive `flock` on the model's lock file under the state folder."""
    folder = settings.state_dir / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{name}.lock", "a+") as handle:
        deadline = time.monotonic() + LEASE_WAIT_S
        waiting = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waiting:
                    get_run_logger().info("Waiting for the promotion lock of %s (another run holds it)", name)
                    waiting = True
                if time.monotonic() > deadline:
                    held = f"the promotion lock of {name} was held for {LEASE_WAIT_S} s"
                    raise TimeoutError(held) from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
