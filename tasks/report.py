"""Leaderboard, decision summary and the Prefect artifacts that show them in the UI."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from tasks.train import BASELINE
from tasks.tune import TuneResult


def artifact_key(model_name: str) -> str:
    """A Prefect artifact key prefix for a model (lowercase letters, digits and dashes)."""
    return model_name.lower().replace("_", "-").replace(".", "-")


def leaderboard(
    results: list[TuneResult], baseline_validation: dict[str, float], metric: str, greater: bool
) -> list[dict[str, Any]]:
    """Rows of candidates and the baseline, best validation score first."""
    rows = [
        {
            "rank": 0,
            "candidate": r.candidate,
            f"validation_{metric}": round(r.best_score, 4),
            "trials": len(r.trials),
            "best_params": ", ".join(f"{k}={v}" for k, v in sorted(r.best_params.items())),
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
        }
    )
    rows.sort(key=lambda row: -row[f"validation_{metric}"] if greater else row[f"validation_{metric}"])
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    return rows


def decision_markdown(summary: dict[str, Any]) -> str:
    """The promotion decision and the test metrics as a markdown block."""
    metric = summary["metric"]
    champion = summary["champion_metrics"]
    lines = [
        f"# {summary['model_name']} version {summary['model_version']}: "
        f"{'promoted to champion' if summary['promoted'] else 'not promoted'}",
        "",
        f"**Why:** {summary['decision']}",
        "",
        f"| model | test {metric} |",
        "| --- | --- |",
        f"| challenger ({summary['best_candidate']}) | {summary['metrics'][metric]:.4f} |",
        f"| baseline | {summary['baseline_metrics'][metric]:.4f} |",
        f"| champion before this run | {champion[metric]:.4f} |"
        if champion
        else "| champion before this run | none |",
        "",
        f"MLflow run `{summary['mlflow_run_id']}`; trigger: {summary['trigger']}.",
    ]
    return "\n".join(lines)


@task(name="publish-summary", cache_policy=NO_CACHE)
def publish_summary(board: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    """Show the leaderboard and the decision as Prefect artifacts of the flow run."""
    key = artifact_key(summary["model_name"])
    create_table_artifact(board, key=f"{key}-leaderboard", description="Validation leaderboard")
    create_markdown_artifact(
        decision_markdown(summary), key=f"{key}-decision", description="Promotion decision"
    )
