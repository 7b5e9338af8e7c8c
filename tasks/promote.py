"""Prefect task that applies the promotion rule to the test-window scores."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from core.config import PipelineConfig
from core.promotion import Decision, decide_promotion


@task(name="compare-with-champion", cache_policy=NO_CACHE)
def compare(
    config: PipelineConfig,
    challenger: dict[str, float],
    baseline: dict[str, float],
    champion: dict[str, float] | None,
) -> Decision:
    """The promotion decision as a task of the flow; see `core.promotion.decide_promotion`."""
    decision = decide_promotion(config, challenger, baseline, champion)
    get_run_logger().info("Decision: %s", decision.reason)
    return decision
