"""`retrain predict`: predictions equal the model's own, with keys and probabilities; bad input is exit 2
and leaves no output file; every scoring run is recorded in MLflow.

One regression and one classification champion are trained once for the module.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import Result
from mlflow import MlflowClient
from typer.testing import CliRunner

import flows.score  # noqa: F401 - configures Prefect's logging now, not inside a CliRunner's streams
from cli.app import app
from conftest import cli_json, isolated_cli_store, synthetic_frame
from core.results import ScoreSummary, json_keys

REGRESSOR, CLASSIFIER = "score-reg", "score-clf"


@dataclass(frozen=True)
class Store:
    root: Path
    uri: str
    configs: dict[str, Path]


def write_config(path: Path, name: str, task: str, source: Path, **extra: Any) -> Path:
    raw = {
        "name": name,
        "task": task,
        "target": "y",
        "time_column": "day",
        "data": {"source": str(source)},
        "candidates": {"linear" if task == "regression" else "logistic": {}},
        "split": {"min_rows": 10},
        "tuning": {"n_trials": 2, "subset_rows": 100},
        "features": {"datetime": False},
        **extra,
    }
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    with isolated_cli_store(tmp_path_factory, "predict") as (root, uri):
        configs = {}
        for name, task in ((REGRESSOR, "regression"), (CLASSIFIER, "classification")):
            source = root / f"{task}.csv"
            synthetic_frame(rows=300, seed=1, task=task).to_csv(source, index=False)
            configs[name] = write_config(root / f"{name}.yaml", name, task, source)
            assert cli_json("run", "--config", str(configs[name]), "--json")["promoted"]
        yield Store(root, uri, configs)


def predict_json(config: Path, batch: Path, out: Path | str, *extra: str) -> dict[str, Any]:
    return cli_json(
        "predict", "--config", str(config), "--data", str(batch), "--out", str(out), *extra, "--json"
    )


def batch_csv(folder: Path, frame: pd.DataFrame | None = None) -> Path:
    path = folder / "batch.csv"
    (synthetic_frame(rows=50, seed=9) if frame is None else frame).to_csv(path, index=False)
    return path


def own_model(store: Store, name: str, version: str = "1"):
    """The registered model as MLflow's own sklearn loader gives it (independent of the pipeline)."""
    mlflow.set_tracking_uri(store.uri)
    return mlflow.sklearn.load_model(f"models:/{name}/{version}")


def test_predictions_equal_the_models_own_with_keys_and_an_mlflow_record(
    store: Store, tmp_path: Path
) -> None:
    batch = batch_csv(tmp_path)
    out = tmp_path / "scores" / "predicted.csv"
    summary = predict_json(store.configs[REGRESSOR], batch, out)
    assert set(summary) == set(json_keys(ScoreSummary))
    written = pd.read_csv(out)
    rows = pd.read_csv(batch)
    model = own_model(store, REGRESSOR)
    expected = model.predict(rows[list(model.feature_names_in_)])
    assert list(written.columns) == ["day", "prediction"] == summary["columns"]
    assert written["day"].tolist() == rows["day"].tolist()
    np.testing.assert_allclose(written["prediction"], expected, rtol=1e-9)
    assert summary["model_version"] == "1" and summary["rows"] == 50
    assert sorted(p.name for p in out.parent.iterdir()) == ["predicted.csv"]  # no temporary file left

    # The MLflow record: version, fingerprint, rows and the distribution of the predictions
    client = MlflowClient(store.uri)
    run = client.get_run(summary["mlflow_run_id"])
    assert client.get_experiment(run.info.experiment_id).name == f"{REGRESSOR}-scoring"
    assert run.info.status == "FINISHED"
    assert run.data.tags["model_version"] == "1"
    assert run.data.tags["data_sha256"] == summary["data_sha256"] and len(summary["data_sha256"]) == 64
    assert run.data.metrics["rows"] == 50
    local = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id,
        artifact_path="predictions/stats.json",
        dst_path=str(tmp_path),
        tracking_uri=store.uri,
    )
    stats = json.loads(Path(local).read_text())
    assert stats == summary["prediction_stats"]
    assert stats["quantiles"]["0.5"] == pytest.approx(np.quantile(expected, 0.5), rel=1e-6)
    assert sum(stats["histogram"]["counts"]) == 50
    assert stats["max"] == pytest.approx(expected.max(), rel=1e-6)

    # The same rows again: the same fingerprint (the drift check and the records can match batches)
    again = predict_json(store.configs[REGRESSOR], batch, out)
    assert again["data_sha256"] == summary["data_sha256"]


def test_classifier_probabilities_and_parquet_with_chosen_keys_and_version(
    store: Store, tmp_path: Path
) -> None:
    config = store.configs[CLASSIFIER]
    raw = yaml.safe_load(config.read_text())
    keyed = write_config(
        tmp_path / "keyed.yaml", CLASSIFIER, "classification", Path(raw["data"]["source"]),
        score={"key_columns": ["day", "x2"]},
    )  # fmt: skip
    batch = batch_csv(tmp_path, synthetic_frame(rows=40, seed=5, task="classification").drop(columns=["y"]))
    out = tmp_path / "predicted.parquet"
    summary = predict_json(keyed, batch, out, "--version", "1")
    written = pd.read_parquet(out)
    rows = pd.read_csv(batch)
    model = own_model(store, CLASSIFIER)
    features = rows[list(model.feature_names_in_)]
    assert list(written.columns) == ["day", "x2", "prediction", "probability_high", "probability_low"]
    assert written["prediction"].tolist() == model.predict(features).tolist()
    expected = model.predict_proba(features)
    classes = list(model.classes_)
    for label in ("high", "low"):
        np.testing.assert_allclose(
            written[f"probability_{label}"], expected[:, classes.index(label)], rtol=1e-6
        )
    np.testing.assert_allclose(written["x2"], rows["x2"], rtol=1e-9)
    shares = summary["prediction_stats"]["class_shares"]
    assert shares == pytest.approx(written["prediction"].value_counts(normalize=True).to_dict())


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_predictions_to_a_sql_table_replace_it_in_one_transaction(
    store: Store, tmp_path: Path, database: str
) -> None:
    import sqlalchemy as sa

    table = f"scores_{uuid.uuid4().hex[:8]}"
    url = (
        f"sqlite:///{tmp_path / 'scores.db'}"
        if database == "sqlite"
        else "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
    )
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            pd.DataFrame({"old": [1, 2, 3]}).to_sql(table, connection, index=False)  # replaced by the run
        batch = batch_csv(tmp_path)
        summary = predict_json(store.configs[REGRESSOR], batch, url, "--out-table", table)
        assert summary["out"].endswith(f"(table {table})")
        with engine.connect() as connection:
            written = pd.read_sql(sa.text(f'SELECT * FROM "{table}"'), connection)
            names = sa.inspect(connection).get_table_names()
        model = own_model(store, REGRESSOR)
        rows = pd.read_csv(batch)
        assert list(written.columns) == ["day", "prediction"]
        np.testing.assert_allclose(
            written["prediction"], model.predict(rows[list(model.feature_names_in_)]), rtol=1e-6
        )
        assert [n for n in names if n.startswith(table)] == [table]  # no staging table left
    finally:
        with engine.begin() as connection:
            connection.execute(sa.text(f'DROP TABLE IF EXISTS "{table}"'))
        engine.dispose()


def bad_predict(store: Store, tmp_path: Path, config: Path, *args: str, expect: list[str]) -> None:
    """Exit 2 with one paragraph naming the problem, and no output file (an old one left untouched)."""
    out = tmp_path / "out" / "predicted.csv"
    out.parent.mkdir(exist_ok=True)
    out.write_text("earlier,output\n1,2\n")
    result = invoke("predict", "--config", str(config), "--out", str(out), *args)
    stderr = " ".join(result.stderr.split())
    assert result.exit_code == 2, result.output
    assert stderr.startswith("Error: ") and "Traceback" not in result.output
    for fragment in expect:
        assert fragment in stderr, f"{fragment!r} not in {stderr!r}"
    assert out.read_text() == "earlier,output\n1,2\n"
    assert sorted(p.name for p in out.parent.iterdir()) == ["predicted.csv"]


def test_bad_input_exits_2_and_leaves_no_output(store: Store, tmp_path: Path) -> None:
    config = store.configs[REGRESSOR]
    missing = batch_csv(tmp_path, synthetic_frame(rows=20).drop(columns=["x2"]))
    bad_predict(
        store,
        tmp_path,
        config,
        "--data",
        str(missing),
        expect=["champion input column ['x2'] not in the data"],
    )
    text = synthetic_frame(rows=20).assign(x1=lambda f: [f"level-{i}" for i in range(len(f))])
    wrong = batch_csv(tmp_path, text)
    bad_predict(store, tmp_path, config, "--data", str(wrong), expect=["column 'x1' should be numeric"])
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    bad_predict(store, tmp_path, config, "--data", str(empty), expect=[f"The data file {empty} is empty"])
    bad_predict(store, tmp_path, config, "--version", "99", expect=[f"Model '{REGRESSOR}' has no version 99"])
    nameless = write_config(tmp_path / "nameless.yaml", "never-trained", "regression", batch_csv(tmp_path))
    bad_predict(store, tmp_path, nameless, expect=["No champion is registered for model 'never-trained'"])
    result = invoke("predict", "--config", str(config), "--out", str(tmp_path / "predicted.xlsx"))
    assert result.exit_code == 2 and "neither a .csv or .parquet file" in result.stderr


def test_a_write_that_fails_midway_leaves_the_old_file_and_no_partial_one(tmp_path: Path) -> None:
    from core.errors import DataError
    from tasks.output import write_predictions

    out = tmp_path / "predicted.parquet"
    out.write_bytes(b"the earlier predictions")
    unwritable = pd.DataFrame({"prediction": [1.0, "not a number"]})  # Parquet refuses mixed types
    with pytest.raises(DataError, match=f"Writing the predictions to {out} failed"):
        write_predictions.fn(unwritable, str(out), "unused")
    assert out.read_bytes() == b"the earlier predictions"
    assert [p.name for p in tmp_path.iterdir()] == ["predicted.parquet"]
    write_predictions.fn(pd.DataFrame({"prediction": [1.0, 2.0]}), str(out), "unused")
    assert pd.read_parquet(out)["prediction"].tolist() == [1.0, 2.0]
