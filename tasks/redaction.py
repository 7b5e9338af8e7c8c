"""The process's redaction filter: every log record masked of the secrets this run knows.

Installed on the handlers of the console and of Prefect's API (the logs stored in Prefect's
database), by each flow and by the commands, before anything reads a source. The secrets are the
values the config's `${VAR}` references expand to, literal URL passwords in the config, and the
credentials in MLFLOW_TRACKING_URI and PREFECT_API_URL.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable

from core.config import PipelineConfig
from core.secrets import ENV_PATTERN, mask, secret_values, url_passwords, webhook_secrets

LOGGER_NAMES = (None, "prefect", "prefect.flow_runs", "prefect.task_runs", "prefect.extra")


class MaskSecrets(logging.Filter):
    """Mask known secrets and URL credentials in a record's message and traceback."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record in place; never drop it."""
        record.msg, record.args = mask(record.getMessage(), self.secrets), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask(record.exc_text, self.secrets)
        return True


def known_secrets(config: PipelineConfig | None) -> set[str]:
    """The secrets of this process: the config's expanded `${VAR}` values, every URL password and
    the token part of the notification webhook."""
    urls = [os.environ.get("MLFLOW_TRACKING_URI", ""), os.environ.get("PREFECT_API_URL", "")]
    text = json.dumps(config.model_dump()) if config is not None else ""
    webhook = config.notify.webhook_url if config is not None and config.notify else ""
    expanded = ENV_PATTERN.sub(lambda m: os.environ.get(m.group(1), ""), webhook)
    return {
        *secret_values(text, os.environ),
        *url_passwords(" ".join([text, *urls])),
        *webhook_secrets(expanded),
    }


# One filter per process, so every handler and the console's error paragraph share what it knows.
PROCESS_FILTER = MaskSecrets()


def mask_known(text: str) -> str:
    """`text` masked of URL credentials and of every secret this process has registered."""
    return mask(text, PROCESS_FILTER.secrets)


def protect_secrets(config: PipelineConfig | None = None, extra: Iterable[str] = ()) -> MaskSecrets:
    """Register this config's secrets and attach the filter to every handler that writes logs."""
    PROCESS_FILTER.secrets |= known_secrets(config) | set(extra)
    for handler in {h for name in LOGGER_NAMES for h in logging.getLogger(name).handlers}:
        if PROCESS_FILTER not in handler.filters:
            handler.addFilter(PROCESS_FILTER)
    return PROCESS_FILTER
