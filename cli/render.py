"""Rendering on the console: the human summaries, the `--json` line and the error paragraph."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from core.results import DriftSummary, ModelsListing, RetrainSummary, RollbackSummary, ScoreSummary, json_view
from core.secrets import redact_url
from tasks.redaction import mask_known

if TYPE_CHECKING:  # importing it loads Prefect, which the commands set up first
    from tasks.notify import NotificationsApplied


def fail(message: str, code: int, debug: bool) -> None:
    """Print the error paragraph (with the traceback under --debug) and exit with `code`."""
    console = Console(stderr=True)
    if debug:
        console.print_exception()
    # The message is plain text: a column such as `temp[c]` must not be read as console markup.
    console.print(f"[bold red]Error:[/] {escape(mask_known(message))}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def print_json(result: Any) -> None:
    """The `--json` contract: one JSON object, the result's json fields, as the last line of stdout."""
    sys.stdout.write(json.dumps(json_view(result), default=str) + "\n")


def table(title: str, columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> Table:
    """A rich table of `rows` (dicts) showing `columns` in order."""
    shown = Table(title=title)
    for column in columns:
        shown.add_column(column)
    for row in rows:
        shown.add_row(*(str(row[c]) for c in columns))
    return shown


def print_summary(result: RetrainSummary, tracking_uri: str) -> None:
    """The human summary: leaderboard, baseline, champion, decision, where to look."""
    console = Console()
    if not result.registered:
        console.print(f"[bold yellow]NOTHING REGISTERED[/] {result.model_name}: {escape(result.decision)}")
        console.print(f"MLflow: run {result.mlflow_run_id} in {redact_url(tracking_uri)}", highlight=False)
        return
    metric = result.metric
    columns = ("rank", "candidate", f"validation_{metric}", "trials", "best_params", "best_per_round")
    console.print(table(f"Leaderboard (validation {metric})", columns, result.leaderboard))
    rows = [
        {"model": f"challenger ({result.best_candidate}) v{result.model_version}", **result.metrics},
        {"model": "baseline", **result.baseline_metrics},
    ]
    if result.champion_metrics:
        rows.append({"model": f"champion v{result.champion_version}", **result.champion_metrics})
    formatted = [{k: v if k == "model" else f"{v:.4f}" for k, v in row.items()} for row in rows]
    console.print(table("Test window", ("model", *result.metrics), formatted))
    verdict = "[bold green]PROMOTED[/]" if result.promoted else "[bold yellow]NOT PROMOTED[/]"
    console.print(f"{verdict} {result.model_name} v{result.model_version}: {result.decision}")
    console.print(f"Search: {result.trials} trials in {result.tuning_seconds:.1f} s", highlight=False)
    if result.deleted_versions:
        console.print(f"Retention: deleted versions {', '.join(result.deleted_versions)}", highlight=False)
    console.print(
        f"MLflow: run {result.mlflow_run_id} in {redact_url(tracking_uri)}\n"
        f"Prefect: flow run {result.prefect_flow_run_id}\n"
        "See both in the dashboards: `retrain dashboard` (or `make dashboard`).",
        highlight=False,
        soft_wrap=True,
    )


def print_drift_summary(result: DriftSummary) -> None:
    """The human drift summary: per-column table, verdict with reasons, evidence and alert."""
    console = Console()
    if result.columns:
        columns = ("column", "kind", "method", "score", "threshold", "drifted")
        console.print(table("Drift per feature (full batch)", columns, result.columns))
    verdict = "[bold red]DRIFT DETECTED[/]" if result.drift_detected else "[bold green]NO DRIFT[/]"
    console.print(verdict)
    for reason in result.reasons:
        console.print(f"  - {escape(reason)}", highlight=False)
    if result.performance:
        perf = result.performance
        console.print(f"Champion {perf.metric} on the batch: {perf.batch:.4f} (test: {perf.champion_test})")
    console.print(
        f"Report: {result.report_path}\nMLflow run: {result.mlflow_run_id}\n"
        f"Alert: {escape(result.event_note)}",
        highlight=False,
        soft_wrap=True,
    )


def print_score_summary(result: ScoreSummary) -> None:
    """The human scoring summary: version, rows, where the predictions went, their distribution."""
    stats = result.prediction_stats
    if "class_shares" in stats:
        spread = ", ".join(f"{label} {share:.1%}" for label, share in stats["class_shares"].items())
    else:
        q = stats["quantiles"]
        spread = f"median {q['0.5']:.4g}, 5%-95% {q['0.05']:.4g} to {q['0.95']:.4g}, mean {stats['mean']:.4g}"
    Console().print(
        f"Scored {result.rows} rows with {result.model_name} v{result.model_version}: {spread}\n"
        f"Predictions: {result.out} (columns {', '.join(result.columns)})\n"
        f"MLflow run: {result.mlflow_run_id}",
        highlight=False,
        soft_wrap=True,
    )


def print_models(listing: ModelsListing) -> None:
    """The versions table (newest first) and the alias history (oldest first)."""
    console = Console()
    rows = [
        {
            "version": row.version,
            "aliases": ", ".join(row.aliases),
            f"test {listing.metric}": "" if row.test_metric is None else f"{row.test_metric:.4f}",
            "decision": row.decision,
            "reason": row.reason,
            "trigger": row.trigger,
            "created": row.created,
        }
        for row in listing.versions
    ]
    columns = ("version", "aliases", f"test {listing.metric}", "decision", "reason", "trigger", "created")
    console.print(table(f"Versions of {listing.model_name}", columns, rows))
    history = [
        {
            "#": entry["seq"],
            "at": entry["at"],
            "action": entry["action"],
            "champion": entry["version"],
            "previous": entry["previous"] or "",
            "reason": entry["reason"],
        }
        for entry in listing.history
    ]
    console.print(table("Alias history", ("#", "at", "action", "champion", "previous", "reason"), history))


def print_rollback(result: RollbackSummary) -> None:
    """What the rollback moved."""
    Console().print(
        f"[bold green]ROLLED BACK[/] {result.model_name}: champion is version {result.champion_version} "
        f"again (was {result.rolled_back_from}); previous-champion is {result.rolled_back_from}.\n"
        f"Reason: {escape(result.reason)}",
        highlight=False,
        soft_wrap=True,
    )


def print_notifications(console: Console, applied: NotificationsApplied) -> None:
    """What `apply_notifications` changed: automations created, replaced and deleted."""
    if applied.block is None and not applied.deleted:
        console.print("Notifications: none (the config has no notify: section)")
        return
    for label, names in (
        ("created", applied.created),
        ("replaced", applied.replaced),
        ("deleted", applied.deleted),
    ):
        for name in names:
            console.print(f"Notification automation {label}: {name}", highlight=False)
    if applied.block:
        console.print(f"Webhook block: custom-webhook/{applied.block}", highlight=False)
