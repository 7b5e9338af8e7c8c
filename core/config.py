"""Pipeline configuration: one pydantic model per concern, validated once.

A config file needs only `name`, `task`, `target` and `data.source`; every other setting has one
default here. `${VAR}` anywhere in the YAML is read from the environment mapping the caller
passes (secrets never sit in the file), and `redacted()` gives the copy that may be logged.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from core.catalogue import CATALOGUE
from core.errors import ConfigError
from core.secrets import ENV_PATTERN, redact_url, redact_webhook

REGRESSION_METRICS = {"rmse": "minimize", "mae": "minimize", "mape": "minimize", "r2": "maximize"}
CLASSIFICATION_METRICS = {
    "accuracy": "maximize",
    "f1_macro": "maximize",
    "roc_auc": "maximize",
    "log_loss": "minimize",
}
# Built-in candidate names per task, in the catalogue's order.
CANDIDATES = {task_kind: tuple(algorithms) for task_kind, algorithms in CATALOGUE.items()}
# Settings of when runs happen, not of what a run computes: left out of the config's fingerprint, so
# moving a schedule does not change the lineage of the models (nor does how predictions are written,
# how many versions the registry keeps or who is notified).
SCHEDULING_KEYS = {
    "schedule": None,
    "score": None,
    "registry": None,
    "notify": None,
    "drift": ("cron", "cooldown_hours"),
}
# A config needs a handful of YAML aliases at most; more, or an expansion this large, is a
# "billion laughs" document, refused before PyYAML or json.dumps expands it.
MAX_YAML_ALIASES = 100
MAX_YAML_NODES = 100_000
# How a source is read (compact types, memory limit) stays as configured when a local copy replaces it.
READ_SETTINGS = {"compact_dtypes", "memory_limit_mb"}
LOCAL_DATA_VARIABLE = "RETRAIN_DATA"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(_Section):
    """Where the data comes from.

    `source` is a CSV or Parquet path, an http(s) URL (CSV, Parquet, or a zip holding `member`),
    or a SQLAlchemy URL, in which case `query` (or `table`) says what to read.
    """

    source: str
    sha256: str | None = Field(None, description="Expected sha256 of a downloaded file.")
    member: str | None = Field(None, description="File to read inside a zip archive.")
    query: str | None = Field(None, description="SQL query for a database source.")
    table: str | None = Field(None, description="Table to read for a database source.")
    compact_dtypes: bool = Field(
        True,
        description="Downcast numbers (floats to float32) and keep low-cardinality text as categories.",
    )
    memory_limit_mb: int | None = Field(
        None, ge=1, description="Refuse a file needing more memory than this (default: what is available)."
    )
    max_future: str = Field(
        "1d",
        description="Rows dated after now plus this (a pandas Timedelta such as 1d or 12h) are bad input.",
    )

    @field_validator("max_future")
    @classmethod
    def _timedelta(cls, value: str) -> str:
        try:
            parsed = pd.Timedelta(value)
        except (ValueError, TypeError):
            raise ValueError(f"{value!r} is not a duration such as 1d, 12h or 30min") from None
        if pd.isna(parsed) or parsed < pd.Timedelta(0):
            raise ValueError(f"{value!r} is not a duration of zero or more, such as 1d")
        return value

    @field_validator("member")
    @classmethod
    def _plain_member(cls, value: str | None) -> str | None:
        if value is not None and (".." in re.split(r"[/\\]", value) or value.startswith(("/", "\\"))):
            raise ValueError(
                f"{value!r} is not a plain file name: names with '..' or absolute paths are not read "
                "(name the file inside the archive, e.g. hour.csv)"
            )
        return value

    @field_serializer("source", "query", when_used="json")
    def _mask_credentials(self, value: str | None) -> str | None:
        # JSON is what leaves the process (Prefect parameters, MLflow artifacts): never a password.
        return redact_url(value) if value else value

    @property
    def is_sql(self) -> bool:
        """Whether the source is a SQLAlchemy URL."""
        return "://" in self.source and not self.source.startswith(("http://", "https://", "file://"))


class FeaturesConfig(_Section):
    """Which columns are features. Lists left out are inferred from the data and logged."""

    drop: list[str] = Field(default_factory=list)
    numeric: list[str] | None = None
    categorical: list[str] | None = None
    datetime: bool = Field(
        True, description="Derive calendar features from time_column when they help on validation."
    )


class SplitConfig(_Section):
    """Train, validation and test windows (time order when `time_column` is set)."""

    validation_fraction: float = Field(0.15, gt=0, lt=0.5)
    test_fraction: float = Field(0.15, gt=0, lt=0.5)
    min_rows: int = Field(30, ge=3, description="Fewest rows any window may have.")


class MetricConfig(_Section):
    """Primary metric; `direction` defaults to the metric's natural one."""

    name: str | None = None
    direction: Literal["minimize", "maximize"] | None = None


class CandidateConfig(_Section):
    """One built-in algorithm: fixed params and a search space (lists of values to try)."""

    params: dict[str, Any] = Field(default_factory=dict)
    search_space: dict[str, list[Any]] | None = None


class TuningConfig(_Section):
    """Hyperparameter search: successive halving from `subset_rows` recent rows to all training rows."""

    strategy: Literal["random", "successive_halving"] = "successive_halving"
    n_trials: int = Field(6, ge=1, le=1000, description="Configurations tried per candidate.")
    subset_rows: int = Field(
        2500, ge=50, description="Rows of the first halving round; the last round fits all training rows."
    )
    halving_factor: int = Field(3, ge=2)
    time_budget_s: float | None = Field(
        None, gt=0, description="Start no new halving round after this many seconds of search."
    )
    seed: int = 42
    runner: Literal["threads", "dask"] = Field(
        "threads", description="Where trials run: threads in this process, or a Dask cluster."
    )
    max_workers: int | None = Field(
        None, ge=1, description="Trials at once on threads (default: one per core)."
    )
    dask_address: str | None = Field(
        None, description="Scheduler of an existing Dask cluster, e.g. tcp://host:8786 (runner: dask)."
    )
    dask_workers: int | None = Field(
        None, ge=1, description="Worker processes of a local Dask cluster (runner: dask, no address)."
    )

    @model_validator(mode="after")
    def _runner_settings(self) -> TuningConfig:
        if self.runner == "threads" and (self.dask_address or self.dask_workers):
            raise ValueError("tuning.dask_address and tuning.dask_workers need tuning.runner: dask")
        if self.dask_address and self.dask_workers:
            raise ValueError(
                "set tuning.dask_address (an existing cluster) or tuning.dask_workers (a local one), not both"
            )
        if self.dask_address and not re.match(r"^(tcp|tls|inproc|ucx|ws|wss)://|^\$\{", self.dask_address):
            raise ValueError(
                f"tuning.dask_address {self.dask_address!r} is not a scheduler address like tcp://host:8786"
            )
        return self


class PromotionConfig(_Section):
    """When a challenger becomes champion."""

    min_improvement: float = Field(
        0.01, ge=0, description="Relative improvement over the champion's primary metric."
    )
    must_beat_baseline: bool = True


class MlflowConfig(_Section):
    """MLflow experiment; the tracking URI comes from MLFLOW_TRACKING_URI."""

    experiment: str | None = None
    reference_rows: int = Field(5000, ge=100, description="Rows of the drift reference sample.")


DRIFT_METHODS = ("wasserstein", "jensenshannon", "ks", "chisquare", "z", "psi")


class DriftConfig(_Section):
    """When a batch counts as drifted, and how often drift is checked.

    Per-column tests are Evidently's: by default Wasserstein distance (numeric) and Jensen-Shannon
    distance (categorical, or numeric with at most 5 values) when the reference has more than 1000
    rows, else KS / chi-square / Z tests.
    """

    share_threshold: float = Field(0.5, gt=0, le=1, description="Share of drifted features that is drift.")
    critical_columns: list[str] = Field(default_factory=list, description="Any of these drifting is drift.")
    max_metric_decay: float = Field(
        0.25, gt=0, description="Relative worsening of the champion's metric on a labelled batch."
    )
    method: Literal[DRIFT_METHODS] | None = None  # type: ignore[valid-type]
    threshold: float | None = Field(None, gt=0)
    per_column_method: dict[str, Literal[DRIFT_METHODS]] = Field(default_factory=dict)  # type: ignore[valid-type]
    per_column_threshold: dict[str, float] = Field(default_factory=dict)
    report_rows: int = Field(
        20000, ge=100, description="Rows of the batch (spread over time) drawn in the HTML report."
    )
    gain_probe: bool = Field(
        True, description="On a labelled batch, alert only when the retrain-gain probe finds a gain."
    )
    confidence: float = Field(
        0.95, gt=0.5, lt=1, description="Confidence the probe's challenger must beat the champion with."
    )
    min_gain: float = Field(
        0.01,
        ge=0,
        description="Relative improvement the probe's lower confidence bound must exceed (the "
        "default promotion bar: a retrain that cannot clear it would not be promoted).",
    )
    probe_min_rows: int = Field(60, ge=10, description="Fewest labelled rows the probe runs on.")
    confirmations: int = Field(1, ge=1, description="Drift needed in k of the last `window` checks.")
    window: int = Field(1, ge=1)
    cron: str = "0 6 * * *"
    cooldown_hours: float = Field(6, ge=0)

    @model_validator(mode="after")
    def _k_of_n(self) -> DriftConfig:
        if self.confirmations > self.window:
            raise ValueError("drift.confirmations cannot exceed drift.window")
        return self


class ScheduleConfig(_Section):
    """Scheduled retraining."""

    cron: str = "0 3 * * 1"
    timezone: str = "UTC"


class ScoreConfig(_Section):
    """Batch scoring with the champion (`retrain predict`, deployment `<name>-score`)."""

    cron: str | None = Field(None, description="Schedule of the scoring deployment (none: no schedule).")
    key_columns: list[str] | None = Field(
        None, description="Row key columns written beside the predictions (default: time_column)."
    )
    out: str | None = Field(
        None, description="Output of the scheduled deployment: a .csv/.parquet path or SQLAlchemy URL."
    )
    out_table: str = Field(
        "predictions", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="Table written at a SQL `out`."
    )

    @field_serializer("out", when_used="json")
    def _mask_credentials(self, value: str | None) -> str | None:
        return redact_url(value) if value else value

    @model_validator(mode="after")
    def _scheduled_needs_out(self) -> ScoreConfig:
        if self.cron and not self.out:
            raise ValueError("score.cron needs score.out (where the scheduled predictions are written)")
        return self


class RegistryConfig(_Section):
    """How many registered versions are kept."""

    keep_versions: int = Field(
        10, ge=1, description="Newest versions kept; older ones holding no alias are deleted after a run."
    )


# What `notify.events` can name: the model's lifecycle, and its flow runs failing or crashing.
NOTIFY_EVENTS = ("drift_detected", "alert_suppressed", "run_failed", "promoted", "rolled_back")


class NotifyConfig(_Section):
    """Notifications: Prefect automations that POST to a webhook when the chosen events happen.

    The URL is a secret (chat webhooks carry their token in the path): write `${VAR}`. A literal one
    is masked (`https://host/***`) wherever the config is shown or logged.
    """

    webhook_url: str = Field(description="Where to POST; `${VAR}` allowed.")
    events: list[Literal[NOTIFY_EVENTS]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: list(NOTIFY_EVENTS), min_length=1, description="Events to notify about."
    )

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not (value.startswith(("http://", "https://")) or ENV_PATTERN.match(value)):
            raise ValueError(f"{redact_webhook(value)!r} is not an http(s) URL or a ${{VAR}} reference")
        return value

    @field_validator("events")
    @classmethod
    def _no_repeats(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    @field_serializer("webhook_url", when_used="json")
    def _mask_webhook(self, value: str) -> str:
        return redact_webhook(value)


class PipelineConfig(_Section):
    """The whole pipeline configuration."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    task: Literal["regression", "classification"]
    target: str
    time_column: str | None = None
    data: DataConfig
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    metric: MetricConfig = Field(default_factory=MetricConfig)
    candidates: dict[str, CandidateConfig] | None = None
    tuning: TuningConfig = Field(default_factory=TuningConfig)
    promotion: PromotionConfig = Field(default_factory=PromotionConfig)
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)
    drift: DriftConfig = Field(default_factory=DriftConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    score: ScoreConfig = Field(default_factory=ScoreConfig)
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    notify: NotifyConfig | None = None

    @model_validator(mode="after")
    def _defaults_for_task(self) -> PipelineConfig:
        metrics = REGRESSION_METRICS if self.task == "regression" else CLASSIFICATION_METRICS
        if self.metric.name is None:
            self.metric.name = "rmse" if self.task == "regression" else "f1_macro"
        if self.metric.name not in metrics:
            raise ValueError(
                f"metric.name {self.metric.name!r} is not a {self.task} metric; "
                f"choose one of {sorted(metrics)}"
            )
        self.metric.direction = self.metric.direction or metrics[self.metric.name]
        if self.candidates is None:
            self.candidates = {name: CandidateConfig() for name in CANDIDATES[self.task]}
        unknown = sorted(set(self.candidates) - set(CANDIDATES[self.task]))
        if unknown:
            raise ValueError(
                f"unknown candidates {unknown} for task {self.task!r}; "
                f"built-in ones are {list(CANDIDATES[self.task])}"
            )
        if not self.candidates:
            raise ValueError("candidates is empty; list at least one built-in algorithm")
        if self.split.validation_fraction + self.split.test_fraction >= 0.8:
            raise ValueError("split.validation_fraction + split.test_fraction must be below 0.8")
        return self

    @field_validator("target")
    @classmethod
    def _target_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("target is blank; name the column to predict")
        return value

    @property
    def experiment_name(self) -> str:
        """MLflow experiment for training runs."""
        return self.mlflow.experiment or self.name

    @property
    def monitoring_experiment(self) -> str:
        """MLflow experiment for drift checks."""
        return f"{self.experiment_name}-monitoring"

    @property
    def scoring_experiment(self) -> str:
        """MLflow experiment for batch-scoring runs."""
        return f"{self.experiment_name}-scoring"

    @property
    def key_columns(self) -> list[str]:
        """Row key columns written beside predictions: `score.key_columns`, else the time column."""
        if self.score.key_columns is not None:
            return list(self.score.key_columns)
        return [self.time_column] if self.time_column else []

    @property
    def greater_is_better(self) -> bool:
        """Whether a larger primary metric is better."""
        return self.metric.direction == "maximize"

    def redacted(self) -> dict[str, Any]:
        """The config as a dict with URL credentials masked, safe to log (`${VAR}` stay as written)."""
        return self.model_dump(mode="json")

    def fingerprint(self) -> str:
        """sha256 of the redacted config without its scheduling keys, stable across key order."""
        data = self.redacted()
        for section, keys in SCHEDULING_KEYS.items():
            if keys is None:
                data.pop(section, None)
            else:
                for key in keys:
                    data[section].pop(key, None)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def missing_env(text: str, environ: Mapping[str, str]) -> list[str]:
    """Names of `${VAR}` references in `text` that `environ` does not define."""
    return sorted({m for m in ENV_PATTERN.findall(text) if m not in environ})


def expand_env(text: str, environ: Mapping[str, str], where: str = "the config") -> str:
    """Replace `${VAR}` with the environment's value; a missing variable is a config error.

    Called only where a value is used (for example when connecting to a database), so the
    config passed around, shown in Prefect and logged to MLflow keeps the `${VAR}` placeholders.
    """
    missing = missing_env(text, environ)
    if missing:
        raise ConfigError(
            f"{where} refers to environment variables that are not set: {', '.join(missing)}",
            "Export them before running (secrets belong in the environment, not in the file).",
        )
    return ENV_PATTERN.sub(lambda m: environ[m.group(1)], text)


def parse_config(raw: dict[str, Any], source_name: str = "config") -> PipelineConfig:
    """Validate a config dict, turning every pydantic error into one readable paragraph."""
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"]) or "config"
            if error["type"] == "extra_forbidden":
                problems.append(f"unknown key '{where}'")
            elif error["type"] == "missing":
                problems.append(f"missing required key '{where}'")
            elif error["type"] == "literal_error" and where == "task":
                problems.append(f"unknown task {error['input']!r} (use 'regression' or 'classification')")
            else:
                problems.append(f"'{where}': {error['msg']}")
        raise ConfigError(
            f"The config {source_name} is invalid: " + "; ".join(problems),
            "Fix these keys (see the config reference in the README).",
        ) from None


def check_aliases(text: str, source_name: str) -> None:
    """Refuse a YAML document whose aliases would expand it beyond any config's size.

    Reads the parser's events only, so nothing is expanded: each anchored node's size in values
    (scalars and collections), counting an alias as the size of its anchor, is summed as it closes.

    Raises:
        ConfigError: More than `MAX_YAML_ALIASES` aliases, an alias inside its own anchor, or an
            expansion of more than `MAX_YAML_NODES` values.
        yaml.YAMLError: The text is not YAML.
    """
    fix = "Write the settings out without anchors and aliases (&name, *name), or with only a few."
    anchors: dict[str, int | None] = {}  # None: the anchored collection is still open
    open_nodes: list[list[Any]] = [[None, 0]]  # [anchor, size so far] of each open collection
    aliases = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent):
            aliases += 1
            size = anchors.get(event.anchor)
            if aliases > MAX_YAML_ALIASES:
                raise ConfigError(
                    f"The config file {source_name} uses more than {MAX_YAML_ALIASES} YAML aliases", fix
                )
            if size is None:
                if event.anchor in anchors:
                    raise ConfigError(
                        f"The config file {source_name} has the YAML alias *{event.anchor} inside its "
                        "own anchor (a structure that never ends)",
                        fix,
                    )
                continue  # an undefined alias: PyYAML's own error names it
            open_nodes[-1][1] += size
        elif isinstance(event, yaml.ScalarEvent):
            open_nodes[-1][1] += 1
            if event.anchor:
                anchors[event.anchor] = 1
        elif isinstance(event, yaml.CollectionStartEvent):
            if event.anchor:
                anchors[event.anchor] = None
            open_nodes.append([event.anchor, 1])
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, size = open_nodes.pop()
            open_nodes[-1][1] += size
            if anchor:
                anchors[anchor] = size
        if sum(node[1] for node in open_nodes) > MAX_YAML_NODES:
            raise ConfigError(
                f"The config file {source_name} would expand to more than {MAX_YAML_NODES:,} values "
                f"through its YAML aliases (a 'billion laughs' document)",
                fix,
            )


def load_config(path: str | Path, environ: Mapping[str, str]) -> PipelineConfig:
    """Read and validate a YAML config file; every `${VAR}` in it must be set in `environ`.

    Raises:
        ConfigError: The file is missing, not YAML, or not a valid config.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"The config file {path} does not exist", "Pass an existing YAML file with --config."
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(
            f"The config file {path} is not UTF-8 text (is it a binary file?)", "Pass a YAML file."
        ) from None
    try:
        check_aliases(text, str(path))
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"The config file {path} is not valid YAML ({exc})", "Fix its syntax.") from None
    # Fail early on unset variables in values (not comments), but keep ${VAR} in the config.
    expand_env(json.dumps(raw), environ, f"The config file {path}")
    if not isinstance(raw, dict):
        raise ConfigError(
            f"The config file {path} does not hold a mapping of settings",
            "Start from configs/bike_sharing.yaml.",
        )
    return parse_config(raw, str(path))


def load_run_config(path: str | Path, environ: Mapping[str, str], data: str | None = None) -> PipelineConfig:
    """The config of one run: the file at `path`, reading `data` (or `$RETRAIN_DATA`) instead of data.source.

    The one loader of the command line and of deployment runs (whose `config` parameter is the
    file's path), so a worker honours `RETRAIN_DATA` exactly like `retrain run`.
    """
    config = load_config(path, environ)
    override = data or environ.get(LOCAL_DATA_VARIABLE)
    if not override:
        return config
    source = DataConfig(source=override, **config.data.model_dump(include=READ_SETTINGS))
    return config.model_copy(update={"data": source})
