"""Prefect deployments (scheduled, drift-check and drift-triggered retraining) built from the
imported flow objects. See the deployments issue; `flows.retrain.retrain_flow` is the entry flow."""
