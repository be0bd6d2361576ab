"""Assets that link the lifecycle DAGs: a new challenger triggers promotion, a new champion deployment."""

from __future__ import annotations

from airflow.sdk import Asset


def challenger_asset(model: str) -> Asset:
    return Asset(name=f"{model}.challenger", uri=f"mlflow-model://{model}/challenger", group="model")


def champion_asset(model: str) -> Asset:
    return Asset(name=f"{model}.champion", uri=f"mlflow-model://{model}/champion", group="model")
