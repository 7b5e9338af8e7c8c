"""Errors the pipeline raises on purpose, and which of them are the user's to fix.

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
