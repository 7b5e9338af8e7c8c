"""Feature engineering as scikit-learn transformers.

The preprocessor lives inside every model pipeline, so the logged model takes raw columns and
inference and drift checks reuse exactly the fitted preprocessing.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from core.validation import DataSchema

MISSING = "__missing__"


def _category(value: object) -> str:
    """The category name of one value: 2.0 is "2" like 2, since one missing value turns an
    integer column into floats (and MLflow's signature widens integers to float)."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


class AsCategoryStrings(TransformerMixin, BaseEstimator):
    """Turn categorical columns of any type into strings, with missing values as one category.

    Integer codes (1, 2, 3) and text labels are both categories to the encoder; converting them
    here keeps the logged model's input schema in the user's own types.
    """

    def fit(self, X: pd.DataFrame, y: object = None) -> AsCategoryStrings:
        """Record the input columns."""
        frame = pd.DataFrame(X)
        self.feature_names_in_ = np.asarray(frame.columns, dtype=object)
        self.n_features_in_ = frame.shape[1]
        return self

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        """Return the values as strings; missing values become one category."""
        frame = pd.DataFrame(X)
        columns = []
        for _, values in frame.items():
            # Name each distinct value once; code -1 (missing) picks the last label.
            codes, uniques = pd.factorize(values)
            labels = np.array([_category(value) for value in uniques] + [MISSING], dtype=object)
            columns.append(labels[codes])
        return np.column_stack(columns) if columns else np.empty((len(frame), 0), dtype=object)

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        """Same names as the input."""
        return self.feature_names_in_


def build_preprocessor(schema: DataSchema) -> ColumnTransformer:
    """An unfitted ColumnTransformer: scaled numerics, one-hot categoricals."""
    numeric = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    categorical = Pipeline(
        [
            ("as_strings", AsCategoryStrings()),
            ("one_hot", OneHotEncoder(handle_unknown="ignore", min_frequency=5, sparse_output=False)),
        ]
    )
    return ColumnTransformer(
        [("numeric", numeric, schema.numeric), ("categorical", categorical, schema.categorical)],
        remainder="drop",
        verbose_feature_names_out=False,
    )
