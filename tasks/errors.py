"""Errors the pipeline raises on purpose.

`BadInputError` means the user can fix it (config, data, arguments): the CLI exits 2 and prints
its message without a traceback. Every other exception is a failure of the pipeline (exit 1).
"""

from __future__ import annotations


class BadInputError(Exception):
    """Bad input the user can fix: one paragraph listing every problem found and the fix.

    Args:
        problems: One sentence per problem found.
        fix: What the user should do about it.
    """

    def __init__(self, problems: list[str] | str, fix: str = "") -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.fix = fix
        super().__init__(self.message)

    @property
    def message(self) -> str:
        """The whole paragraph: the problems, then the fix."""
        body = " ".join(p.rstrip(".") + "." for p in self.problems)
        return f"{body} {self.fix}".strip()

    def __reduce__(self):  # keeps the problems when Prefect pickles the exception into a state
        return (self.__class__, (self.problems, self.fix))


class ConfigError(BadInputError):
    """The YAML config is invalid."""


class DataError(BadInputError):
    """The data cannot be read or does not fit the config."""


def retry_unless_bad_input(task, task_run, state) -> bool:
    """Prefect `retry_condition_fn`: retry I/O failures, never the user's bad input."""
    try:
        state.result()
    except BadInputError:
        return False
    except Exception:
        return True
    return False


def io_edge_options() -> dict[str, object]:
    """Task options of the I/O edges (files, network, MLflow): retried, never for bad input, not cached."""
    from prefect.cache_policies import NO_CACHE

    return {
        "cache_policy": NO_CACHE,
        "retries": 2,
        "retry_delay_seconds": 2,
        "retry_condition_fn": retry_unless_bad_input,
    }
