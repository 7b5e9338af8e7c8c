"""The pure core of the pipeline: config, tables, split, features, models, search, rules and results.

Nothing here imports Prefect or MLflow or reads the environment; `tasks/` wraps these functions as
Prefect tasks and holds the edges that talk to files, networks and MLflow.
"""
