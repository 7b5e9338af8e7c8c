"""The promotion rule: whether a challenger replaces the champion, and why."""

from __future__ import annotations

import json
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


HISTORY_PREFIX = "alias_history."


def history_tag(seq: int) -> str:
    """The registered-model tag of alias-history entry `seq` (zero-padded, so tags sort in order)."""
    return f"{HISTORY_PREFIX}{seq:06d}"


def next_history_seq(tags: dict[str, str]) -> int:
    """The number of the next alias-history entry, after the highest one recorded in `tags`."""
    numbers = [int(key[len(HISTORY_PREFIX) :]) for key in tags if key.startswith(HISTORY_PREFIX)]
    return max(numbers, default=0) + 1


def alias_history(tags: dict[str, str]) -> list[dict[str, object]]:
    """The alias-history entries recorded in a registered model's tags, oldest first."""
    keys = sorted(key for key in tags if key.startswith(HISTORY_PREFIX))
    return [json.loads(tags[key]) for key in keys]


def same_as_champion(
    champion_tags: dict[str, str] | None, data_sha256: str, config_sha256: str
) -> str | None:
    """Why a run would train exactly the champion again (same data and config), or None.

    Args:
        champion_tags: The champion version's tags (None without a champion).
        data_sha256: The fingerprint of the data this run read.
        config_sha256: The fingerprint of this run's config.
    """
    if not champion_tags:
        return None
    if champion_tags.get("data_sha256") != data_sha256 or champion_tags.get("config_sha256") != config_sha256:
        return None
    return (
        f"identical to the champion: same data (sha256 {data_sha256[:12]}) and config "
        f"(sha256 {config_sha256[:12]}); nothing trained or registered, champion kept"
    )
