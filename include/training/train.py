"""The training entrypoint, the same for every backend: ``python -m include.training.train``.

It runs as a local subprocess (embedded default) or as the command of a Kubernetes pod built from
the project's image. It reads the dataset, checks it is the data that was validated (fingerprint),
fits the configured scikit-learn estimator on the training split (calibrated when ``evidence.calibration``
asks: :func:`include.evaluation.calibration.fit_model`) and logs the model, with its
signature and an input example, into the MLflow run created by the validation step, with the
training features' drift reference profile under ``reference_profile/`` (:mod:`include.monitoring.reference_profile`). The
model URI is left as the run tag ``modelops.model_uri`` so any backend hands it over the same way.

Exit codes: 0 trained, 2 bad arguments or configuration, 3 the data changed since validation.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import TYPE_CHECKING

from include.config import ConfigError, ModelConfig, get_model_config, resolve_uri

if TYPE_CHECKING:
    import pandas as pd

# Heavy imports (pandas, sklearn, mlflow) stay inside functions: Airflow imports this module's
# command() while parsing DAG files.
log = logging.getLogger(__name__)

MODEL_URI_TAG = "modelops.model_uri"
EXIT_BAD_INPUT = 2
EXIT_DATA_CHANGED = 3
_SPLIT_BUCKETS = 1_000_000


class DataChangedError(RuntimeError):
    """The dataset's fingerprint differs from the one recorded at validation."""


def holdout_split(df: pd.DataFrame, config: ModelConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Deterministic train/holdout split by each row's content digest.

    Independent of row order and file layout (the same data always splits the same way), and
    identical rows always land on the same side, so duplicates cannot leak into the holdout.
    """
    import numpy as np

    from include.data.fingerprint import row_digests

    buckets = row_digests(df, config.dataset.column_types) % np.uint64(_SPLIT_BUCKETS)
    holdout = buckets < np.uint64(int(config.model.holdout_fraction * _SPLIT_BUCKETS))
    return df[~holdout], df[holdout]


def features_and_target(df: pd.DataFrame, config: ModelConfig) -> tuple[pd.DataFrame, pd.Series]:
    ds = config.dataset
    missing = [c for c in [*ds.feature_names, ds.target.name] if c not in df.columns]
    if missing:
        raise ValueError(f"dataset is missing column(s): {', '.join(missing)}")
    return df[ds.feature_names], df[ds.target.name]


def build_estimator(config: ModelConfig):
    """A scikit-learn Pipeline: scaling for numbers, one-hot for categories, then the configured estimator.

    Missing values score the same in scikit-learn, Triton and the batch job (their ONNX export):

    * a missing number (NaN, ``pd.NA``) goes to the estimator as NaN when it handles missing values itself
      (its ``allow_nan`` tag: RandomForest, ExtraTrees, HistGradientBoosting, decision trees); for any
      other estimator (LogisticRegression, GradientBoosting, SVC, ...) it is first replaced by the
      training median (``SimpleImputer``), which scikit-learn would otherwise refuse with "Input X contains NaN";
    * a missing category (None, NaN, or the empty string Triton's client sends for None) is the empty
      string, one category: seen in training it has its own one-hot column, otherwise it is unseen
      (all zeros, like any category training did not see).
    """
    import numpy as np
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    from sklearn.utils import get_tags

    module_name, _, class_name = config.model.estimator.rpartition(".")
    try:
        estimator_cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError):
        raise ConfigError(f"{config.name}: model.estimator: cannot import {config.model.estimator}") from None
    params = dict(config.model.params)
    try:
        defaults = estimator_cls().get_params()
    except TypeError:
        raise ConfigError(f"{config.name}: model.estimator: {config.model.estimator} is not an estimator class") from None
    if "random_state" in defaults and "random_state" not in params:
        params["random_state"] = config.model.random_state
    try:
        estimator = estimator_cls(**params)
    except TypeError as exc:
        raise ConfigError(f"{config.name}: model.params: {exc}") from None
    if not hasattr(estimator, "predict_proba"):
        raise ConfigError(f"{config.name}: model.estimator: {config.model.estimator} is not a probabilistic classifier")
    if hasattr(estimator, "_validate_params"):  # scikit-learn's own parameter constraints, before any data is read
        try:
            estimator._validate_params()
        except ValueError as exc:
            raise ConfigError(f"{config.name}: model.params: {exc}") from None

    numeric = [c.name for c in config.dataset.features if c.type in ("int", "float", "bool")]
    categorical = [c.name for c in config.dataset.features if c.type in ("category", "string")]
    unsupported = [c.name for c in config.dataset.features if c.type == "timestamp"]
    if unsupported:
        raise ConfigError(f"{config.name}: dataset.features: timestamp features are not supported: {unsupported}")
    numbers = [("scale", StandardScaler())]
    if not get_tags(estimator).input_tags.allow_nan:
        numbers.insert(0, ("impute", SimpleImputer(strategy="median", keep_empty_features=True)))
    # Two steps: SimpleImputer takes one missing-value marker, and pandas gives None or NaN.
    categories = [
        ("nan_missing", SimpleImputer(missing_values=np.nan, strategy="constant", fill_value="")),
        ("none_missing", SimpleImputer(missing_values=None, strategy="constant", fill_value="")),
        ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
    ]
    pre = ColumnTransformer(
        [
            ("numeric", Pipeline(numbers), numeric),
            ("categorical", Pipeline(categories), categorical),
        ]
    )
    return Pipeline([("preprocess", pre), ("estimator", estimator)])


def _pip_requirements() -> list[str]:
    """Exact pins of what the model needs at inference, read from this environment.

    Faster and more exact than MLflow's requirement inference, which imports the model in a subprocess.
    """
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in ("mlflow", "scikit-learn", "skops", "pandas", "numpy", "scipy")]


def sklearn_types_to_trust(model) -> list[str]:
    """Types the skops format must be told to load: scikit-learn's own internals, nothing else.

    MLflow stores sklearn models with skops, which refuses types it does not know. We trust the
    library we pinned, and ``numpy.dtype`` (a SimpleImputer keeps the dtype it was fitted on; skops
    stores it as its name), and refuse anything else that found its way into the fitted object.
    """
    import skops.io

    untrusted = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    foreign = [t for t in untrusted if not t.startswith("sklearn.") and t != "numpy.dtype"]
    if foreign:
        raise ValueError(f"fitted model contains types outside scikit-learn: {foreign}")
    return untrusted


def train(config: ModelConfig, dataset_uri: str, run_id: str, *, expected_fingerprint: str | None = None) -> str:
    """Fit and log the model into ``run_id``; returns the logged model's URI."""
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature

    from include.data.dataset import read_dataset
    from include.data.fingerprint import dataset_fingerprint
    from include.governance import lineage
    from include.monitoring import reference_profile

    df = read_dataset(dataset_uri, config.dataset.column_types)
    if expected_fingerprint:
        actual = dataset_fingerprint(df, config.dataset.column_types)
        if actual != expected_fingerprint:
            raise DataChangedError(
                f"dataset {dataset_uri} changed since validation: fingerprint {actual} != {expected_fingerprint}"
            )
    train_df, holdout_df = holdout_split(df, config)
    x_train, y_train = features_and_target(train_df, config)
    model = build_estimator(config)
    log.info("Training %s on %d rows (%d held out)", config.model.estimator, len(train_df), len(holdout_df))
    calibration: dict | None = None
    if config.evidence is None:
        model.fit(x_train, y_train)
    else:  # calibrated as evidence.calibration asks: include.evaluation.calibration
        from include.evaluation.calibration import fit_model

        model, calibration = fit_model(model, x_train, y_train, config.evidence.calibration, config.model.random_state)
        log.info("Calibration: %s", calibration["reason"])

    trusted = sklearn_types_to_trust(model)
    example = x_train.head(5)
    signature = infer_signature(example, model.predict_proba(example))
    # What hourly drift monitoring compares live inputs with: the training split's features.
    profile = reference_profile.build_profile(
        x_train, {c.name: c.type for c in config.dataset.features}, sample_rows=config.monitoring.report_sample_rows
    )
    with mlflow.start_run(run_id=run_id):
        reference_profile.log_profile(profile)
        mlflow.log_params({"estimator": config.model.estimator, **config.model.params})
        mlflow.log_metrics({"train_rows": len(train_df), "holdout_rows": len(holdout_df)})
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=signature,
            input_example=example,
            pyfunc_predict_fn="predict_proba",
            skops_trusted_types=trusted,
            pip_requirements=_pip_requirements(),
        )
        mlflow.set_tags({MODEL_URI_TAG: info.model_uri, **lineage.training_run_tags()})
        if calibration is not None:
            from include.evaluation.calibration import METHOD_TAG, OOF_ECE_METRIC

            mlflow.set_tag(METHOD_TAG, calibration["method"])
            if "oof_ece" in calibration:
                mlflow.log_metric(OOF_ECE_METRIC, calibration["oof_ece"])
    log.info("Logged model %s to run %s", info.model_uri, run_id)
    return info.model_uri


def command(model: str, dataset_uri: str, run_id: str, expected_fingerprint: str | None) -> list[str]:
    """The entrypoint's arguments, shared by the local and the Kubernetes backends."""
    args = ["--model", model, "--dataset-uri", dataset_uri, "--run-id", run_id]
    return args + (["--expected-fingerprint", expected_fingerprint] if expected_fingerprint else [])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m include.training.train", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="model name (config/models/<name>.yaml)")
    parser.add_argument("--dataset-uri", required=True)
    parser.add_argument("--run-id", required=True, help="MLflow run to log into")
    parser.add_argument("--expected-fingerprint", help="refuse to train if the data's fingerprint differs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from include import tracking

    tracking.configure()
    try:
        config = get_model_config(args.model)
        train(config, resolve_uri(args.dataset_uri), args.run_id, expected_fingerprint=args.expected_fingerprint)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        log.error("%s", exc)
        return EXIT_BAD_INPUT
    except DataChangedError as exc:
        log.error("%s", exc)
        return EXIT_DATA_CHANGED
    return 0


if __name__ == "__main__":
    sys.exit(main())
