"""Tests for include.training.staleness: the champion's data age, stale or not, and the retraining proposal,
against a real SQLite MLflow store and a real audit ledger.

The data is generated with a known newest event (``applied_at``), so each age is a known number of days.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from include import tracking
from include.config import ModelConfig, load_model_config
from include.data.dataset import write_dataset
from include.data.fingerprint import dataset_fingerprint
from include.demo.datagen import generate_batch
from include.governance import lineage
from include.governance.ledger import Ledger
from include.monitoring.alerts import slack_message
from include.training import staleness

ROOT = Path(__file__).resolve().parents[3]
CFG = load_model_config(ROOT / "config" / "models" / "credit_approval.yaml")
AS_OF = datetime(2026, 6, 1, tzinfo=UTC)
TRAINED_NEWEST = pd.Timestamp("2026-04-15T00:00:00Z")  # 47 days before AS_OF
LATEST_NEWEST = pd.Timestamp("2026-05-30T00:00:00Z")
RUN_STARTED = datetime(2026, 2, 1, tzinfo=UTC)  # 120 days before AS_OF
COMMIT = "test-commit-staleness"


def _batch(newest: pd.Timestamp, seed: int) -> pd.DataFrame:
    """A small valid batch whose newest ``applied_at`` is ``newest`` (the others are a month before it)."""
    df = generate_batch(60, seed=seed, start=newest - pd.Timedelta(days=31), hours=24 * 30)
    df.loc[df.index[-1], "applied_at"] = newest
    return df


def _write(df: pd.DataFrame, path: Path) -> tuple[str, str]:
    write_dataset(df, str(path))
    return str(path), dataset_fingerprint(df, CFG.dataset.column_types)


def _config(name: str, latest_uri: str, max_age_days: float | None) -> ModelConfig:
    return CFG.model_copy(update={
        "name": name,
        "dataset": CFG.dataset.model_copy(update={"uri": latest_uri}),
        "training": CFG.training.model_copy(update={"max_age_days": max_age_days}),
    })


def _register(client: MlflowClient, name: str, tmp_path: Path, *, dataset_uri: str | None, fingerprint: str | None,
              run_started: datetime | None = RUN_STARTED, champion: bool = True, extra_tags: dict | None = None) -> str:
    """A version of ``name`` trained (as its tags say) on ``dataset_uri``, its run started at ``run_started``."""
    from include.promotion.registry import ensure_registered_model

    ensure_registered_model(client, name)
    run_id = None
    if run_started is not None:
        experiment = tracking.ensure_experiment(client, f"staleness/{name}")
        run_id = client.create_run(experiment, start_time=int(run_started.timestamp() * 1000)).info.run_id
    source = tmp_path / f"model-{name}"
    source.mkdir(exist_ok=True)
    tags = {k: v for k, v in {"dataset_uri": dataset_uri, "data_fingerprint": fingerprint}.items() if v}
    version = client.create_model_version(name, str(source), run_id=run_id, tags={**tags, **(extra_tags or {})})
    if champion:
        client.set_registered_model_alias(name, "champion", version.version)
    return str(version.version)


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")


@pytest.fixture
def scene(client, tmp_path, request):
    """A champion trained on data whose newest event is TRAINED_NEWEST (still at its path), and newer latest data."""
    name = f"stale_{request.node.name.split('[')[0].removeprefix('test_')[:40]}"
    trained_uri, trained_fp = _write(_batch(TRAINED_NEWEST, seed=1), tmp_path / "trained.parquet")
    latest_uri, latest_fp = _write(_batch(LATEST_NEWEST, seed=2), tmp_path / "latest.parquet")
    version = _register(client, name, tmp_path, dataset_uri=trained_uri, fingerprint=trained_fp)
    return {"name": name, "version": version, "trained_uri": trained_uri, "trained_fp": trained_fp,
            "latest_uri": latest_uri, "latest_fp": latest_fp, "tmp": tmp_path}


# --- the age --------------------------------------------------------------------------------------------


def test_the_age_is_counted_from_the_newest_event_of_the_unchanged_training_data(client, scene):
    config = _config(scene["name"], scene["latest_uri"], 30)
    version = client.get_model_version(scene["name"], scene["version"])

    age = staleness.data_age(client, config, version, as_of=AS_OF)

    assert age.source == staleness.SOURCE_DATA
    assert age.since == TRAINED_NEWEST.to_pydatetime()
    assert age.age_days == pytest.approx(47.0)


def test_a_snapshot_overwritten_since_training_falls_back_to_the_training_runs_start(client, scene):
    config = _config(scene["name"], scene["latest_uri"], 30)
    # the feature pipeline wrote newer data where the champion's data was: its newest event says nothing
    _write(_batch(LATEST_NEWEST, seed=3), Path(scene["trained_uri"]))
    version = client.get_model_version(scene["name"], scene["version"])

    age = staleness.data_age(client, config, version, as_of=AS_OF)

    assert age.source == staleness.SOURCE_TRAINING_RUN
    assert age.since == RUN_STARTED
    assert age.age_days == pytest.approx(120.0)
    assert "now holds other data" in age.note


def test_missing_training_data_falls_back_to_the_training_runs_start(client, scene):
    Path(scene["trained_uri"]).unlink()
    version = client.get_model_version(scene["name"], scene["version"])

    age = staleness.data_age(client, _config(scene["name"], scene["latest_uri"], 30), version, as_of=AS_OF)

    assert (age.source, age.age_days) == (staleness.SOURCE_TRAINING_RUN, pytest.approx(120.0))
    assert "cannot be read" in age.note


def test_a_version_without_tags_or_run_counts_from_its_registration(client, tmp_path):
    name = "stale_untagged"
    number = _register(client, name, tmp_path, dataset_uri=None, fingerprint=None, run_started=None)
    version = client.get_model_version(name, number)
    registered = datetime.fromtimestamp(version.creation_timestamp / 1000, tz=UTC)

    age = staleness.data_age(client, _config(name, str(tmp_path / "none.parquet"), 30), version,
                             as_of=registered + timedelta(days=10))

    assert (age.source, age.since, age.age_days) == (staleness.SOURCE_REGISTERED, registered, pytest.approx(10.0))


# --- stale or not ----------------------------------------------------------------------------------------


def test_a_champion_trained_on_old_data_is_stale_and_a_retraining_on_the_latest_data_is_proposed(client, scene, ledger):
    config = _config(scene["name"], scene["latest_uri"], 30)

    decision = staleness.assess(client, config, as_of=AS_OF, ledger=ledger, commit=COMMIT)

    assert (decision.champion, decision.stale, decision.propose) == (scene["version"], True, True)
    assert "47.0 days old" in decision.reason and "max_age_days=30" in decision.reason
    assert decision.latest.fingerprint == scene["latest_fp"]
    assert decision.latest.newest_event == LATEST_NEWEST.to_pydatetime()
    proposal = decision.proposal
    assert proposal["dag_id"] == f"train_{scene['name']}"
    assert proposal["run_id"] == f"freshness__2026-06-01__v{scene['version']}"
    assert proposal["conf"]["dataset_uri"] == scene["latest_uri"]
    assert "force" not in proposal["conf"]  # the training's own skip and the promotion's gates still apply
    assert proposal["conf"]["alert"]["source"] == "freshness"
    assert ledger.records(model=scene["name"]) == []  # deciding writes nothing


def test_a_champion_trained_on_recent_data_is_not_stale(client, scene, ledger):
    decision = staleness.assess(client, _config(scene["name"], scene["latest_uri"], 60), as_of=AS_OF, ledger=ledger)

    assert (decision.stale, decision.propose, decision.proposal) == (False, False, None)
    assert "within training.max_age_days=60" in decision.reason


def test_without_max_age_days_nothing_is_ever_stale(client, scene, ledger):
    decision = staleness.assess(client, _config(scene["name"], scene["latest_uri"], None),
                                as_of=AS_OF + timedelta(days=3650), ledger=ledger)

    assert (decision.stale, decision.propose) == (False, False)
    assert decision.age.age_days > 3650 and "never stale" in decision.reason


def test_no_champion_means_nothing_to_judge(client, tmp_path, ledger):
    name = "stale_no_champion"
    uri, fp = _write(_batch(TRAINED_NEWEST, seed=1), tmp_path / "d.parquet")
    _register(client, name, tmp_path, dataset_uri=uri, fingerprint=fp, champion=False)

    decision = staleness.assess(client, _config(name, uri, 1), as_of=AS_OF, ledger=ledger)

    assert (decision.champion, decision.age, decision.stale, decision.propose) == (None, None, False, False)


# --- when nothing is proposed ------------------------------------------------------------------------------


def test_no_proposal_when_the_latest_data_is_the_champions_own(client, scene, ledger):
    decision = staleness.assess(client, _config(scene["name"], scene["trained_uri"], 30), as_of=AS_OF, ledger=ledger)

    assert (decision.stale, decision.propose) == (True, False)
    assert "delivered nothing newer" in decision.why_not


def test_no_proposal_when_the_latest_data_cannot_be_read(client, scene, ledger):
    missing = str(scene["tmp"] / "no-such-snapshot.parquet")

    decision = staleness.assess(client, _config(scene["name"], missing, 30), as_of=AS_OF, ledger=ledger)

    assert (decision.stale, decision.propose) == (True, False)
    assert "cannot be read" in decision.why_not and "FileNotFoundError" in decision.why_not


def test_no_proposal_when_a_version_was_already_trained_on_the_latest_data(client, scene, ledger):
    config = _config(scene["name"], scene["latest_uri"], 30)
    key = lineage.model_idempotency_key(config, data_fingerprint=scene["latest_fp"], commit=COMMIT)
    rejected = _register(client, scene["name"], scene["tmp"], dataset_uri=scene["latest_uri"],
                         fingerprint=scene["latest_fp"], champion=False, extra_tags={"idempotency_key": key})

    decision = staleness.assess(client, config, as_of=AS_OF, ledger=ledger, commit=COMMIT)

    assert (decision.stale, decision.propose) == (True, False)
    assert decision.why_not.startswith(f"version {rejected} was already trained on the latest data")


# --- the proposal: once a day, then a cooldown ----------------------------------------------------------------


def test_one_stale_day_proposes_once(client, scene, ledger):
    config = _config(scene["name"], scene["latest_uri"], 30)
    decision = staleness.assess(client, config, as_of=AS_OF, ledger=ledger, commit=COMMIT)
    first = staleness.record_proposal(client, decision, actor="scheduler", dag_id="freshness_x", run_id="r1",
                                      ledger=ledger)

    # the same day again (a retry, a manual run): the same proposal, the ledger does not grow
    again = staleness.assess(client, config, as_of=AS_OF + timedelta(hours=9), ledger=ledger, commit=COMMIT)
    assert again.propose and again.proposal["run_id"] == decision.proposal["run_id"]
    second = staleness.record_proposal(client, again, actor="user", dag_id="freshness_x", run_id="manual-1",
                                       ledger=ledger)
    assert second["seq"] == first["seq"]
    (stored,) = ledger.records(model=scene["name"], actions=[staleness.RETRAIN_PROPOSED])
    assert (stored.version, stored.run_id) == (scene["version"], "r1")
    assert stored.details["run_id"] == f"freshness__2026-06-01__v{scene['version']}"
    assert stored.details["conf"]["dataset_uri"] == scene["latest_uri"]
    # the record is also on the champion version in the registry
    tags = client.get_model_version(scene["name"], scene["version"]).tags
    assert [k for k in tags if k.endswith(".retrain_proposed")]


def test_the_next_days_wait_for_a_running_proposal_and_the_cooldown(client, scene, ledger):
    config = _config(scene["name"], scene["latest_uri"], 30)
    first = staleness.assess(client, config, as_of=AS_OF, ledger=ledger, commit=COMMIT)
    staleness.record_proposal(client, first, actor="scheduler", dag_id="freshness_x", run_id="r1", ledger=ledger)
    proposed_run = first.proposal["run_id"]
    asked: list[str] = []

    def running(run_id: str) -> bool:
        asked.append(run_id)
        return True

    busy = staleness.assess(client, config, as_of=AS_OF + timedelta(days=1), ledger=ledger, commit=COMMIT,
                            run_active=running)
    assert (busy.stale, busy.propose) == (True, False)
    assert asked == [proposed_run] and "still queued or running" in busy.why_not

    cooling = staleness.assess(client, config, as_of=AS_OF + timedelta(days=6), ledger=ledger, commit=COMMIT,
                               run_active=lambda run_id: False)
    assert cooling.propose is False and "waits 7 days" in cooling.why_not

    after = staleness.assess(client, config, as_of=AS_OF + timedelta(days=7), ledger=ledger, commit=COMMIT,
                             run_active=lambda run_id: False)
    assert after.propose and after.proposal["run_id"] == f"freshness__2026-06-08__v{scene['version']}"


def test_a_decision_without_a_proposal_cannot_be_recorded_as_one(client, scene, ledger):
    fresh = staleness.assess(client, _config(scene["name"], scene["latest_uri"], 60), as_of=AS_OF, ledger=ledger)

    with pytest.raises(ValueError, match="proposes nothing"):
        staleness.record_proposal(client, fresh, actor="scheduler", dag_id="d", run_id="r", ledger=ledger)
    assert ledger.records() == []


# --- the warning -----------------------------------------------------------------------------------------------


def test_the_warning_names_the_age_the_threshold_and_what_was_done_and_is_recorded_once_a_day(client, scene, ledger):
    decision = staleness.assess(client, _config(scene["name"], scene["latest_uri"], 30), as_of=AS_OF,
                                ledger=ledger, commit=COMMIT).as_dict()
    actions = ["retraining proposed: train_x run freshness__2026-06-01__v1"]

    alert = staleness.stale_alert(decision, actions=actions, links={"Airflow run": "http://airflow/x"})

    assert (alert.level, alert.model, alert.version) == ("warning", scene["name"], scene["version"])
    (finding,) = alert.findings
    assert (finding.name, finding.value, finding.threshold) == ("data_age", pytest.approx(47.0), 30.0)
    assert alert.actions == tuple(actions)
    assert "stale champion: training data 47 days old" in slack_message(alert)["text"]

    assert staleness.warned_today(decision, ledger=ledger) is None
    first = staleness.record_warning(client, decision, actions, actor="scheduler", dag_id="d", run_id="r1",
                                     ledger=ledger)
    again = staleness.record_warning(client, decision, actions, actor="scheduler", dag_id="d", run_id="r2",
                                     ledger=ledger)
    assert again["seq"] == first["seq"]
    assert staleness.warned_today(decision, ledger=ledger)["seq"] == first["seq"]
    tomorrow = {**decision, "as_of": (AS_OF + timedelta(days=1)).isoformat()}
    assert staleness.warned_today(tomorrow, ledger=ledger) is None


# --- the setting ----------------------------------------------------------------------------------------------


def test_max_age_days_comes_from_the_config_and_its_environment_variable(monkeypatch, tmp_path):
    from include.config import ConfigError

    source = ROOT / "config" / "models" / "credit_approval.yaml"
    monkeypatch.delenv("MODELOPS_MAX_AGE_DAYS", raising=False)
    assert load_model_config(source).training.max_age_days == 90.0
    monkeypatch.setenv("MODELOPS_MAX_AGE_DAYS", "14.5")
    assert load_model_config(source).training.max_age_days == 14.5
    monkeypatch.setenv("MODELOPS_MAX_AGE_DAYS", "0")
    with pytest.raises(ConfigError, match=r"training\.max_age_days"):
        load_model_config(source)
    shutil.copytree(ROOT / "config", tmp_path / "config")
    unset = tmp_path / "config" / "models" / "credit_approval.yaml"
    unset.write_text(source.read_text().replace("  max_age_days: ${MODELOPS_MAX_AGE_DAYS:-90}", "  # no limit"))
    assert load_model_config(unset).training.max_age_days is None
