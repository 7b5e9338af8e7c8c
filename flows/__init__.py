"""Prefect flows: wiring of the tasks into the retraining, tuning, drift-check and backtest DAGs."""
