"""Typed results of the flows: run summaries, the leaderboard, and their markdown.

The `--json` keys of the command line and every JSON artifact are derived from these dataclasses:
a field marked `json_field()` is part of the command's `--json` contract.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from core.catalogue import BASELINE
from core.search import TuneResult
from core.trigger import GainProbe

_JSON = "json"


def json_field(**kwargs: Any) -> Any:
    """A dataclass field that the command's `--json` line carries."""
    return field(metadata={_JSON: True}, **kwargs)


def json_keys(result_type: type) -> tuple[str, ...]:
    """The `--json` keys of a result type, in field order."""
    return tuple(f.name for f in fields(result_type) if f.metadata.get(_JSON))


def json_view(result: Any) -> dict[str, Any]:
    """The `--json` object of `result`: its json fields, nested dataclasses as dicts."""
    values = asdict(result)
    return {key: values[key] for key in json_keys(type(result))}


class RunSummary:
    """What every run summary can do: show all its fields as JSON-ready values."""

    def to_dict(self) -> dict[str, Any]:
        """Every field, nested dataclasses as dicts."""
        return asdict(self)  # type: ignore[call-overload]


@dataclass(frozen=True)
class RetrainSummary(RunSummary):
    """What one retraining run did: the new version, the decision and every score behind it."""

    promoted: bool = json_field()
    model_name: str = json_field()
    model_version: str = json_field()
    decision: str = json_field()
    metrics: dict[str, float] = json_field()
    baseline_metrics: dict[str, float] = json_field()
    champion_metrics: dict[str, float] | None = json_field()
    mlflow_run_id: str = json_field()
    prefect_flow_run_id: str | None = json_field()
    registered: bool = json_field(default=True)
    metric: str = ""
    champion_version: str | None = None
    best_candidate: str = ""
    leaderboard: list[dict[str, Any]] = field(default_factory=list)
    windows: dict[str, dict[str, Any]] = field(default_factory=dict)
    plots: list[str] = field(default_factory=list)
    trigger: str = "manual"
    trials: int = 0
    tuning_seconds: float = 0.0
    deleted_versions: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class BatchPerformance:
    """The champion's metric on a labelled batch against its own test metric."""

    metric: str
    batch: float
    champion_test: float | None
    decay: float | None
    probe: GainProbe | None = None

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> BatchPerformance:
        """Back from its JSON form (an earlier check's summary)."""
        probe = values.get("probe")
        return cls(**{**values, "probe": GainProbe(**probe) if probe else None})


@dataclass(frozen=True)
class DriftSummary(RunSummary):
    """What one drift check found, and what it did about it."""

    drift_detected: bool = json_field()
    share_drifted: float | None = json_field()
    drifted_columns: list[str] = json_field()
    reasons: list[str] = json_field()
    performance: BatchPerformance | None = json_field()
    event_emitted: bool = json_field()
    report_path: str | None = json_field()
    mlflow_run_id: str | None = json_field()
    skipped: bool = False
    event_note: str = ""
    target_drift: dict[str, Any] | None = None
    batch_rows: int = 0
    champion_version: str | None = None
    columns: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def skipped_batch(
        cls, data_sha256: str, checked_in_run: str, earlier: dict[str, Any] | None
    ) -> DriftSummary:
        """A check skipped because this exact batch was already checked: that check's verdict.

        Args:
            data_sha256: The batch's fingerprint.
            checked_in_run: The MLflow run of the earlier check.
            earlier: That check's JSON summary (its verdict, reasons and performance).
        """
        earlier = earlier or {}
        performance = earlier.get("performance")
        return cls(
            drift_detected=bool(earlier.get("drift_detected", False)),
            share_drifted=earlier.get("share_drifted"),
            drifted_columns=list(earlier.get("drifted_columns", [])),
            reasons=[
                f"skipped: this exact batch (sha256 {data_sha256[:12]}) was checked in run "
                f"{checked_in_run}; its verdict stands",
                *earlier.get("reasons", []),
            ],
            performance=BatchPerformance.from_dict(performance) if performance else None,
            event_emitted=False,
            report_path=None,
            mlflow_run_id=checked_in_run,
            skipped=True,
            event_note="skipped batch, no event",
        )


@dataclass(frozen=True)
class PolicyResult:
    """One retraining policy over the replay; a trigger policy also against the calendar.

    `calendar_metric_at_same_retrains` is the calendar policies' mean metric interpolated at this
    policy's retrain count, and `beats_calendar` whether this policy's is better (both None for the
    calendar policies themselves).
    """

    mean_metric: float
    retrains: int
    train_seconds: float
    windows: int = 0
    calendar_metric_at_same_retrains: float | None = None
    beats_calendar: bool | None = None


@dataclass(frozen=True)
class TriggerTuning:
    """`--tune-trigger`: the drift settings searched on the first half, checked on the second."""

    settings: dict[str, float]
    drift_yaml: str
    search_windows: int
    held_out_windows: int
    held_out_start: str
    search: dict[str, PolicyResult]
    held_out: dict[str, PolicyResult]
    tried: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class BacktestSummary(RunSummary):
    """What each retraining policy would have delivered, and where the evidence is."""

    metric: str = json_field()
    policies: dict[str, PolicyResult] = json_field()
    table: str = json_field()
    plot: str = json_field()
    windows: int = json_field(default=0)
    tuning: TriggerTuning | None = json_field(default=None)
    summary: str = ""
    mlflow_run_id: str | None = None


@dataclass(frozen=True)
class ScoreSummary(RunSummary):
    """What one batch-scoring run wrote, with which model, and the distribution of its predictions."""

    model_name: str = json_field()
    model_version: str = json_field()
    rows: int = json_field()
    data_sha256: str = json_field()
    out: str = json_field()
    columns: list[str] = json_field()
    prediction_stats: dict[str, Any] = json_field()
    mlflow_run_id: str = json_field()
    prefect_flow_run_id: str | None = json_field()


@dataclass(frozen=True)
class VersionRow:
    """One registered version as `retrain models` lists it."""

    version: str
    aliases: list[str]
    test_metric: float | None
    decision: str
    reason: str
    trigger: str
    created: str


@dataclass(frozen=True)
class ModelsListing(RunSummary):
    """A registered model's versions (newest first) and its alias history (oldest first)."""

    model_name: str = json_field()
    metric: str = json_field()
    versions: list[VersionRow] = json_field()
    history: list[dict[str, Any]] = json_field()


@dataclass(frozen=True)
class RollbackSummary(RunSummary):
    """What a rollback did: which version is champion again, and which it replaced."""

    model_name: str = json_field()
    champion_version: str = json_field()
    rolled_back_from: str = json_field()
    reason: str = json_field()
    event_emitted: bool = json_field()
    prefect_flow_run_id: str | None = json_field()


def artifact_key(model_name: str) -> str:
    """A Prefect artifact key prefix for a model (lowercase letters, digits and dashes)."""
    return model_name.lower().replace("_", "-").replace(".", "-")


def leaderboard(
    results: list[TuneResult], baseline_validation: dict[str, float], metric: str, greater: bool
) -> list[dict[str, Any]]:
    """Rows of candidates and the baseline, best validation score first.

    The candidates that reached the last round (all training rows) and the baseline come first:
    a candidate that left the race earlier was scored on fewer rows, so its score is not
    comparable with theirs.
    """
    final_rows = max((r.final_rows for r in results), default=0)
    left_early = {r.candidate for r in results if r.final_rows < final_rows}
    rows = [
        {
            "rank": 0,
            "candidate": r.candidate,
            f"validation_{metric}": round(r.best_score, 4),
            "trials": len(r.trials),
            "best_params": ", ".join(f"{k}={v}" for k, v in sorted(r.best_params.items())),
            "best_per_round": " > ".join(f"{value:.4g}@{rows}" for rows, value in r.best_by_round(greater)),
        }
        for r in results
    ]
    rows.append(
        {
            "rank": 0,
            "candidate": BASELINE,
            f"validation_{metric}": round(baseline_validation[metric], 4),
            "trials": 1,
            "best_params": "",
            "best_per_round": "",
        }
    )
    rows.sort(
        key=lambda row: (
            row["candidate"] in left_early,
            -row[f"validation_{metric}"] if greater else row[f"validation_{metric}"],
        )
    )
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    return rows


def decision_markdown(summary: RetrainSummary, links: dict[str, str] | None = None) -> str:
    """The promotion decision and the test metrics as a markdown block, with `links` (label: URL)."""
    metric = summary.metric
    champion = summary.champion_metrics
    if not summary.registered:
        return "\n".join(
            [
                f"# {summary.model_name}: nothing registered, version {summary.model_version} stays champion",
                "",
                f"**Why:** {summary.decision}",
                "",
                f"MLflow run `{summary.mlflow_run_id}`; trigger: {summary.trigger}.",
            ]
        )
    lines = [
        f"# {summary.model_name} version {summary.model_version}: "
        f"{'promoted to champion' if summary.promoted else 'not promoted'}",
        "",
        f"**Why:** {summary.decision}",
        "",
        f"| model | test {metric} |",
        "| --- | --- |",
        f"| challenger ({summary.best_candidate}) | {summary.metrics[metric]:.4f} |",
        f"| baseline | {summary.baseline_metrics[metric]:.4f} |",
        f"| champion before this run | {champion[metric]:.4f} |"
        if champion
        else "| champion before this run | none |",
        "",
        f"MLflow run `{summary.mlflow_run_id}`; trigger: {summary.trigger}.",
        *link_lines(links),
    ]
    return "\n".join(lines)


def link_lines(links: dict[str, str] | None) -> list[str]:
    """Markdown links (label to URL) as one line, after a blank one; nothing without links."""
    return ["", " · ".join(f"[{label}]({url})" for label, url in links.items())] if links else []


def drift_markdown(model_name: str, summary: DriftSummary, links: dict[str, str] | None = None) -> str:
    """The drift verdict, its reasons, the report and the alert as a markdown block, with `links`."""
    verdict = "DRIFT DETECTED" if summary.drift_detected else "no drift"
    if summary.skipped:
        verdict = f"check skipped, batch already checked (its verdict: {verdict})"
    report = (
        f"Report: `{summary.report_path}` (also in MLflow run `{summary.mlflow_run_id}`, under `drift/`)."
        if summary.report_path
        else f"Report: in MLflow run `{summary.mlflow_run_id}`, under `drift/`."
    )
    lines = [
        f"# {model_name}: {verdict}",
        "",
        *[f"- {reason}" for reason in summary.reasons],
        "",
        report,
        f"Alert: {summary.event_note}",
        *link_lines(links),
    ]
    return "\n".join(lines)
