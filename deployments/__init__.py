"""Prefect deployments of the retraining and drift-check flows, built from the imported flows."""

from deployments.build import build_deployments, deployment_names

__all__ = ["build_deployments", "deployment_names"]
