"""Task functions of the batch-scoring DAG: pin ``@champion`` to a version, then score the day with Spark."""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import task
from airflow.sdk.exceptions import AirflowFailException

from include.config import get_model_config
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
    from include.batch.scoring import score_date

    client = MlflowHook().client  # also points mlflow (and so Spark's UDF) at the configured tracking server
    stats = score_date(get_model_config(model), version, context["data_interval_start"].strftime("%Y-%m-%d"))
    # Which scorer ran (the ONNX export, or the spark_udf fallback): in the task's result and on the version.
    client.set_model_version_tag(model, version, SCORER_TAG, stats["scorer"])
    return stats
