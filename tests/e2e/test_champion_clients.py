"""The champion in MLflow's own clients, in a fresh virtualenv that has not this project.

The virtualenv holds only MLflow, scikit-learn, pandas and skops (the model's file format) at
this project's pins. Three clients score rows as `pd.read_csv` gives them from the real bike
data: `mlflow.pyfunc`, `mlflow models predict`, and the scoring server of `mlflow models serve`
with `dataframe_split` JSON. All three must equal the pipeline's own predictions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cli.servers import free_port, spawn, stop
from conftest import REPO, bike_config
from flows.retrain import retrain_flow
from tasks.registry import ChampionInfo, find_champion, load_champion_model
from tasks.settings import Settings

pytestmark = pytest.mark.slow
CLIENT_PACKAGES = ("mlflow", "scikit-learn", "pandas", "skops", "numpy", "scipy")
NAME = "bike-demand"


def client_python() -> Path:
    """A virtualenv with the client packages at this project's pins, made once and kept in the repo."""
    pins = [f"{package}=={metadata.version(package)}" for package in CLIENT_PACKAGES]
    venv = REPO / ".venv-client"
    stamp = venv / "pins.txt"
    if not stamp.is_file() or stamp.read_text() != "\n".join(pins):
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", *pins],
            check=True,
            timeout=1200,
        )
        stamp.write_text("\n".join(pins))
    return venv / "bin" / "python"


@pytest.fixture(scope="module")
def champion(bike_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], Path]:
    """A bike-sharing champion; returns the clients' environment and rows from `pd.read_csv`."""
    root = tmp_path_factory.mktemp("clients")
    patch = pytest.MonkeyPatch()
    patch.chdir(root)
    patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    try:
        config = bike_config(bike_csv, candidates={"hist_gradient_boosting": {"params": {"max_iter": 100}}})
        assert retrain_flow(config).promoted
    finally:
        patch.undo()
    rows = root / "rows.csv"
    pd.read_csv(bike_csv).tail(300).to_csv(rows, index=False)
    env = {  # as with the client's virtualenv activated
        **{k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))},
        "PATH": f"{client_python().parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
    }
    return env, rows


def pipeline_predictions(env: dict[str, str], rows: Path) -> np.ndarray:
    """What the pipeline's own (safe) loader predicts for the rows."""
    settings = Settings.from_environment({"MLFLOW_TRACKING_URI": env["MLFLOW_TRACKING_URI"]})
    info: ChampionInfo = find_champion.fn(settings, NAME)
    model = load_champion_model(settings, info)
    frame = pd.read_csv(rows)
    return model.predict(frame[model.feature_names_in_])


def run_client(env: dict[str, str], *args: str, cwd: Path) -> str:
    completed = subprocess.run(
        [str(client_python()), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=600
    )
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-4000:]
    return completed.stdout


def test_pyfunc_in_a_fresh_virtualenv_predicts_read_csv_rows(champion) -> None:
    env, rows = champion
    script = (
        "import importlib.util, json, mlflow, pandas as pd\n"
        "assert not any(importlib.util.find_spec(m) for m in ('core', 'tasks', 'flows')), 'project found'\n"
        f"model = mlflow.pyfunc.load_model('models:/{NAME}@champion')\n"
        f"print(json.dumps([float(v) for v in model.predict(pd.read_csv({str(rows)!r}))]))\n"
    )
    out = run_client(env, "-c", script, cwd=rows.parent)
    predicted = np.array(json.loads(out.strip().splitlines()[-1]))
    np.testing.assert_allclose(predicted, pipeline_predictions(env, rows), rtol=1e-9)


def test_mlflow_models_predict_cli_on_a_csv(champion) -> None:
    env, rows = champion
    out = rows.parent / "predicted.json"
    run_client(
        env,
        "-m", "mlflow", "models", "predict", "-m", f"models:/{NAME}@champion",
        "-i", str(rows), "-t", "csv", "-o", str(out), "--env-manager", "local",
        cwd=rows.parent,
    )  # fmt: skip
    predicted = np.array(json.loads(out.read_text())["predictions"], dtype=float)
    np.testing.assert_allclose(predicted, pipeline_predictions(env, rows), rtol=1e-9)


def test_scoring_server_answers_dataframe_split_json(champion) -> None:
    env, rows = champion
    port = free_port(0)
    server = spawn(
        [
            str(client_python()), "-m", "mlflow", "models", "serve", "-m", f"models:/{NAME}@champion",
            "-h", "127.0.0.1", "-p", str(port), "--env-manager", "local",
        ],
        rows.parent / "serve.log",
        env=env,
        cwd=rows.parent,
    )  # fmt: skip
    try:
        frame = pd.read_csv(rows)
        body = json.dumps({"dataframe_split": json.loads(frame.to_json(orient="split", index=False))})
        deadline, answer = time.monotonic() + 120, None
        while answer is None and time.monotonic() < deadline:
            assert server.poll() is None, (rows.parent / "serve.log").read_text()[-3000:]
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/invocations",
                data=body.encode(),
                headers={"Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    answer = json.loads(response.read())
            except OSError:
                time.sleep(1)
        assert answer is not None, "the scoring server did not answer"
        predicted = np.array(answer["predictions"], dtype=float)
        np.testing.assert_allclose(predicted, pipeline_predictions(env, rows), rtol=1e-9)
    finally:
        stop(server)
