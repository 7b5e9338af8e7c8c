"""The backtest simulation: prequential replay of retraining policies with the pipeline's own parts.

Window by window, each policy's current model is scored on the new window before it may retrain
on it; then the policy decides. Training, scoring and drift checks call the same functions as the
retraining and drift-check flows.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timezone
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.pipeline import Pipeline

from core.catalogue import fit_candidate
from core.config import PipelineConfig
from core.drift import detect_columns, drift_verdict, in_cooldown, performance_decay, reference_sample
from core.errors import BadInputError
from core.features import build_preprocessor, probe_calendar
from core.metrics import score
from core.results import BacktestSummary, PolicyResult
from core.search import best_of, search
from core.split import Splits, split_frame
from core.validation import DataSchema

_DURATION = re.compile(r"^(\d+)([hdw])$")
_UNITS = {"h": "hours", "d": "days", "w": "weeks"}


@dataclass(frozen=True)
class Policy:
    """A retraining policy: `never`, `every:<interval>` or `drift`."""

    name: str
    interval: pd.Timedelta | None = None


@dataclass(frozen=True)
class ModelSpec:
    """The algorithm and parameters a retrain refits."""

    candidate: str
    params: dict[str, Any]
    expected_metric: float


@dataclass
class PolicyState:
    """One policy's current model and what it knows."""

    policy: Policy
    model: Pipeline
    spec: ModelSpec
    reference: pd.DataFrame
    trained_at: pd.Timestamp
    last_alert: pd.Timestamp | None = None
    verdicts: list[bool] = field(default_factory=list)


@dataclass(frozen=True)
class BacktestPlan:
    """What to replay: the window length, the policies, where to start, and where the evidence goes.

    The one place the backtest's defaults are defined. Both texts are parsed when the plan is made,
    so a bad one is refused before any data is read.
    """

    step: str = "7d"
    policies: str = "never,every:28d,drift"
    start: str | None = None
    retune: bool = False
    out_dir: str = "backtest"
    step_length: pd.Timedelta = field(init=False, repr=False, compare=False)
    policy_list: tuple[Policy, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "step_length", parse_duration(self.step))
        object.__setattr__(self, "policy_list", tuple(parse_policies(self.policies)))


def parse_duration(text: str) -> pd.Timedelta:
    """`12h`, `7d` or `2w` as a Timedelta.

    Raises:
        BadInputError: Not of that form.
    """
    match = _DURATION.match(text.strip())
    if not match or int(match.group(1)) == 0:
        raise BadInputError(
            f"'{text}' is not a duration", "Write a positive number and a unit: 12h, 7d or 2w."
        )
    return pd.Timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def parse_policies(text: str) -> list[Policy]:
    """Parse `never,every:28d,drift`.

    Raises:
        BadInputError: An unknown or repeated policy.
    """
    policies = []
    for item in [p.strip() for p in text.split(",") if p.strip()]:
        if item in {"never", "drift"}:
            policies.append(Policy(item))
        elif item.startswith("every:"):
            policies.append(Policy(item, parse_duration(item.removeprefix("every:"))))
        else:
            raise BadInputError(
                f"unknown policy '{item}'", "Use never, drift or every:<interval> such as every:28d."
            )
    names = [p.name for p in policies]
    if not policies or len(set(names)) != len(names):
        raise BadInputError(f"policies '{text}' are empty or repeated", "List each policy once.")
    return policies


def plan_windows(
    times: pd.Series, start: str | None, step: pd.Timedelta
) -> tuple[pd.Timestamp, list[tuple[pd.Timestamp, pd.Timestamp]]]:
    """The start (default: after the first 30% of the time range) and the replay windows.

    Raises:
        BadInputError: The start is outside the data or the step is larger than what follows it.
    """
    first, last = times.min(), times.max()
    if start is None:
        begin = first + (last - first) * 0.3
    else:
        try:
            begin = pd.Timestamp(start)
        except ValueError:
            raise BadInputError(f"--start '{start}' is not a date", "Use YYYY-MM-DD.") from None
    if not first < begin <= last:
        raise BadInputError(
            f"--start {begin.date()} is outside the data, which runs from {first.date()} to {last.date()}",
            "Pick a start inside that range, after enough history to train on.",
        )
    if begin + step > last + pd.Timedelta(days=1):
        raise BadInputError(
            f"--step {step} is larger than the data after the start ({begin.date()} to {last.date()})",
            "Use a smaller step or an earlier start.",
        )
    end = last + pd.Timedelta(days=1)  # time columns are often dates: include the last day
    edges = list(pd.date_range(begin, end, freq=step))
    if edges[-1] < end:
        edges.append(end)  # a last, shorter window
    return begin, list(zip(edges[:-1], edges[1:], strict=False))


def tune_spec(
    history: pd.DataFrame, schema: DataSchema, config: PipelineConfig, splits: Splits | None = None
) -> ModelSpec:
    """Tune every candidate on a split of `history` (`splits` when already cut), as the flow does."""
    splits = splits or split_frame(history, config)
    preprocessor = build_preprocessor(schema)
    results = search(splits.train, splits.validation, preprocessor, schema, config)
    best = best_of(results, config.greater_is_better)
    model = fit_model(splits.train_full, schema, config, best.candidate, best.best_params)
    expected = score(model, splits.test, schema, config.task)[config.metric.name]
    return ModelSpec(best.candidate, best.best_params, expected)


def fit_model(
    frame: pd.DataFrame, schema: DataSchema, config: PipelineConfig, candidate: str, params: dict[str, Any]
) -> Pipeline:
    """Fit preprocessing and model on `frame`, as `refit_best` does."""
    return fit_candidate(
        frame, build_preprocessor(schema), schema, config.task, candidate, params, config.tuning.seed
    )


def wants_retrain(
    state: PolicyState,
    window: pd.DataFrame,
    metric: float,
    window_end: pd.Timestamp,
    schema: DataSchema,
    config: PipelineConfig,
) -> bool:
    """The policy's decision after scoring the window (the window's labels are now known)."""
    policy = state.policy
    if policy.name == "never":
        return False
    if policy.interval is not None:
        return window_end - state.trained_at >= policy.interval
    columns = detect_columns(state.reference, window, schema, config.drift)
    decay = performance_decay(metric, state.spec.expected_metric, config.greater_is_better)
    verdict = drift_verdict(columns, config.drift, decay, list(reversed(state.verdicts)))
    state.verdicts.append(verdict.drift_detected)
    now = window_end.to_pydatetime().replace(tzinfo=timezone.utc)
    last = (
        state.last_alert.to_pydatetime().replace(tzinfo=timezone.utc)
        if state.last_alert is not None
        else None
    )
    if not verdict.drift_detected or in_cooldown(last, config.drift.cooldown_hours, now):
        return False
    state.last_alert = window_end
    return True


def replay(
    frame: pd.DataFrame,
    schema: DataSchema,
    config: PipelineConfig,
    begin: pd.Timestamp,
    windows: list[tuple[pd.Timestamp, pd.Timestamp]],
    policies: list[Policy],
    retune: bool,
    on_window: Callable[[], None] | None = None,
) -> pd.DataFrame:
    """Score each policy's model on each window before it may retrain; one row per window and policy."""
    times = frame[config.time_column]
    history = frame[times < begin]
    # Calendar features are chosen once, on the first history, as the retraining flow does
    first_split = split_frame(history, config)
    schema, _ = probe_calendar(first_split.train, first_split.validation, schema, config)
    spec = tune_spec(history, schema, config, first_split)
    started = time.perf_counter()
    first_model = fit_model(history, schema, config, spec.candidate, spec.params)
    first_seconds = time.perf_counter() - started
    states = [
        PolicyState(
            p,
            first_model,
            spec,
            reference_sample(history, config.mlflow.reference_rows, config.tuning.seed),
            begin,
        )
        for p in policies
    ]
    rows = []
    for window_start, window_end in windows:
        window = frame[(times >= window_start) & (times < window_end)]
        if window.empty:
            continue
        seen = frame[times < window_end]
        for state in states:
            metric = score(state.model, window, schema, config.task)[config.metric.name]
            retrained, seconds = False, 0.0
            if wants_retrain(state, window, metric, window_end, schema, config):
                started = time.perf_counter()
                state.spec = tune_spec(seen, schema, config) if retune else state.spec
                state.model = fit_model(seen, schema, config, state.spec.candidate, state.spec.params)
                seconds = time.perf_counter() - started
                state.reference, state.trained_at, retrained = (
                    reference_sample(seen, config.mlflow.reference_rows, config.tuning.seed),
                    window_end,
                    True,
                )
            rows.append(
                {
                    "window_start": window_start.date().isoformat(),
                    "window_end": window_end.date().isoformat(),
                    "policy": state.policy.name,
                    "rows": len(window),
                    config.metric.name: metric,
                    "retrained": retrained,
                    "train_seconds": round(seconds, 3),
                }
            )
        if on_window:
            on_window()
    table = pd.DataFrame(rows)
    table.attrs["initial_train_seconds"] = first_seconds
    return table


def summarize(table: pd.DataFrame, metric: str) -> dict[str, PolicyResult]:
    """Per policy: mean metric over the windows, retrains and training seconds."""
    return {
        policy: PolicyResult(
            mean_metric=float(group[metric].mean()),
            retrains=int(group["retrained"].sum()),
            train_seconds=float(group["train_seconds"].sum()),
        )
        for policy, group in table.groupby("policy", sort=False)
    }


def plot_policies(table: pd.DataFrame, metric: str, path: Path, title: str) -> Path:
    """Metric over time per policy, with a marker at each retrain."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(11, 5))
    for policy, group in table.groupby("policy", sort=False):
        when = pd.to_datetime(group["window_start"])
        (line,) = axis.plot(when, group[metric], marker=".", linewidth=1.4, label=f"{policy}")
        retrains = group["retrained"].to_numpy()
        axis.scatter(
            when[retrains],
            group[metric][retrains],
            marker="^",
            s=70,
            color=line.get_color(),
            edgecolors="black",
            zorder=3,
        )
    axis.scatter([], [], marker="^", color="grey", edgecolors="black", label="retrain (after scoring)")
    axis.set(xlabel="window start", ylabel=f"{metric} on the window (before retraining)", title=title)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def summary_markdown(summary: dict[str, PolicyResult], metric: str, title: str, greater: bool) -> str:
    """The markdown summary table."""
    best = (max if greater else min)(summary, key=lambda p: summary[p].mean_metric)
    lines = [
        f"# {title}",
        "",
        f"| policy | mean {metric} | retrains | training seconds |",
        "| --- | --- | --- | --- |",
        *[
            f"| {p} | {v.mean_metric:.3f} | {v.retrains} | {v.train_seconds:.1f} |"
            for p, v in summary.items()
        ],
        "",
        f"Best mean {metric}: **{best}**. Each window is scored before any retraining on it.",
    ]
    return "\n".join(lines)


def write_outputs(table: pd.DataFrame, config: PipelineConfig, out_dir: Path) -> BacktestSummary:
    """Write the CSV table, PNG plot and markdown summary into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    metric = config.metric.name
    summary = summarize(table, metric)
    title = f"{config.name}: retraining policies, {metric} per window"
    csv_path = out_dir / "backtest.csv"
    table.to_csv(csv_path, index=False)
    plot = plot_policies(table, metric, out_dir / "backtest.png", title)
    markdown = out_dir / "backtest.md"
    markdown.write_text(summary_markdown(summary, metric, title, config.greater_is_better) + "\n")
    return BacktestSummary(
        metric=metric,
        policies=summary,
        table=str(csv_path.resolve()),
        plot=str(plot.resolve()),
        summary=str(markdown.resolve()),
    )
