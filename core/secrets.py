"""Secrets in text: find the values a config expands from `${VAR}`, and mask them and URL credentials.

One masking rule for every message the project emits or raises, the parameters it hands to
Prefect and what it logs to MLflow: URL passwords, secret-looking query parameters (token, key,
signature ...) and every expanded `${VAR}` value become `***`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

MASK = "***"
ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_URL_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@\s]*@")
# Query parameters that carry credentials in signed or token URLs (S3, GCS, Azure SAS, APIs).
_SECRET_QUERY = re.compile(
    r"([?&](?:[\w.-]*(?:token|secret|password|passwd|pwd|key|sig|signature|credential|auth)"
    r"[\w.-]*)=)[^&#\s]*",
    re.IGNORECASE,
)
# Shorter values would mask ordinary words in messages; such secrets are no secrets.
MIN_SECRET_LENGTH = 4


def _masked(match: re.Match[str], value: str, suffix: str = "") -> str:
    # A `${VAR}` placeholder is no secret: it stays, so a masked config still resolves at run time.
    kept = value if ENV_PATTERN.fullmatch(value) else MASK
    return f"{match.group(1)}{kept}{suffix}"


def redact_url(url: str) -> str:
    """Mask the password and secret-looking query values in a URL (`postgresql://u:***@h/db`).

    `${VAR}` placeholders are kept: they are where the secret comes from, not the secret.
    """
    url = _URL_PASSWORD.sub(lambda m: _masked(m, m.group(0)[len(m.group(1)) : -1], "@"), url)
    return _SECRET_QUERY.sub(lambda m: _masked(m, m.group(0)[len(m.group(1)) :]), url)


def secret_values(text: str, environ: Mapping[str, str]) -> list[str]:
    """The values that `${VAR}` references in `text` expand to in `environ` (to mask them)."""
    return [environ[m] for m in ENV_PATTERN.findall(text) if environ.get(m)]


def url_passwords(text: str) -> list[str]:
    """The literal passwords of the URLs in `text`."""
    return [m.group(0)[len(m.group(1)) : -1] for m in _URL_PASSWORD.finditer(text)]


def mask(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every one of `secrets` and every URL credential replaced by `***`."""
    for secret in sorted({s for s in secrets if len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return redact_url(text)
