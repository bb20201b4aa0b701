"""The model's input: the spec's features typed from the contract, and the preprocessing pipeline around the
spec's estimator. scikit-learn and pandas are imported when called."""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airloop.core.errors import ConfigError
from airloop.core.spec import ModelSpec, TrainingSpec

if TYPE_CHECKING:
    import pandas as pd
    from sklearn.pipeline import Pipeline

#: The contract types fed to the model as numbers.
NUMERIC_TYPES = ("integer", "number", "boolean")


def training_spec(spec: ModelSpec) -> TrainingSpec:
    """The spec's training section; raises if it has none."""
    if spec.training is None:
        raise ConfigError(f"{spec.name}: the spec has no 'training' section")
    return spec.training


def feature_frame(frame: pd.DataFrame, spec: ModelSpec, names: Sequence[str] | None = None) -> pd.DataFrame:
    """The model's input: ``names`` (default: the spec's features) typed from the contract.

    Numbers (and booleans) become float64 and strings object columns with NaN for missing values, whatever
    the warehouse driver returned, so training, the logged signature and scoring all see the same types.
    """
    import numpy as np
    import pandas as pd

    columns = {}
    for name in names if names is not None else spec.features:
        kind = spec.contract.column(name).type
        if kind in NUMERIC_TYPES:
            columns[name] = pd.to_numeric(frame[name], errors="coerce").astype("float64")
        else:
            columns[name] = frame[name].astype(object).where(frame[name].notna(), np.nan)
    return pd.DataFrame(columns, index=frame.index)


def model_input(frame: pd.DataFrame, spec: ModelSpec, pipeline: Any) -> pd.DataFrame:
    """The features a fitted ``pipeline`` was trained with, from ``frame`` (a version trained on an older spec
    keeps its own features)."""
    return feature_frame(frame, spec, list(pipeline.feature_names_in_))


def feature_kinds(spec: ModelSpec) -> tuple[list[str], list[str]]:
    """The spec's features split into numeric and categorical (string) ones, in spec order."""
    numeric, categorical = [], []
    for name in spec.features:
        kind = spec.contract.column(name).type
        if kind in NUMERIC_TYPES:
            numeric.append(name)
        elif kind == "string":
            categorical.append(name)
        else:
            raise ConfigError(
                f"{spec.name}: feature {name!r} is a {kind}; derive numeric features from it (e.g. hour, month)"
            )
    return numeric, categorical


def build_pipeline(spec: ModelSpec, params: Mapping[str, Any] | None = None) -> Pipeline:
    """Preprocessing + the spec's estimator with ``training.params`` updated by ``params``.

    Numeric features: median imputation. String features: when the estimator handles categories natively
    (it has a ``categorical_features`` parameter, like HistGradientBoosting), ordinal codes flagged as
    categorical: one column per feature, splits on category sets, unseen categories coded -1, which it treats
    as missing. Any other estimator gets one-hot columns, since ordinal codes would impose a false order, and
    standardised numbers, since linear and distance-based models are sensitive to scale.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    training = training_spec(spec)
    estimator_class = estimator_class_of(training.estimator)
    numeric, categorical = feature_kinds(spec)
    estimator_params = {**training.params, **(params or {})}
    # keep_empty_features: a feature missing on every training row must not shift the columns.
    numbers: Any = SimpleImputer(strategy="median", keep_empty_features=True)
    if native_categories(estimator_class):
        # HistGradientBoosting accepts at most max_bins categories per feature: rarer ones share a code.
        max_categories = int(estimator_params.get("max_bins") or 255)
        encoder: Any = OrdinalEncoder(
            handle_unknown="use_encoded_value", unknown_value=-1, max_categories=max_categories
        )
        # The ColumnTransformer emits the numeric block first, then the categorical one.
        estimator_params["categorical_features"] = [False] * len(numeric) + [True] * len(categorical)
    else:
        encoder = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
        numbers = make_pipeline(numbers, StandardScaler())
    preprocess = ColumnTransformer(
        [("numeric", numbers, numeric), ("categorical", encoder, categorical)],
        verbose_feature_names_out=False,
    )
    return Pipeline([("preprocess", preprocess), ("model", estimator_class(**estimator_params))])


def estimator_class_of(path: str) -> type:
    """The estimator class a spec names by its import path."""
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"training.estimator {path!r} cannot be imported: {exc}") from exc


def native_categories(estimator_class: type) -> bool:
    """Whether the estimator splits on categories itself (it takes ``categorical_features``)."""
    return "categorical_features" in estimator_class().get_params()
