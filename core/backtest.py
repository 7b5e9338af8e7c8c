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

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from core.catalogue import fit_candidate
from core.config import DriftConfig, PipelineConfig
from core.drift import detect_columns, drift_verdict, in_cooldown, performance_decay, reference_sample
from core.errors import BadInputError
from core.features import build_preprocessor, probe_calendar
from core.metrics import is_better, score
from core.results import BacktestSummary, PolicyResult, TriggerTuning
from core.search import best_of, search
from core.split import Splits, split_frame
from core.trigger import judge_gain, measure_gain, relative_gain
from core.validation import DataSchema

_DURATION = re.compile(r"^(\d+)([hdw])$")
_UNITS = {"h": "hours", "d": "days", "w": "weeks"}
LADDER = (1, 2, 4, 8)  # the calendar policies a backtest compares with: these multiples of the step


@dataclass(frozen=True)
class Policy:
    """A retraining policy: `never`, `every:<interval>` or `drift`."""

    name: str
    interval: pd.Timedelta | None = None

    @property
    def is_calendar(self) -> bool:
        """`never` and `every:<interval>`: the policies a trigger is compared against."""
        return self.name == "never" or self.name.startswith("every:")


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
    policies: str = ""
    start: str | None = None
    retune: bool = False
    out_dir: str = "backtest"
    tune_trigger: bool = False
    step_length: pd.Timedelta = field(init=False, repr=False, compare=False)
    policy_list: tuple[Policy, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "step_length", parse_duration(self.step))
        policies = self.policies or default_policies(self.step)
        object.__setattr__(self, "policy_list", tuple(parse_policies(policies)))


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


def default_policies(step: str) -> str:
    """`never`, the calendar ladder (the step, 2x, 4x and 8x it) and `drift`."""
    match = _DURATION.match(step.strip())
    if not match:
        parse_duration(step)  # raises the message for a bad step
    number, unit = int(match.group(1)), match.group(2)
    return ",".join(["never", *[f"every:{number * k}{unit}" for k in LADDER], "drift"])


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


@dataclass
class ReplayCache:
    """Work shared by every policy of a replay: a retrain at a window's end fits the same model.

    Without `--retune` a model depends only on the rows before its training time, so policies that
    retrain at the same time share one fit, and a drift check's evidence depends only on the model
    and the window. This is what makes a ladder of calendar policies and the trigger search cheap.
    """

    fits: dict[pd.Timestamp, tuple[Pipeline, pd.DataFrame, float]] = field(default_factory=dict)
    scores: dict[tuple[pd.Timestamp, pd.Timestamp], float] = field(default_factory=dict)
    columns: dict[tuple[pd.Timestamp, pd.Timestamp], Any] = field(default_factory=dict)
    gains: dict[tuple[pd.Timestamp, pd.Timestamp], Any] = field(default_factory=dict)


def drift_evidence(
    state: PolicyState,
    window: pd.DataFrame,
    window_start: pd.Timestamp,
    schema: DataSchema,
    config: PipelineConfig,
    cache: ReplayCache,
    probe: bool,
) -> tuple[list[Any], Any]:
    """The window's per-column drift tests, and (when `probe`) the retrain-gain evidence."""
    key = (state.trained_at, window_start)
    if key not in cache.columns:
        cache.columns[key] = detect_columns(state.reference, window, schema, config.drift)
    if probe and key not in cache.gains:
        cache.gains[key] = measure_gain(
            state.model,
            window,
            schema,
            config.task,
            config.metric.name,
            config.greater_is_better,
            config.drift.probe_min_rows,
            config.tuning.seed,
        )
    return cache.columns[key], cache.gains.get(key) if probe else None


def wants_retrain(
    state: PolicyState,
    window: pd.DataFrame,
    metric: float,
    window_end: pd.Timestamp,
    schema: DataSchema,
    config: PipelineConfig,
    drift: DriftConfig | None = None,
    cache: ReplayCache | None = None,
    window_start: pd.Timestamp | None = None,
) -> bool:
    """The policy's decision after scoring the window (the window's labels are now known).

    The drift check's batch is `window`: in a replay, every row since the policy's model was
    trained, as the drift-check flow's default batch is the rows after the champion's training
    window. `drift` replaces the config's drift settings (the trigger search tries several).
    """
    policy = state.policy
    if policy.name == "never":
        return False
    if policy.interval is not None:
        return window_end - state.trained_at >= policy.interval
    drift = drift or config.drift
    columns, gain = drift_evidence(
        state,
        window,
        window_start if window_start is not None else window_end,
        schema,
        config,
        cache or ReplayCache(),
        drift.gain_probe,
    )
    probe = judge_gain(gain, drift.confidence, drift.min_gain) if gain else None
    decay = performance_decay(metric, state.spec.expected_metric, config.greater_is_better)
    verdict = drift_verdict(columns, drift, decay, list(reversed(state.verdicts)), probe)
    state.verdicts.append(verdict.drift_detected)
    now = window_end.to_pydatetime().replace(tzinfo=timezone.utc)
    last = (
        state.last_alert.to_pydatetime().replace(tzinfo=timezone.utc)
        if state.last_alert is not None
        else None
    )
    if not verdict.drift_detected or in_cooldown(last, drift.cooldown_hours, now):
        return False
    state.last_alert = window_end
    return True


def first_spec(
    frame: pd.DataFrame, schema: DataSchema, config: PipelineConfig, begin: pd.Timestamp
) -> tuple[DataSchema, ModelSpec]:
    """Calendar features and the tuned configuration, chosen once on the history before `begin`."""
    history = frame[frame[config.time_column] < begin]
    first_split = split_frame(history, config)
    schema, _ = probe_calendar(first_split.train, first_split.validation, schema, config)
    return schema, tune_spec(history, schema, config, first_split)


def fitted_until(
    frame: pd.DataFrame,
    schema: DataSchema,
    config: PipelineConfig,
    spec: ModelSpec,
    until: pd.Timestamp,
    cache: ReplayCache,
) -> tuple[Pipeline, pd.DataFrame, float]:
    """The model fitted on every row before `until`, its reference sample and its fit seconds."""
    if until not in cache.fits:
        seen = frame[frame[config.time_column] < until]
        started = time.perf_counter()
        model = fit_model(seen, schema, config, spec.candidate, spec.params)
        seconds = time.perf_counter() - started
        cache.fits[until] = (
            model,
            reference_sample(seen, config.mlflow.reference_rows, config.tuning.seed),
            seconds,
        )
    return cache.fits[until]


def replay(
    frame: pd.DataFrame,
    schema: DataSchema,
    config: PipelineConfig,
    begin: pd.Timestamp,
    windows: list[tuple[pd.Timestamp, pd.Timestamp]],
    policies: list[Policy],
    retune: bool,
    on_window: Callable[[], None] | None = None,
    *,
    spec: ModelSpec | None = None,
    drift: DriftConfig | None = None,
    cache: ReplayCache | None = None,
) -> pd.DataFrame:
    """Score each policy's model on each window before it may retrain; one row per window and policy.

    `spec` (with `schema` already carrying the calendar choice) skips the first tuning; `cache`
    shares fits between replays of the same data.
    """
    times = frame[config.time_column]
    if spec is None:
        schema, spec = first_spec(frame, schema, config, begin)
    cache = cache if cache is not None and not retune else ReplayCache()
    first_model, first_reference, first_seconds = fitted_until(frame, schema, config, spec, begin, cache)
    states = [PolicyState(p, first_model, spec, first_reference, begin) for p in policies]
    rows = []
    for window_start, window_end in windows:
        window = frame[(times >= window_start) & (times < window_end)]
        if window.empty:
            continue
        for state in states:
            key = (state.trained_at, window_start)
            if retune or key not in cache.scores:
                cache.scores[key] = score(state.model, window, schema, config.task)[config.metric.name]
            metric = cache.scores[key]
            retrained, seconds = False, 0.0
            batch = (
                window
                if state.policy.is_calendar
                else frame[(times >= state.trained_at) & (times < window_end)]
            )
            if wants_retrain(state, batch, metric, window_end, schema, config, drift, cache, window_start):
                if retune:
                    started = time.perf_counter()
                    state.spec = tune_spec(frame[times < window_end], schema, config)
                    state.model = fit_model(
                        frame[times < window_end], schema, config, state.spec.candidate, state.spec.params
                    )
                    state.reference = reference_sample(
                        frame[times < window_end], config.mlflow.reference_rows, config.tuning.seed
                    )
                    seconds = time.perf_counter() - started
                else:
                    state.model, state.reference, seconds = fitted_until(
                        frame, schema, config, state.spec, window_end, cache
                    )
                state.trained_at, retrained = window_end, True
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
    table.attrs["windows"] = len({row["window_start"] for row in rows})
    return table


def calendar_at(points: list[tuple[float, float]], retrains: float) -> float | None:
    """The calendar's metric at `retrains`, linear between its (retrains, metric) points.

    Points with the same retrain count are averaged; outside the ladder the nearest end holds.
    None without points.
    """
    if not points:
        return None
    frame = pd.DataFrame(points, columns=["retrains", "metric"]).groupby("retrains")["metric"].mean()
    return float(np.interp(retrains, frame.index.to_numpy(dtype=float), frame.to_numpy(dtype=float)))


def summarize(table: pd.DataFrame, metric: str, greater: bool = False) -> dict[str, PolicyResult]:
    """Per policy: mean metric, retrains and training seconds; a trigger also against the calendar.

    The calendar is every `never` and `every:<interval>` policy of the table, as (retrains, mean
    metric) points; a trigger policy is compared with it interpolated at the trigger's retrains.
    """
    points = {
        policy: (int(group["retrained"].sum()), float(group[metric].mean()))
        for policy, group in table.groupby("policy", sort=False)
    }
    calendar = [points[p] for p in points if Policy(p).is_calendar]
    results = {}
    for policy, group in table.groupby("policy", sort=False):
        retrains, mean = points[policy]
        at_calendar = None if Policy(policy).is_calendar else calendar_at(calendar, retrains)
        results[policy] = PolicyResult(
            mean_metric=mean,
            retrains=retrains,
            train_seconds=float(group["train_seconds"].sum()),
            windows=len(group),
            calendar_metric_at_same_retrains=at_calendar,
            beats_calendar=None if at_calendar is None else is_better(mean, at_calendar, greater),
        )
    return results


def plot_policies(
    table: pd.DataFrame, summary: dict[str, PolicyResult], metric: str, path: Path, title: str
) -> Path:
    """Left: the metric over time per policy, a marker at each retrain. Right: metric vs retrains,
    the calendar policies joined as a curve and each trigger policy against it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (axis, tradeoff) = plt.subplots(1, 2, figsize=(15, 5.2), gridspec_kw={"width_ratios": [2.1, 1]})
    colours = {}
    for policy, group in table.groupby("policy", sort=False):
        when = pd.to_datetime(group["window_start"])
        (line,) = axis.plot(when, group[metric], marker=".", linewidth=1.2, label=f"{policy}")
        colours[policy] = line.get_color()
        retrains = group["retrained"].to_numpy()
        axis.scatter(
            when[retrains],
            group[metric][retrains],
            marker="^",
            s=55,
            color=line.get_color(),
            edgecolors="black",
            zorder=3,
        )
    axis.scatter([], [], marker="^", color="grey", edgecolors="black", label="retrain (after scoring)")
    axis.set(xlabel="window start", ylabel=f"{metric} on the window (before retraining)", title=title)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    calendar = sorted((v.retrains, v.mean_metric, p) for p, v in summary.items() if Policy(p).is_calendar)
    tradeoff.plot([c[0] for c in calendar], [c[1] for c in calendar], "-o", color="grey", label="calendar")
    for retrains, mean, policy in calendar:
        tradeoff.annotate(policy, (retrains, mean), textcoords="offset points", xytext=(4, 4), fontsize=8)
    for policy, result in summary.items():
        if result.calendar_metric_at_same_retrains is None:
            continue
        tradeoff.plot(
            [result.retrains] * 2,
            [result.calendar_metric_at_same_retrains, result.mean_metric],
            ":",
            color=colours[policy],
        )
        verdict = "beats" if result.beats_calendar else "does not beat"
        tradeoff.scatter(
            result.retrains,
            result.mean_metric,
            marker="*",
            s=220,
            color=colours[policy],
            edgecolors="black",
            zorder=3,
            label=f"{policy} ({verdict} the calendar)",
        )
    tradeoff.set(xlabel="retrains", ylabel=f"mean {metric} per window", title="cost against quality")
    tradeoff.grid(alpha=0.3)
    tradeoff.legend(fontsize=8)
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def policy_rows(summary: dict[str, PolicyResult], metric: str) -> list[str]:
    """The markdown table of policies: point, calendar at the same retrains, verdict, cost."""
    verdicts = {True: "**yes**", False: "no", None: ""}
    return [
        f"| policy | mean {metric} | retrains | of windows | calendar at same retrains | beats calendar "
        "| training seconds |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *[
            f"| {p} | {_number(v.mean_metric)} | {v.retrains} | "
            f"{v.retrains / v.windows:.0%} | {_number(v.calendar_metric_at_same_retrains)} | "
            f"{verdicts[v.beats_calendar]} | {v.train_seconds:.1f} |"
            if v.windows
            else f"| {p} | {_number(v.mean_metric)} | {v.retrains} | | | | {v.train_seconds:.1f} |"
            for p, v in summary.items()
        ],
    ]


def summary_markdown(
    summary: dict[str, PolicyResult],
    metric: str,
    title: str,
    greater: bool,
    tuning: TriggerTuning | None = None,
) -> str:
    """The markdown summary: the policy table, and the trigger search's result when it ran."""
    best = (max if greater else min)(summary, key=lambda p: summary[p].mean_metric)
    lines = [
        f"# {title}",
        "",
        *policy_rows(summary, metric),
        "",
        f"Best mean {metric}: **{best}**. Each window is scored before any retraining on it; the "
        "calendar is interpolated linearly between the calendar policies' (retrains, mean) points.",
    ]
    if tuning is not None:
        lines += [
            "",
            f"## Trigger search (first {tuning.search_windows} windows), checked on the other "
            f"{tuning.held_out_windows} (from {tuning.held_out_start})",
            "",
            "```yaml",
            tuning.drift_yaml.rstrip(),
            "```",
            "",
            "Held-out half:",
            "",
            *policy_rows(tuning.held_out, metric),
        ]
    return "\n".join(lines)


def write_outputs(
    table: pd.DataFrame, config: PipelineConfig, out_dir: Path, tuning: TriggerTuning | None = None
) -> BacktestSummary:
    """Write the CSV table, PNG plot and markdown summary into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    metric = config.metric.name
    summary = summarize(table, metric, config.greater_is_better)
    title = f"{config.name}: retraining policies, {metric} per window"
    csv_path = out_dir / "backtest.csv"
    table.to_csv(csv_path, index=False)
    plot = plot_policies(table, summary, metric, out_dir / "backtest.png", title)
    markdown = out_dir / "backtest.md"
    markdown.write_text(summary_markdown(summary, metric, title, config.greater_is_better, tuning) + "\n")
    return BacktestSummary(
        metric=metric,
        policies=summary,
        table=str(csv_path.resolve()),
        plot=str(plot.resolve()),
        windows=int(table.attrs.get("windows", table["window_start"].nunique())),
        tuning=tuning,
        summary=str(markdown.resolve()),
    )


# The trigger search's grid: how sure the probe must be, and by how much the challenger must win.
CONFIDENCE_GRID = (0.8, 0.9, 0.95, 0.99)
MIN_GAIN_GRID = (0.0, 0.005, 0.01, 0.02, 0.05)


def advantage(result: PolicyResult, greater: bool) -> float:
    """How much better than the calendar at the same retrains a trigger is (relative; > 0 better)."""
    if result.calendar_metric_at_same_retrains is None:
        return float("-inf")
    return float(relative_gain(result.calendar_metric_at_same_retrains, result.mean_metric, greater))


def tune_trigger(
    frame: pd.DataFrame,
    schema: DataSchema,
    config: PipelineConfig,
    windows: list[tuple[pd.Timestamp, pd.Timestamp]],
    calendar: list[Policy],
    spec: ModelSpec,
    cache: ReplayCache,
) -> TriggerTuning:
    """Search the drift settings on the first half of `windows`; check the best on the second half.

    The search replays only the first half (its rows and labels); the second half is replayed once,
    afterwards, from a model fitted on everything before it, with the chosen settings, the
    defaults and the calendar policies. The choice maximises the advantage over the calendar at
    the same retrain count, among settings that retrain on at most half the windows.
    """
    half = len(windows) // 2
    search_windows, held_windows = windows[:half], windows[half:]
    search_frame = frame[frame[config.time_column] < search_windows[-1][1]]
    greater = config.greater_is_better
    drift_policy = Policy("drift")
    tried, tables = [], {}
    calendar_table = replay(
        search_frame, schema, config, windows[0][0], search_windows, calendar, False, spec=spec, cache=cache
    )
    for confidence in CONFIDENCE_GRID:
        for min_gain in MIN_GAIN_GRID:
            drift = config.drift.model_copy(update={"confidence": confidence, "min_gain": min_gain})
            tables[confidence, min_gain] = pd.concat(
                [
                    calendar_table,
                    replay(
                        search_frame,
                        schema,
                        config,
                        windows[0][0],
                        search_windows,
                        [drift_policy],
                        False,
                        spec=spec,
                        drift=drift,
                        cache=cache,
                    ),
                ]
            )
            result = summarize(tables[confidence, min_gain], config.metric.name, greater)["drift"]
            tried.append(
                {
                    "confidence": confidence,
                    "min_gain": min_gain,
                    "retrains": result.retrains,
                    "mean_metric": result.mean_metric,
                    "advantage": advantage(result, greater),
                    "within_half": result.retrains <= result.windows / 2,
                }
            )
    best = max(tried, key=lambda t: (t["within_half"], t["advantage"], -t["retrains"]))
    chosen = config.drift.model_copy(update={"confidence": best["confidence"], "min_gain": best["min_gain"]})
    search = summarize(tables[best["confidence"], best["min_gain"]], config.metric.name, greater)
    held_begin = held_windows[0][0]
    held = replay(
        frame,
        schema,
        config,
        held_begin,
        held_windows,
        [*calendar, Policy("drift (defaults)")],
        False,
        spec=spec,
        cache=cache,
    )
    held_tuned = replay(
        frame,
        schema,
        config,
        held_begin,
        held_windows,
        [drift_policy],
        False,
        spec=spec,
        drift=chosen,
        cache=cache,
    )
    settings = {"confidence": best["confidence"], "min_gain": best["min_gain"]}
    return TriggerTuning(
        settings=settings,
        drift_yaml="drift:\n" + "".join(f"  {k}: {v}\n" for k, v in settings.items()),
        search_windows=len(search_windows),
        held_out_windows=len(held_windows),
        held_out_start=held_begin.date().isoformat(),
        search=search,
        held_out=summarize(pd.concat([held, held_tuned]), config.metric.name, greater),
        tried=tried,
    )
