"""The one settings object for infrastructure: where local state lives and which servers to use.

Read at run time from the environment (never at import time) and passed down to the edges, like
the config of a deployment run, whose `config` parameter is the path of its file.
Without MLFLOW_TRACKING_URI or PREFECT_API_URL, everything lives under `.retrain/` in the working
directory: MLflow on SQLite, Prefect's own database, the download cache, the drift reports and
the record of a local Prefect server that other commands reuse.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.config import PipelineConfig

STATE_DIR_NAME = ".retrain"
LOCAL_SERVER_FILE = "prefect-server.json"


@dataclass(frozen=True)
class Settings:
    """Infrastructure settings of one process.

    Attributes:
        state_dir: The local state folder (`.retrain/`, absolute).
        tracking_uri: MLflow tracking and registry URI.
        cache_dir: Where downloads are kept (`$RETRAIN_CACHE_DIR`).
        reports_dir: Where HTML drift reports are written (`$RETRAIN_REPORTS_DIR`).
        prefect_home: Prefect's home for a local database (`$PREFECT_HOME`).
        prefect_api_url: The Prefect API, or None for Prefect's ephemeral one.
        failpoint: The fault point crash tests set (`$RETRAIN_FAILPOINT`, see `tasks.faults`).
        mlflow_ui_url: The MLflow UI that Prefect artifacts link to (`$RETRAIN_MLFLOW_UI_URL`, by
            default the tracking server); None for a local store without one.
    """

    state_dir: Path
    tracking_uri: str
    cache_dir: Path
    reports_dir: Path
    prefect_home: Path
    prefect_api_url: str | None
    failpoint: str | None = None
    mlflow_ui_url: str | None = None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the settings now, from `environ` (default: this process's environment)."""
        env = os.environ if environ is None else environ
        state = Path(STATE_DIR_NAME).resolve()
        tracking_uri = env.get("MLFLOW_TRACKING_URI") or f"sqlite:///{state / 'mlflow.db'}"
        server = tracking_uri if tracking_uri.startswith(("http://", "https://")) else None
        return cls(
            state_dir=state,
            tracking_uri=tracking_uri,
            cache_dir=Path(env.get("RETRAIN_CACHE_DIR") or state / "cache"),
            reports_dir=Path(env.get("RETRAIN_REPORTS_DIR") or state / "reports"),
            prefect_home=Path(env.get("PREFECT_HOME") or state / "prefect"),
            prefect_api_url=env.get("PREFECT_API_URL") or None,
            failpoint=env.get("RETRAIN_FAILPOINT") or None,
            mlflow_ui_url=(env.get("RETRAIN_MLFLOW_UI_URL") or server or "").rstrip("/") or None,
        )

    @property
    def local_server_file(self) -> Path:
        """Where `retrain serve` / `retrain dashboard` record the local Prefect server they started."""
        return self.state_dir / LOCAL_SERVER_FILE

    @property
    def tracking_is_local(self) -> bool:
        """Whether MLflow is a database we own (then artifacts go under the state folder too)."""
        return not self.tracking_uri.startswith(("http://", "https://", "databricks"))

    def pinned_environment(self) -> dict[str, str]:
        """The environment that makes flow runs started elsewhere share these local stores."""
        return {
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "RETRAIN_CACHE_DIR": str(self.cache_dir.resolve()),
            "RETRAIN_REPORTS_DIR": str(self.reports_dir.resolve()),
        }


def run_config(
    config: PipelineConfig | str | Path, environ: Mapping[str, str] | None = None
) -> PipelineConfig:
    """A flow's config: as given, or read now from the file it names, with `$RETRAIN_DATA` applied.

    Deployments pass the path (so `configs/*.yaml` stays the single source), and the file is read
    and validated on the worker at run time, exactly as `retrain run` reads it.
    """
    # Imported here: the command line reads these settings before it imports scikit-learn and pandas.
    from core.config import PipelineConfig, load_run_config

    if isinstance(config, PipelineConfig):
        return config
    return load_run_config(config, os.environ if environ is None else environ)
