"""Refuse to start the Docker stack while its settings still hold a placeholder of .env.example.

    python docker/preflight.py [--env-file .env] [--example .env.example]

The one-shot `preflight` service of docker/docker-compose.yml runs this before anything else starts
(every other service waits for it to succeed), with the .env values in its environment and
.env.example mounted at /app/env.example. Run it on the host with --env-file to check a .env first.

A value is rejected when it equals its .env.example placeholder or still contains the CHANGE-ME
marker, when a password is too short, when a database credential would break the connection URLs,
or when the pipeline would log in to MLflow as the admin. Exit status: 0 when every value is usable,
1 with one paragraph per problem on stderr, 2 when a file cannot be read. Standard library only.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

# Where the compose file mounts .env.example inside the container.
CONTAINER_EXAMPLE = Path("/app/env.example")
MARKER = re.compile(r"change-?me", re.IGNORECASE)
# Secrets the stack needs, with the command that makes a good value for each.
SECRETS = {
    "POSTGRES_PASSWORD": "openssl rand -hex 24",
    "PREFECT_AUTH_STRING": 'echo "admin:$(openssl rand -hex 24)"',
    "MLFLOW_ADMIN_PASSWORD": "openssl rand -hex 24",
    "MLFLOW_FLASK_SECRET_KEY": "openssl rand -hex 32",
    "PIPELINE_MLFLOW_PASSWORD": "openssl rand -hex 24",
}
REQUIRED = (*SECRETS, "POSTGRES_USER", "MLFLOW_ADMIN_USERNAME", "PIPELINE_MLFLOW_USERNAME")
MIN_LENGTH = 12
# POSTGRES_USER and POSTGRES_PASSWORD are written unescaped into the servers' database URLs.
URL_SAFE = re.compile(r"[A-Za-z0-9_-]+")
START = "docker compose -f docker/docker-compose.yml --env-file .env up -d"


def read_env_file(path: Path) -> dict[str, str]:
    """Read NAME=value lines the way compose's --env-file does for plain values.

    Args:
        path: A .env-style file.

    Returns:
        The values by name; comments, blank lines and surrounding quotes are dropped.
    """
    result = {}
    for line in path.read_text().splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and name and not name.startswith("#"):
            value = value.strip()
            if len(value) > 1 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            result[name.strip()] = value
    return result


def secret_part(name: str, value: str) -> str:
    """The secret inside a value: the password of PREFECT_AUTH_STRING ("user:password"), else all of it."""
    return value.partition(":")[2] if name == "PREFECT_AUTH_STRING" else value


def problems(env: Mapping[str, str], placeholders: Mapping[str, str]) -> list[str]:
    """Check the stack's settings.

    Args:
        env: The settings, by their .env names.
        placeholders: The values of .env.example, by name (may be empty).

    Returns:
        One paragraph per problem, each naming the variable and the fix; empty when all is well.
    """
    found = []
    for name in REQUIRED:
        value = env.get(name, "")
        fix = f"set {name} in .env"
        if name in SECRETS:
            fix = (
                f"put a new random value in .env (letters, digits, '-' and '_' only), e.g. the "
                f"output of `{SECRETS[name]}`"
            )
        # User names may keep the example's; a secret may not.
        placeholder = name in SECRETS and value == placeholders.get(name)
        if not value:
            found.append(f"{name} is not set. Fix: {fix}, then start the stack again with `{START}`.")
        elif placeholder or MARKER.search(value):
            found.append(
                f"{name} still holds the placeholder of .env.example ({value!r}), so the stack refuses "
                f"to start: anyone who has read the example could log in with it. Fix: {fix}, then "
                f"start the stack again with `{START}`."
            )
        elif name == "PREFECT_AUTH_STRING" and not re.fullmatch(r"[^:]+:.+", value):
            found.append(
                f"PREFECT_AUTH_STRING must be 'user:password', both parts non-empty. Fix: {fix}, "
                f"then start the stack again with `{START}`."
            )
        elif name in SECRETS and len(secret_part(name, value)) < MIN_LENGTH:
            found.append(
                f"{name} is shorter than {MIN_LENGTH} characters, too easy to guess. Fix: {fix}, "
                f"then start the stack again with `{START}`."
            )
        elif name in ("POSTGRES_USER", "POSTGRES_PASSWORD") and not URL_SAFE.fullmatch(value):
            found.append(
                f"{name} contains a character other than letters, digits, '-' and '_'; it is written "
                f"into the database URLs of the Prefect and MLflow servers, where such a character "
                f"breaks the URL. Fix: {fix} without those characters, then start the stack again "
                f"with `{START}`."
            )
    pipeline, admin = env.get("PIPELINE_MLFLOW_USERNAME", ""), env.get("MLFLOW_ADMIN_USERNAME", "")
    if pipeline and pipeline == admin:
        found.append(
            f"PIPELINE_MLFLOW_USERNAME is the MLflow admin ({admin!r}): the pipeline must log in as "
            f"its own user, which the `mlflow-users` service creates without admin rights. Fix: set "
            f"PIPELINE_MLFLOW_USERNAME in .env to another name, e.g. retrain-pipeline, then start "
            f"the stack again with `{START}`."
        )
    secret = env.get("PIPELINE_MLFLOW_PASSWORD", "")
    if secret and secret == env.get("MLFLOW_ADMIN_PASSWORD"):
        found.append(
            "PIPELINE_MLFLOW_PASSWORD equals MLFLOW_ADMIN_PASSWORD: the pipeline's password would "
            "open the admin account. Fix: give PIPELINE_MLFLOW_PASSWORD its own value in .env, e.g. "
            f"the output of `openssl rand -hex 24`, then start the stack again with `{START}`."
        )
    return found


def main(argv: list[str] | None = None) -> int:
    """Check the settings of .env (or of the environment) and report every problem.

    Args:
        argv: Command-line arguments without the program name; None reads sys.argv.

    Returns:
        The exit status: 0 fine, 1 problems found, 2 a file could not be read.
    """
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--env-file", type=Path, help="read the settings from this file, not the environment")
    cli.add_argument("--example", type=Path, help="the .env.example with the placeholders")
    args = cli.parse_args(argv)
    example = args.example or CONTAINER_EXAMPLE
    try:
        env = read_env_file(args.env_file) if args.env_file else dict(os.environ)
        # Without the example the CHANGE-ME marker still catches its placeholders.
        placeholders = read_env_file(example) if args.example or example.is_file() else {}
    except OSError as exc:
        print(f"preflight: cannot read {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    found = problems(env, placeholders)
    for paragraph in found:
        print(f"preflight: {paragraph}\n", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
