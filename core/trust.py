"""The trust list for loading a model: the types of the models this pipeline builds, and nothing else.

A skops model file names the types it is made of. Loading one that names any other type could run
code from the file, so it is refused. The list is defined here, in code, never read from the model
itself; `tests/unit/test_trust.py` checks that it is exactly what the catalogue builds.
"""

from __future__ import annotations

from core.errors import BadInputError

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
