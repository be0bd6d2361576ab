"""Task functions of the batch-scoring DAG: pin ``@champion`` to a version, then score the day with Spark."""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import task
from airflow.sdk.exceptions import AirflowFailException

from include.config import get_model_config, resolve_uri
from modelops.mlflow_hook import MlflowHook

log = logging.getLogger(__name__)

SCORER_TAG = "batch.scorer"


@task
def pin_champion(model: str) -> str:
    """``@champion`` resolved once, at the start: a promotion during the run cannot mix two versions."""
    from include.promotion.registry import CHAMPION, alias_version

    champion = alias_version(MlflowHook().client, model, CHAMPION)
    if champion is None:
        raise AirflowFailException(f"{model} has no @{CHAMPION} to score with")
    log.info("Scoring with %s version %s for the whole run", model, champion.version)
    return str(champion.version)


@task
def score(model: str, version: str, **context: Any) -> dict:
    """Score the rows of the run's day (its data interval's start, UTC) and overwrite that day's partitions.

    The version's ONNX export scores when it converts with parity, else ``mlflow.pyfunc.spark_udf``; the
    version's ``batch.scorer`` tag says which one the last run used.
    """
    from include.batch.scoring import model_version_uri, score_partition

    config = get_model_config(model)
    batch = config.batch
    client = MlflowHook().client  # also points mlflow (and so Spark's UDF) at the configured tracking server
    day = context["data_interval_start"].strftime("%Y-%m-%d")
    stats = score_partition(
        model_uri=model_version_uri(model, version),
        model_version=version,
        model_name=model,
        input_uri=resolve_uri(batch.input_uri),
        output_uri=resolve_uri(batch.output_uri),
        date=day,
        feature_columns=config.dataset.feature_names,
        id_column=config.dataset.id_column,
        timestamp_column=config.dataset.timestamp_column,
        spark_conf=batch.spark_conf,
        master=batch.spark_master,
        model_config=config,
    )
    # Which scorer ran (the ONNX export, or the spark_udf fallback): in the task's result and on the version.
    client.set_model_version_tag(model, version, SCORER_TAG, stats["scorer"])
    return stats
