"""The trust list for loading models is exactly what the catalogue builds, and refuses anything else."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import skops.io
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from core.catalogue import CATALOGUE, baseline_model, fit_candidate, fit_pipeline
from core.errors import BadInputError
from core.features import build_preprocessor
from core.trust import TRUSTED_MODEL_TYPES, check_model_types
from core.validation import DataSchema


def every_model_the_pipeline_builds() -> list[Pipeline]:
    """The baseline and every candidate, with and without calendar features, on a tiny frame."""
    rows = 60
    models = []
    for task_kind, candidates in CATALOGUE.items():
        frame = pd.DataFrame(
            {
                "number": np.linspace(0.0, 1.0, rows),
                "code": np.arange(rows) % 3,
                "text": pd.Categorical(np.where(np.arange(rows) % 2, "a", "b")),
                "flag": np.arange(rows) % 2 == 0,
                "time": pd.date_range("2024-01-01", periods=rows, freq="h"),
                "y": np.arange(rows) % 2 if task_kind == "classification" else np.linspace(0, 5, rows),
            }
        )
        schema = DataSchema("y", ["number"], ["code", "text", "flag"], "time")
        models.append(fit_pipeline(baseline_model(task_kind), frame, schema))
        for calendar in (False, True):
            chosen = replace(schema, calendar=calendar)
            for candidate, (_, fixed, _) in candidates.items():
                params = {"n_estimators": 2} if "n_estimators" in fixed else {}
                models.append(
                    fit_candidate(frame, build_preprocessor(chosen), chosen, task_kind, candidate, params, 0)
                )
    return models


def test_the_trust_list_is_exactly_what_the_catalogue_builds() -> None:
    found = set()
    for model in every_model_the_pipeline_builds():
        found |= set(skops.io.get_untrusted_types(data=skops.io.dumps(model)))
    assert found == TRUSTED_MODEL_TYPES
    assert not any(name.startswith(("core.", "tasks.", "flows.")) for name in found)  # no project code


def test_a_model_naming_another_type_is_refused() -> None:
    hostile = Pipeline([("run", FunctionTransformer(func=__import__("os").system))])
    found = skops.io.get_untrusted_types(data=skops.io.dumps(hostile))
    with pytest.raises(BadInputError) as info:
        check_model_types(found, "Version 7 of model m")
    assert "Version 7 of model m names types this pipeline never builds (posix.system)" in info.value.message
    assert check_model_types(["sklearn.tree._tree.Tree"], "v1") == ["sklearn.tree._tree.Tree"]
