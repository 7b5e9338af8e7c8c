"""Give the pipeline its own MLflow user: no admin rights, EDIT on its experiments and model only.

    python /app/docker/mlflow_pipeline_user.py --config /app/configs/bike_sharing.yaml [--config ...]

Run by the one-shot `mlflow-users` service of docker/docker-compose.yml once the MLflow server is
healthy, before the pipeline starts. It logs in as the admin (MLFLOW_TRACKING_USERNAME and
MLFLOW_TRACKING_PASSWORD, set from MLFLOW_ADMIN_* in .env) and, for PIPELINE_MLFLOW_USERNAME /
PIPELINE_MLFLOW_PASSWORD:

- creates the user, or resets its password to the one in .env and takes away admin rights;
- creates each config's training, monitoring and scoring experiments and registered model when missing,
  exactly as the pipeline would (server-side artifact location), so the pipeline never becomes
  their creator, which MLflow would give MANAGE (delete, grant to others);
- grants the user EDIT on them: log runs, metrics and artifacts, register versions, set tags
  and aliases. Everything else it may only read (default_permission in docker/mlflow/basic_auth.ini).

Safe to run on every start. Exit 0 on success; any error leaves the pipeline stopped.
"""

from __future__ import annotations

import argparse
import os
import sys

EDIT = "EDIT"


def ensure_user(auth, username: str, password: str) -> None:
    """Create `username` as a non-admin, or make an existing one match .env and drop its admin rights."""
    from mlflow.exceptions import RestException

    try:
        user = auth.get_user(username)
    except RestException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        auth.create_user(username, password)
        return
    auth.update_user_password(username, password)
    if user.is_admin:
        auth.update_user_admin(username, False)


def ensure_grants(auth, tracking, username: str, config) -> None:
    """Create a config's experiments and registered model if missing, and grant `username` EDIT on them."""
    from mlflow.exceptions import RestException

    for name in (config.experiment_name, config.monitoring_experiment, config.scoring_experiment):
        experiment = tracking.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment else tracking.create_experiment(name)
        auth.grant_user_permission(username, "experiment", experiment_id, EDIT)
    try:
        tracking.get_registered_model(config.name)
    except RestException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        tracking.create_registered_model(config.name)
    auth.grant_user_permission(username, "registered_model", config.name, EDIT)


def main(argv: list[str] | None = None) -> int:
    """Provision the pipeline's MLflow user for every --config.

    Args:
        argv: Command-line arguments without the program name; None reads sys.argv.

    Returns:
        The exit status: 0 done, 1 a setting is missing.
    """
    import mlflow.server
    from mlflow import MlflowClient

    from core.config import load_config

    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--config", action="append", required=True, help="a pipeline config the user runs")
    args = cli.parse_args(argv)
    names = ("MLFLOW_TRACKING_URI", "PIPELINE_MLFLOW_USERNAME", "PIPELINE_MLFLOW_PASSWORD")
    missing = [name for name in names if not os.environ.get(name)]
    if missing:
        print(f"mlflow-users: not set: {', '.join(missing)} (see .env.example)", file=sys.stderr)
        return 1
    uri, username = os.environ["MLFLOW_TRACKING_URI"], os.environ["PIPELINE_MLFLOW_USERNAME"]
    auth = mlflow.server.get_app_client("basic-auth", tracking_uri=uri)
    tracking = MlflowClient(tracking_uri=uri, registry_uri=uri)
    ensure_user(auth, username, os.environ["PIPELINE_MLFLOW_PASSWORD"])
    for path in args.config:
        config = load_config(path, os.environ)
        ensure_grants(auth, tracking, username, config)
        print(f"mlflow-users: {username}: EDIT on {config.name} and its experiments", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
