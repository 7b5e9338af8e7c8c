"""Prefect tasks that wrap the pure core, and the edges that talk to sources, MLflow and Prefect."""
