"""Container health probe: exit 0 when URL answers 2xx within 5 s, else 1.

    python /app/docker/healthcheck.py [URL]

URL defaults to $RETRAIN_HEALTHCHECK_URL, else the Prefect runner's health endpoint that
`retrain serve` starts with PREFECT_RUNNER_SERVER_ENABLE=true (http://127.0.0.1:8080/health).
The slim image has no curl; this needs only the standard library.
"""

from __future__ import annotations

import os
import sys
import urllib.request

DEFAULT_URL = "http://127.0.0.1:8080/health"


def main(argv: list[str]) -> int:
    url = argv[1] if len(argv) > 1 else os.environ.get("RETRAIN_HEALTHCHECK_URL", DEFAULT_URL)
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - fixed local URL
            ok = 200 <= response.status < 300
    except Exception as exc:  # noqa: BLE001 - any failure is "unhealthy", with its reason
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1
    if not ok:
        print(f"unhealthy: {url}: HTTP {response.status}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
