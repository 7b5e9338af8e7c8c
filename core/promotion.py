"""The promotion rule: whether a challenger replaces the champion, and why."""

from __future__ import annotations

from dataclasses import dataclass

from core.config import PipelineConfig
from core.metrics import is_better

CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous-champion"


@dataclass(frozen=True)
class Decision:
    """Whether the challenger is promoted, and why."""

    promote: bool
    reason: str


def decide_promotion(
    config: PipelineConfig,
    challenger: dict[str, float],
    baseline: dict[str, float],
    champion: dict[str, float] | None,
) -> Decision:
    """Promote when the challenger beats the baseline and the champion by the configured margin."""
    metric, greater = config.metric.name, config.greater_is_better
    new, base = challenger[metric], baseline[metric]
    if config.promotion.must_beat_baseline and not is_better(new, base, greater):
        return Decision(False, f"challenger {metric} {new:.4f} does not beat the baseline's {base:.4f}")
    if champion is None:
        beats = "beats" if is_better(new, base, greater) else "does not beat (not required)"
        return Decision(
            True, f"no champion yet; challenger {metric} {new:.4f} {beats} the baseline's {base:.4f}"
        )
    old = champion[metric]
    improvement = (new - old) if greater else (old - new)
    relative = improvement / abs(old) if old else float("inf") if improvement > 0 else 0.0
    margin = config.promotion.min_improvement
    verdict = f"challenger {metric} {new:.4f} vs champion {old:.4f} ({relative:+.2%}, margin {margin:.2%})"
    if relative >= margin and improvement > 0:
        return Decision(True, f"{verdict}: better by the margin")
    return Decision(False, f"{verdict}: not better by the margin, champion kept")


def stale_comparison(compared_with: str | None, current: str | None) -> Decision | None:
    """A refusal when the champion moved since the run compared against it, else None.

    Two concurrent runs cannot both win: the later one's comparison is stale.
    """
    if current == compared_with:
        return None
    return Decision(
        False,
        f"champion moved to version {current} while this run compared against "
        f"{compared_with}; not promoted, run again to compare with the new champion",
    )
