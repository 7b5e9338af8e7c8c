"""The trust list for loading a model: the types of the models this pipeline builds, and nothing else.

A skops model file names the types it is made of. Loading one that names any other type could run
code from the file, so it is refused. The list is defined here, in code, never read from the model
itself; `tests/unit/test_trust.py` checks that it is exactly what the catalogue builds.
"""

from __future__ import annotations

from sklearn.base import BaseEstimator
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import LabelEncoder

from core.catalogue import BASELINE, CATALOGUE, make_estimator
from core.errors import BadInputError
from core.features import build_preprocessor
from core.validation import DataSchema

# Beyond the scikit-learn estimators skops trusts by itself: tree internals, and the NumPy and
# SciPy parts of the calendar features.
TRUSTED_MODEL_TYPES = frozenset(
    {
        "numpy.asarray",
        "numpy.dtype",
        "scipy._lib.array_api_compat.numpy._aliases.asarray",
        "scipy.interpolate._bsplines.BSpline",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.tree._tree.Tree",
    }
)


def check_model_types(found: list[str], model: str) -> list[str]:
    """`found` (the types a model file names beyond skops's defaults) when all are trusted.

    Raises:
        BadInputError: The file names a type this pipeline never builds.
    """
    outside = sorted(set(found) - TRUSTED_MODEL_TYPES)
    if outside:
        raise BadInputError(
            f"{model} names types this pipeline never builds ({', '.join(outside)}); loading it "
            "could run code from the file, so it was refused",
            "Point the alias at a version this pipeline trained, or delete the alias to train "
            "a new champion.",
        )
    return found


def model_building_blocks() -> list[type[BaseEstimator]]:
    """The scikit-learn estimator classes this pipeline's models are made of, read from the builders.

    Every catalogue algorithm and the baseline of both tasks (with a forest's trees), the pipeline,
    and every part of the preprocessing (numeric, categorical and calendar features), unfitted;
    and the one estimator fitting adds. A test loads every fitted model with these alone.
    """
    schema = DataSchema("y", ["number"], ["code"], "time", calendar=True)
    parts: list[BaseEstimator] = [Pipeline([("model", build_preprocessor(schema))])]
    for task_kind, candidates in CATALOGUE.items():
        parts += [make_estimator(task_kind, candidate, {}, 0) for candidate in [BASELINE, *candidates]]
    found: set[type[BaseEstimator]] = {LabelEncoder}  # made by fitting a boosting classifier
    found |= {type(part) for part in parts}
    for part in parts:
        inner = [*part.get_params(deep=True).values()]
        # A forest's trees are not parameters: the unfitted forest holds their template.
        inner += [vars(v).get("estimator") for v in [part, *inner] if isinstance(v, BaseEstimator)]
        found |= {type(v) for v in inner if isinstance(v, BaseEstimator)}
    return sorted(found, key=lambda cls: f"{cls.__module__}.{cls.__qualname__}")
