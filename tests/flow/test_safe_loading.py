"""Loading the champion never runs code from its artifacts: a planted pickle or hostile skops file
behind the `champion` alias is refused with bad input, and its payload never runs."""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import skops.io
import yaml
from mlflow import MlflowClient
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from conftest import make_config, synthetic_frame
from core.config import DataConfig
from core.errors import BadInputError
from flows.drift import drift_check_flow
from flows.retrain import retrain_flow

FAST = {"linear": {}}


class OpensAFile:
    """Unpickling this creates the file `marker`: proof that code from the artifact ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def plant(mlflow_store: str, name: str, tmp_path: Path, payload: str) -> str:
    """Copy version 1's model files, swap in `payload`, register them and move `champion` there.

    Returns:
        The planted version.
    """
    client = MlflowClient(mlflow_store)
    champion = client.get_model_version(name, "1")
    files = Path(
        mlflow.artifacts.download_artifacts(
            f"models:/{name}/{champion.version}", dst_path=str(tmp_path / "m")
        )
    )
    planted = tmp_path / "planted"
    shutil.copytree(files, planted)
    meta = yaml.safe_load((planted / "MLmodel").read_text())
    flavor = meta["flavors"]["sklearn"]
    (planted / flavor["pickled_model"]).unlink()
    if payload == "pickle":
        flavor.update(serialization_format="pickle", pickled_model="model.pkl")
        (planted / "model.pkl").write_bytes(pickle.dumps(OpensAFile(tmp_path / "pwned")))
    else:  # a skops file whose pipeline runs os.system; its own MLmodel trusts that
        hostile = Pipeline([("run", FunctionTransformer(func=__import__("os").system))])
        skops.io.dump(hostile, planted / flavor["pickled_model"])
        flavor["skops_trusted_types"] = skops.io.get_untrusted_types(file=planted / flavor["pickled_model"])
    (planted / "MLmodel").write_text(yaml.safe_dump(meta))
    # Written into the champion's own run, as anyone who can write its artifacts could
    client.log_artifacts(champion.run_id, str(planted), "planted")
    source = f"{client.get_run(champion.run_id).info.artifact_uri}/planted"
    version = client.create_model_version(name, source, run_id=champion.run_id, tags=dict(champion.tags))
    client.set_registered_model_alias(name, "champion", version.version)
    return str(version.version)


def test_a_planted_champion_is_refused_and_its_payload_never_runs(mlflow_store: str, tmp_path: Path) -> None:
    source = tmp_path / "history.csv"
    synthetic_frame(rows=600, seed=1).to_csv(source, index=False)
    config = make_config(source, name="planted", candidates=FAST)
    assert retrain_flow(config).promoted is True
    batch = tmp_path / "batch.csv"
    synthetic_frame(rows=200, seed=2).to_csv(batch, index=False)
    for payload in ("pickle", "skops"):
        version = plant(mlflow_store, config.name, tmp_path / payload, payload)
        with pytest.raises(BadInputError) as checked:
            drift_check_flow(config, DataConfig(source=str(batch)))
        with pytest.raises(BadInputError) as retrained:
            # The challenger is compared with the champion: also refused (another margin, so not
            # the champion's recipe again, which would register nothing and load nothing)
            retrain_flow(
                make_config(source, name="planted", candidates=FAST, promotion={"min_improvement": 0.02})
            )
        for refusal in (checked.value.message, retrained.value.message):
            assert f"Version {version} of model 'planted'" in refusal
            assert ("not skops" if payload == "pickle" else "posix.system") in refusal
        assert not (tmp_path / payload / "pwned").exists()
        assert (
            str(MlflowClient(mlflow_store).get_model_version_by_alias(config.name, "champion").version)
            == version
        )


def test_skops_imported_by_the_pipeline_trusts_its_building_blocks_alone(tmp_path: Path) -> None:
    """In a fresh process (skops is imported once per process): a quick import, every model the
    pipeline builds loads, and an estimator it never builds is refused."""
    script = """
import sys
from sklearn.neighbors import KNeighborsRegressor
import sklearn.utils
from tasks.registry import skops_io
from core.trust import TRUSTED_MODEL_TYPES
skops = skops_io()
assert sklearn.utils.all_estimators.__module__ == "sklearn.utils.discovery"  # put back
assert "sklearn.semi_supervised" not in sys.modules  # scikit-learn was not walked
from test_trust import every_model_the_pipeline_builds
trusted = sorted(TRUSTED_MODEL_TYPES)
for model in every_model_the_pipeline_builds():
    skops.loads(skops.dumps(model), trusted=trusted)
print(skops.get_untrusted_types(data=skops.dumps(KNeighborsRegressor())))
"""
    tests = Path(__file__).resolve().parents[1]
    path = os.pathsep.join([str(tests.parent), str(tests), str(tests / "unit")])
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": path},
        cwd=tmp_path,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "sklearn.neighbors._regression.KNeighborsRegressor" in done.stdout
