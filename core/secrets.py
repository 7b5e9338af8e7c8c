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
# A literal webhook URL: scheme, credentials and host, then the part that carries the token.
_WEBHOOK_SECRET = re.compile(r"^(https?://[^/?#]+)(.*)$", re.DOTALL)
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


def redact_webhook(url: str) -> str:
    """A webhook URL with everything after its host masked (`https://hooks.example.com/***`).

    Chat and incident webhooks carry their token in the path, so only scheme and host are kept.
    A `${VAR}` reference stays: it is where the URL comes from, not the URL.
    """
    match = _WEBHOOK_SECRET.match(url)
    if match is None:
        return redact_url(url)
    host, rest = match.groups()
    return redact_url(host) + (rest if rest in {"", "/"} else f"/{MASK}")


def webhook_secrets(url: str) -> list[str]:
    """The secret part of a literal webhook URL (what follows its host), to mask it in logs."""
    match = _WEBHOOK_SECRET.match(url)
    return [match.group(2)] if match and match.group(2) not in {"", "/"} else []


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
