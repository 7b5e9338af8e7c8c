"""The promotion guard under forced interleaving and crashes between the registry writes.

Two promotions race: run A is paused right after it re-reads the champion (a named fault point),
run B starts meanwhile. With the lease, B waits and then finds its comparison stale; without it,
both would win. A process killed before or between the alias writes leaves a record the next
run's recovery completes or undoes.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from conftest import REPO, make_config
from core.promotion import CHAMPION, PREVIOUS, Decision
from tasks.registry import PENDING_TAG, ChampionInfo, promote
from tasks.settings import Settings

NAME = "test-model"


def registry_with_champion(tmp_path: Path, versions: int = 3) -> MlflowClient:
    """A registered model with `versions` versions; version 1 is the champion."""
    registry = MlflowClient(mlflow.get_tracking_uri(), registry_uri=mlflow.get_tracking_uri())
    registry.create_registered_model(NAME)
    for _ in range(versions):
        registry.create_model_version(NAME, source=str(tmp_path))
    registry.set_registered_model_alias(NAME, CHAMPION, "1")
    return registry


def first_champion() -> ChampionInfo:
    return ChampionInfo(NAME, "1", None, {}, {})


@pytest.mark.parametrize("lease", ["prefect-concurrency-limit", "file-lock"])
def test_a_run_paused_after_its_reread_cannot_be_overtaken(
    mlflow_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lease: str
) -> None:
    import tasks.locks

    # The store here is SQLite (a local lock suffices); the Prefect lease is what a shared server gets.
    monkeypatch.setattr(tasks.locks, "uses_prefect_lease", lambda settings, api: lease != "file-lock")
    registry = registry_with_champion(tmp_path)
    settings = Settings.from_environment()
    paused = dataclasses.replace(settings, failpoint="after-champion-reread:pause")
    results: dict[str, Decision] = {}

    def run(key: str, run_settings: Settings, version: str) -> None:
        results[key] = promote(
            run_settings, NAME, version, Decision(True, f"{key} is better"), first_champion()
        )

    run_a = threading.Thread(target=run, args=("A", paused, "2"))
    run_a.start()
    failpoints = settings.state_dir / "failpoints"
    deadline = time.monotonic() + 60
    while not (failpoints / "after-champion-reread.reached").exists():
        assert time.monotonic() < deadline, "run A never reached its re-read"
        time.sleep(0.05)
    run_b = threading.Thread(target=run, args=("B", settings, "3"))
    run_b.start()
    run_b.join(timeout=3)
    assert run_b.is_alive(), "run B promoted while run A held the promotion lease"
    (failpoints / "after-champion-reread.release").touch()
    run_a.join(timeout=60)
    run_b.join(timeout=60)

    assert results["A"].promote and not results["B"].promote
    assert "champion moved to version 2" in results["B"].reason
    assert str(registry.get_model_version_by_alias(NAME, CHAMPION).version) == "2"
    assert str(registry.get_model_version_by_alias(NAME, PREVIOUS).version) == "1"
    versions = registry.search_model_versions(f"name='{NAME}'")
    decisions = {str(v.version): v.tags.get("decision") for v in versions}
    assert decisions == {"1": None, "2": "promoted", "3": "rejected"}


def promote_in_killed_process(store: str, failpoint: str, env: dict[str, str]) -> int:
    """Promote version 2 in a fresh process that SIGKILLs itself at `failpoint`."""
    code = (
        "from core.promotion import Decision\n"
        "from tasks.registry import ChampionInfo, promote\n"
        "from tasks.settings import Settings\n"
        f"promote(Settings.from_environment(), {NAME!r}, '2', Decision(True, 'better'), "
        f"ChampionInfo({NAME!r}, '1', None, {{}}, {{}}))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code],
        cwd=os.getcwd(),
        env={**env, "MLFLOW_TRACKING_URI": store, "RETRAIN_FAILPOINT": failpoint, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    return completed.returncode


@pytest.mark.parametrize(
    ("failpoint", "champion", "previous", "decision"),
    [
        ("before-alias-writes", "1", None, "interrupted"),
        ("between-alias-writes", "2", "1", "promoted"),
    ],
)
def test_a_kill_during_promotion_is_repaired_by_the_next_run(
    mlflow_store: str,
    tmp_path: Path,
    failpoint: str,
    champion: str,
    previous: str | None,
    decision: str,
) -> None:
    from prefect.settings import PREFECT_API_URL

    from tasks.recovery import recover

    registry = registry_with_champion(tmp_path, versions=2)
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    assert promote_in_killed_process(mlflow_store, failpoint, env) == -9
    assert PENDING_TAG in registry.get_registered_model(NAME).tags
    assert "decision" not in registry.get_model_version(NAME, "2").tags

    notes = recover(Settings.from_environment(), make_config("unused"))

    assert notes and "version 2" in notes[0]
    assert str(registry.get_model_version_by_alias(NAME, CHAMPION).version) == champion
    aliases = {alias: str(version) for alias, version in registry.get_registered_model(NAME).aliases.items()}
    assert aliases.get(PREVIOUS) == previous
    assert registry.get_model_version(NAME, "2").tags["decision"] == decision
    assert PENDING_TAG not in registry.get_registered_model(NAME).tags


@pytest.mark.slow
def test_concurrent_runs_on_sqlite_promote_exactly_one(tmp_path: Path) -> None:
    from conftest import assert_one_winner, run_concurrently, write_tiny_cli_config

    write_tiny_cli_config(tmp_path, NAME)
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    from prefect.settings import PREFECT_API_URL

    env = {k: v for k, v in os.environ.items() if not k.startswith("RETRAIN_")}
    # The session's Prefect API (no ephemeral server per run); the SQLite store means a local lock.
    env |= {"MLFLOW_TRACKING_URI": store, "PYTHONPATH": str(REPO), "PREFECT_API_URL": PREFECT_API_URL.value()}
    command = [sys.executable, "-m", "cli", "run", "--config", str(tmp_path / "config.yaml"), "--json"]

    summaries = run_concurrently([command, command], env, tmp_path)

    assert_one_winner(summaries, MlflowClient(store, registry_uri=store), NAME)


def test_recovery_takes_no_lease_when_the_registry_holds_nothing_to_repair(
    mlflow_store: str, tmp_path: Path
) -> None:
    from tasks.locks import file_lock
    from tasks.recovery import recover

    registry = registry_with_champion(tmp_path, versions=1)
    registry.set_model_version_tag(NAME, "1", "decision", "promoted")
    settings = Settings.from_environment()
    held, release, notes = threading.Event(), threading.Event(), []

    def hold_the_lease() -> None:
        with file_lock(settings, NAME):
            held.set()
            release.wait(300)

    holder = threading.Thread(target=hold_the_lease)
    checker = threading.Thread(target=lambda: notes.append(recover(settings, make_config("unused"))))
    holder.start()
    try:
        assert held.wait(30)
        # Another run holds the lease (promoting, say): this run's recovery must not wait for it.
        checker.start()
        checker.join(timeout=120)
        assert notes == [[]], "recovery waited for the promotion lease with nothing to repair"
    finally:
        release.set()
        holder.join()
        if checker.is_alive():
            checker.join()
