"""Unit tests of `core/secrets.py` and the redaction filter: what is masked, and what is kept."""

from __future__ import annotations

import logging

import pytest

from core.secrets import mask, redact_url, redact_webhook, secret_values, url_passwords, webhook_secrets
from tasks.redaction import MaskSecrets


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:pw@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:${PW}@h/db", "postgresql://u:${PW}@h/db"),
        ("https://h/a.csv?token=abc&x=1", "https://h/a.csv?token=***&x=1"),
        ("https://h/a.csv?api_key=${KEY}", "https://h/a.csv?api_key=${KEY}"),
        (
            "https://h/a?X-Amz-Signature=d&X-Amz-Credential=A",
            "https://h/a?X-Amz-Signature=***&X-Amz-Credential=***",
        ),
        ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
        ("https://h/a.csv?page=2", "https://h/a.csv?page=2"),
    ],
)
def test_redact_url_masks_literal_credentials_and_keeps_placeholders(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_mask_replaces_expanded_values_anywhere_longest_first() -> None:
    secrets = secret_values("${A}/${B}", {"A": "tok", "B": "tokensecret"})
    assert secrets == ["tok", "tokensecret"]
    # "tok" is too short to mask without hiding ordinary words; the long one is masked whole.
    assert mask("GET /tokensecret/x failed", secrets) == "GET /***/x failed"
    assert url_passwords("a postgresql://u:p4ss@h/db and mysql://v:w0rd@h") == ["p4ss", "w0rd"]


def test_filter_masks_message_arguments_and_traceback() -> None:
    masking = MaskSecrets()
    masking.secrets.add("hunter22")
    try:
        raise RuntimeError("bad password hunter22")
    except RuntimeError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "login %s", ("hunter22",), sys.exc_info())
    assert masking.filter(record)
    assert record.getMessage() == "login ***"
    assert "hunter22" not in record.exc_text and "bad password ***" in record.exc_text


@pytest.mark.parametrize(
    ("url", "shown", "secret"),
    [
        (
            "https://hooks.slack.com/services/T0/B0/xyz",
            "https://hooks.slack.com/***",
            ["/services/T0/B0/xyz"],
        ),
        ("http://u:pw@127.0.0.1:8000/hook?token=abc", "http://u:***@127.0.0.1:8000/***", ["/hook?token=abc"]),
        ("https://alerts.example.com/", "https://alerts.example.com/", []),
        ("${HOOK_URL}", "${HOOK_URL}", []),
    ],
)
def test_a_webhook_shows_only_its_host(url: str, shown: str, secret: list[str]) -> None:
    assert redact_webhook(url) == shown
    assert webhook_secrets(url) == secret


def test_the_expanded_webhook_token_is_masked_in_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import make_config
    from tasks.redaction import known_secrets

    monkeypatch.setenv("HOOK_URL", "https://hooks.example.com/T0/planted-token")
    config = make_config("x.csv", notify={"webhook_url": "${HOOK_URL}"})
    secrets = known_secrets(config)
    assert mask("POST https://hooks.example.com/T0/planted-token failed", secrets) == "POST *** failed"
    assert mask("token /T0/planted-token", secrets) == "token ***"
