"""Which version a promotion run considers: the ``version`` param, else the triggering asset events, else ``@challenger``.

The events are Airflow's own (``TriggeringAssetEventsAccessor`` of ``AssetEventDagRunReferenceResult``,
what a task's ``triggering_asset_events`` holds); the registry is a real MLflow SQLite store.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from airflow.sdk.exceptions import AirflowFailException
from airflow.sdk.execution_time.comms import AssetEventDagRunReferenceResult
from airflow.sdk.execution_time.context import TriggeringAssetEventsAccessor

from include.dag_ids import Stage, dag_id
from modelops.assets import challenger_asset
from modelops.promotion.tasks import _candidate_from_events, resolve_candidate


def _event(model: str, extra: dict, *, aliases: tuple[str, ...] = ()) -> AssetEventDagRunReferenceResult:
    asset = challenger_asset(model)
    return AssetEventDagRunReferenceResult(
        asset={"name": asset.name, "uri": asset.uri, "extra": {}}, extra=extra,
        source_task_id="register", source_dag_id=dag_id(Stage.TRAIN, model), source_run_id="manual__1", source_map_index=-1,
        source_aliases=[{"name": a} for a in aliases], timestamp=datetime(2026, 11, 22, tzinfo=UTC),
    )


def _events(*events: AssetEventDagRunReferenceResult) -> TriggeringAssetEventsAccessor:
    return TriggeringAssetEventsAccessor.build(events)


def test_no_events_name_no_candidate():
    assert _candidate_from_events(None) is None
    assert _candidate_from_events(_events()) is None


def test_one_event_names_its_version():
    assert _candidate_from_events(_events(_event("m", {"model": "m", "version": "3"}))) == "3"


def test_a_version_given_as_a_number_becomes_a_string():
    assert _candidate_from_events(_events(_event("m", {"version": 5}))) == "5"


def test_of_several_events_the_highest_version_wins_by_number_not_by_text():
    events = _events(*(_event("m", {"version": v}) for v in ("3", "11", "9")))
    assert _candidate_from_events(events) == "11"  # as text, "9" would win


def test_events_without_a_version_are_passed_over():
    events = _events(_event("m", {}), _event("m", {"version": "4"}), _event("m", {"version": None}),
                     _event("m", {"model": "m"}))
    assert _candidate_from_events(events) == "4"
    assert _candidate_from_events(_events(_event("m", {}), _event("m", {"version": ""}))) is None


def test_an_event_seen_through_an_alias_as_well_counts_once():
    events = _events(_event("m", {"version": "2"}, aliases=("new_models",)), _event("m", {"version": "7"}))
    assert len(events) == 2  # the asset and the alias
    assert _candidate_from_events(events) == "7"


@pytest.fixture
def registry(monkeypatch):
    """A registered model in the test session's MLflow store with versions 1 and 2, ``@challenger`` on 1."""
    from mlflow.tracking import MlflowClient

    from include import tracking

    client: MlflowClient = tracking.configure(tracking.tracking_uri())
    name = f"promo_{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    for _ in range(2):
        client.create_model_version(name, "file:///nowhere/model", run_id=None)
    return client, name


def _resolve(model: str, version: str | None = None, events=None) -> str:
    return resolve_candidate.function(model, version, triggering_asset_events=events)


def test_the_version_param_wins_over_the_events(registry):
    client, name = registry
    assert _resolve(name, "1", _events(_event(name, {"version": "2"}))) == "1"


def test_a_version_param_the_registry_does_not_know_fails_without_retry(registry):
    _client, name = registry
    with pytest.raises(AirflowFailException, match=f"{name} has no version 9"):
        _resolve(name, "9")


def test_without_a_param_the_events_name_the_candidate(registry):
    client, name = registry
    client.set_registered_model_alias(name, "challenger", "1")
    assert _resolve(name, None, _events(_event(name, {"version": "2"}))) == "2"


def test_events_without_a_version_fall_back_to_the_challenger(registry):
    client, name = registry
    client.set_registered_model_alias(name, "challenger", "2")
    assert _resolve(name, None, _events(_event(name, {}))) == "2"
    assert _resolve(name, None, None) == "2"


def test_no_param_no_version_in_events_and_no_challenger_fails_without_retry(registry):
    _client, name = registry
    with pytest.raises(AirflowFailException, match=f"{name} has no @challenger and no version was given"):
        _resolve(name, None, _events(_event(name, {})))
