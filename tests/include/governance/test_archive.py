"""Tests for include.governance.archive: collect → upload → verify → restore against a real SQLite MLflow store.

The version archived is made by the project's own training steps (validation, fingerprint, training,
evaluation), so its run carries the validation result and reference profile where production leaves them.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from include import tracking
from include.config import get_model_config
from include.data import checks, validation
from include.data.dataset import write_dataset
from include.demo.datagen import generate_batch
from include.governance import archive
from include.governance.archive import ArchiveError, LocalArchiveStore, Manifest
from include.monitoring import reference_profile
from include.promotion import registry
from include.training.evaluate import evaluate_run
from include.training.train import train
from tests.fakes.archive_store import FaultyStore

CONFIG = get_model_config("credit_approval")
AS_OF = datetime(2026, 11, 30, 12, tzinfo=UTC)
EXTRA = {"ledger.jsonl": b'{"action": "retire", "version": "1"}\n', "evidence.zip": b"PK\x05\x06" + bytes(18)}


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, pd.DataFrame]:
    frame = generate_batch(1200, seed=11, start="2026-10-01T00:00:00Z", hours=24 * 30)
    uri = str(tmp_path_factory.mktemp("archive-data") / "train.parquet")
    write_dataset(frame, uri)
    return uri, frame


@pytest.fixture(scope="module")
def trained(client: MlflowClient, batch: tuple[str, pd.DataFrame]) -> str:
    """A training run made as the training DAG makes one: validate, fingerprint, train, evaluate."""
    uri, _ = batch
    run_id = tracking.upsert_run(client, CONFIG.experiment_name, {"airflow.dag_id": "train_credit_approval",
                                                                  "airflow.run_id": "manual__archive"}, "archive")
    checks.validate(client, CONFIG, uri, run_id, as_of=AS_OF)
    fingerprint = checks.fingerprint(client, CONFIG, uri, run_id)
    train(CONFIG, uri, run_id, expected_fingerprint=fingerprint["data_fingerprint"])
    evaluate_run(client, CONFIG, uri, run_id)
    client.log_metric(run_id, "train_loss", 0.9, step=0)  # a metric with a history
    client.log_metric(run_id, "train_loss", 0.5, step=1)
    tracking.close_run(client, run_id, "FINISHED", "trained")
    return run_id


def _register(client: MlflowClient, name: str, run_id: str) -> str:
    """A version with the tags and records a retired version has: lineage, audit, serving and retirement tags."""
    model_uri = client.get_run(run_id).data.tags["modelops.model_uri"]
    version = registry.register_challenger(
        client, name=name, description="credit model", model_uri=model_uri, run_id=run_id,
        tags={"data_fingerprint": "sha256:abc", "compliance.pii": "none"}, actor="tester",
    )
    v = str(version.version)
    client.update_model_version(name, v, description="the version under audit")
    client.set_model_version_tag(name, v, "gates.result", "passed")
    client.set_model_version_tag(name, v, "serving.triton", "unloaded")
    client.set_model_version_tag(name, v, "retired", "true")
    client.set_model_version_tag(name, v, "retirement.reason", "superseded")
    return v


def _store(tmp_path: Path) -> LocalArchiveStore:
    return LocalArchiveStore(tmp_path / "archive")


def _collected(client: MlflowClient, name: str, run_id: str, tmp_path: Path) -> tuple[str, Path]:
    version = _register(client, name, run_id)
    workdir = tmp_path / "collected"
    archive.collect(client, name, version, workdir, extra=EXTRA)
    return version, workdir


def test_the_constants_name_where_the_project_stores_validation_and_profile() -> None:
    assert archive.VALIDATION_RESULT == f"validation/{validation.RESULT_FILE}"
    assert archive.REFERENCE_PROFILE == f"{reference_profile.PROFILE_ARTIFACT}/{reference_profile.PROFILE_FILE}"


def test_collect_gathers_model_run_records_and_extra_files_then_the_manifest(client, trained, name, tmp_path) -> None:
    version = _register(client, name, trained)
    workdir = tmp_path / "collected"

    written = archive.collect(client, name, version, workdir, extra=EXTRA)

    assert written[-1] == workdir / "manifest.json"
    manifest = archive.read_manifest(workdir)
    assert (manifest.model, manifest.version, manifest.format_version) == (name, version, 1)
    assert datetime.strptime(manifest.created_at, "%Y-%m-%dT%H:%M:%S.%fZ") <= datetime.now(UTC).replace(tzinfo=None)
    on_disk = sorted(p.relative_to(workdir).as_posix() for p in workdir.rglob("*") if p.is_file())
    assert [f.path for f in manifest.files] == [p for p in on_disk if p != "manifest.json"]
    assert sorted(str(p.relative_to(workdir)) for p in written[:-1]) == [f.path for f in manifest.files]
    for item in manifest.files:
        assert item.size == (workdir / item.path).stat().st_size
        assert item.sha256 == archive.file_sha256(workdir / item.path)
    assert manifest.absent == ()
    paths = {f.path for f in manifest.files}
    assert {"model/MLmodel", "version.json", "logged_model.json", "run/info.json", "run/params.json",
            "run/metrics.json", "run/tags.json", "run/artifacts/validation/validation_result.json",
            "run/artifacts/reference_profile/profile.json", "run/artifacts/reference_profile/numeric.parquet",
            "extra/ledger.jsonl", "extra/evidence.zip"} <= paths
    assert (workdir / "extra/evidence.zip").read_bytes() == EXTRA["evidence.zip"]
    record = json.loads((workdir / "version.json").read_text())
    assert (record["name"], record["version"], record["run_id"]) == (name, version, trained)
    assert record["description"] == "the version under audit"
    assert record["tags"]["retired"] == "true" and record["aliases"] == ["challenger"]
    assert any(k.startswith("audit.") for k in record["tags"])
    run = client.get_run(trained)
    assert json.loads((workdir / "run/params.json").read_text()) == run.data.params
    assert json.loads((workdir / "run/tags.json").read_text())["validation.status"] == "passed"
    metrics = json.loads((workdir / "run/metrics.json").read_text())
    assert set(metrics) == set(run.data.metrics)
    assert [p["value"] for p in metrics["train_loss"]] == [0.9, 0.5]
    info = json.loads((workdir / "run/info.json").read_text())
    assert info["experiment_name"] == CONFIG.experiment_name
    assert info["dataset_inputs"][0]["tags"] == {"mlflow.data.context": "training"}
    result = json.loads((workdir / "run/artifacts/validation/validation_result.json").read_text())
    assert result["success"] is True


def test_collect_lists_what_the_version_lacks_and_refuses_a_used_folder(client, runs, name, tmp_path) -> None:
    run_id, model_uri = runs[0]  # a bare run: a model, no validation result, no reference profile
    registry.register_challenger(client, name=name, description="", model_uri=model_uri, run_id=run_id, tags={},
                                 actor="tester")
    archive.collect(client, name, "1", tmp_path / "a")

    absent = archive.read_manifest(tmp_path / "a").absent
    assert len(absent) == 2
    assert absent[0].startswith("validation result") and "validation/validation_result.json" in absent[0]
    assert absent[1].startswith("drift reference profile")
    with pytest.raises(ArchiveError, match="must be empty"):
        archive.collect(client, name, "1", tmp_path / "a")
    with pytest.raises(ArchiveError, match="no version|cannot be read"):
        archive.collect(client, name, "99", tmp_path / "b")


def test_an_interrupted_collection_has_no_manifest_and_is_not_uploaded(client, runs, name, tmp_path) -> None:
    run_id, model_uri = runs[0]
    registry.register_challenger(client, name=name, description="", model_uri=model_uri, run_id=run_id, tags={},
                                 actor="tester")
    workdir = tmp_path / "collected"
    with pytest.raises(ArchiveError, match="invalid archive key"):  # fails after the model and run were written
        archive.collect(client, name, "1", workdir, extra={"../escape": b"x"})

    assert (workdir / "model" / "MLmodel").is_file()
    assert not (workdir / "manifest.json").exists()
    with pytest.raises(ArchiveError, match="no manifest.json: the collection is incomplete"):
        archive.upload(_store(tmp_path), archive.archive_prefix(name, "1"), workdir)
    assert not (tmp_path / "archive").exists()


def test_round_trip_restores_a_new_version_that_predicts_the_same(client, trained, batch, name, tmp_path) -> None:
    version, workdir = _collected(client, name, trained, tmp_path)
    store = _store(tmp_path)
    prefix = archive.archive_prefix(name, version)

    uploaded = archive.upload(store, prefix, workdir)
    checked = archive.verify(store, prefix, expected=uploaded)
    restored = archive.restore(client, store, prefix, name)

    assert checked == uploaded == archive.read_manifest(workdir)
    assert (store.root / name / version / "manifest.json").read_bytes() == (workdir / "manifest.json").read_bytes()
    assert uploaded.sha256 == archive.file_sha256(store.root / name / version / "manifest.json")
    # A new version of the model, in a new run of the model's experiment.
    assert int(restored.version) == int(version) + 1
    assert restored.aliases == []
    run = client.get_run(restored.run_id)
    assert run.info.run_id != trained
    assert client.get_experiment(run.info.experiment_id).name == f"modelops/{name}"
    assert run.info.status == "FINISHED"
    original = client.get_run(trained)
    assert run.data.params == original.data.params
    assert run.data.metrics == original.data.metrics
    assert [m.value for m in client.get_metric_history(restored.run_id, "train_loss")] == [0.9, 0.5]
    assert run.data.tags["restored.run_id"] == trained
    assert run.data.tags["data_fingerprint"] == original.data.tags["data_fingerprint"]
    assert "airflow.run_id" not in run.data.tags  # the training DAG must never find this run as its own
    # Tags: the original's, but its life (audit records, serving state, retirement), plus where it came from.
    tags = restored.tags
    assert tags["restored_from"] == f"{name}/{version}"
    assert tags["restored_archive"] == f"{store.uri}/{prefix}"
    assert (tags["data_fingerprint"], tags["compliance.pii"], tags["gates.result"]) == ("sha256:abc", "none", "passed")
    assert not [k for k in tags if k.startswith(("audit.", "retire", "serving."))]
    assert restored.description == "the version under audit"
    # The run's artifacts came back where monitoring reads them.
    profile = reference_profile.load_profile(client, restored.run_id)
    assert profile.features == [c.name for c in CONFIG.dataset.features]
    listed = {a.path for a in client.list_artifacts(restored.run_id, "restored_archive")}
    assert {"restored_archive/manifest.json", "restored_archive/version.json", "restored_archive/extra"} <= listed
    # The restored model predicts exactly what the original did.
    _, frame = batch
    features = frame[[c.name for c in CONFIG.dataset.features]].head(200)
    before = mlflow.pyfunc.load_model(f"models:/{name}/{version}").predict(features)
    after = mlflow.pyfunc.load_model(f"models:/{name}/{restored.version}").predict(features)
    np.testing.assert_array_equal(np.asarray(after), np.asarray(before))
    # Restoring again is a retry: the same version, no new one.
    assert archive.restore(client, store, prefix, name).version == restored.version
    assert len(client.search_model_versions(f"name = '{name}'")) == 2


def test_verify_names_a_tampered_file_and_restore_refuses_it(client, trained, name, tmp_path) -> None:
    version, workdir = _collected(client, name, trained, tmp_path)
    store = _store(tmp_path)
    prefix = archive.archive_prefix(name, version)
    manifest = archive.upload(store, prefix, workdir)
    target = next(f for f in manifest.files if f.path.startswith("model/model."))
    stored = store.path(f"{prefix}/{target.path}")
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF
    stored.write_bytes(bytes(data))

    with pytest.raises(ArchiveError) as info:
        archive.verify(store, prefix)

    message = str(info.value)
    assert f"{store.uri}/{prefix}/{target.path}" in message
    assert f"expected sha256 {target.sha256}, found {archive.file_sha256(stored)}" in message
    with pytest.raises(ArchiveError, match=target.path):
        archive.restore(client, store, prefix, name)
    assert len(client.search_model_versions(f"name = '{name}'")) == 1
    stored.unlink()
    with pytest.raises(ArchiveError, match=f"{target.path} is missing"):
        archive.verify(store, prefix)


def test_an_upload_failing_half_way_leaves_no_manifest_and_the_retry_sends_only_the_rest(
    client, trained, name, tmp_path
) -> None:
    version, workdir = _collected(client, name, trained, tmp_path)
    local = _store(tmp_path)
    prefix = archive.archive_prefix(name, version)
    expected = archive.read_manifest(workdir)
    failing = FaultyStore(local, fail_on=3)

    with pytest.raises(ConnectionError, match="injected"):
        archive.upload(failing, prefix, workdir)

    assert len(failing.puts) == 2
    assert not local.exists(f"{prefix}/manifest.json")
    with pytest.raises(ArchiveError, match=r"incomplete archive: .*/manifest.json is missing$"):
        archive.verify(local, prefix)
    third = expected.files[2].path
    with pytest.raises(ArchiveError) as info:
        archive.verify(local, prefix, expected=expected)
    assert f"{local.uri}/{prefix}/{third}" in str(info.value)
    assert f"({len(expected.files) - 2} files missing)" in str(info.value)

    retry = FaultyStore(local)
    archive.upload(retry, prefix, workdir)

    assert not set(failing.puts) & set(retry.puts)
    assert len(retry.puts) == len(expected.files) - 2 + 1
    assert retry.puts[-1] == f"{prefix}/manifest.json"
    assert archive.verify(local, prefix, expected=expected) == expected
    # Once complete, another run sends nothing, even from a new collection of the same version.
    again = FaultyStore(local)
    recollected = tmp_path / "recollected"
    archive.collect(client, name, version, recollected, extra=EXTRA)
    assert archive.upload(again, prefix, recollected) == expected
    assert again.puts == []


def test_an_archive_is_not_overwritten_with_other_content_by_accident(client, trained, name, tmp_path) -> None:
    version, workdir = _collected(client, name, trained, tmp_path)
    store = _store(tmp_path)
    prefix = archive.archive_prefix(name, version)
    archive.upload(store, prefix, workdir)
    other = tmp_path / "other"
    archive.collect(client, name, version, other, extra={**EXTRA, "ledger.jsonl": b"{}\n"})

    with pytest.raises(ArchiveError, match="other content.*first difference: extra/ledger.jsonl"):
        archive.upload(store, prefix, other)
    assert (store.path(f"{prefix}/extra/ledger.jsonl")).read_bytes() == EXTRA["ledger.jsonl"]

    replaced = archive.upload(store, prefix, other, replace=True)
    assert archive.verify(store, prefix) == replaced
    assert (store.path(f"{prefix}/extra/ledger.jsonl")).read_bytes() == b"{}\n"


def test_the_local_store_checks_what_it_stored_and_its_keys(tmp_path: Path) -> None:
    store = _store(tmp_path)
    source = tmp_path / "file.bin"
    source.write_bytes(b"first")
    store.put("m/1/a.bin", source, archive.file_sha256(source))
    source.write_bytes(b"second")

    with pytest.raises(ArchiveError, match="stored bytes have sha256"):
        store.put("m/1/a.bin", source, "0" * 64)

    assert store.path("m/1/a.bin").read_bytes() == b"first"  # the old object stays whole
    assert [p.name for p in store.path("m/1/a.bin").parent.iterdir()] == ["a.bin"]  # no temporary left
    for key in ("../x", "/abs", "a//b", "a/./b", ""):
        with pytest.raises(ArchiveError, match="invalid archive key"):
            store.exists(key)
    with pytest.raises(ArchiveError, match="no such object"):
        store.get("m/1/missing", tmp_path / "out")
    assert store.stored_sha256("m/1/missing") is None
    assert isinstance(store, archive.ArchiveStore)


def test_local_archive_store_resolves_folders_file_uris_and_the_default(state_dir: Path, tmp_path: Path) -> None:
    assert archive.local_archive_store(None).root == state_dir / "archive"
    assert archive.local_archive_store(tmp_path.as_uri()).root == tmp_path
    assert archive.local_archive_store(str(tmp_path / "a")).root == tmp_path / "a"
    with pytest.raises(ArchiveError, match="s3:// is handled by the Airflow side"):
        archive.local_archive_store("s3://bucket/prefix")


def test_a_malformed_manifest_is_named(tmp_path: Path) -> None:
    store = _store(tmp_path)
    (tmp_path / "manifest.json").write_text('{"format_version": 1, "model": "m"}')
    store.put("m/1/manifest.json", tmp_path / "manifest.json", archive.file_sha256(tmp_path / "manifest.json"))

    with pytest.raises(ArchiveError, match=r"m/1/manifest.json: malformed manifest \(KeyError"):
        archive.verify(store, "m/1")
    shutil.rmtree(store.root)
    assert Manifest.from_json(Manifest("m", "1", "t", ()).to_json(), "x") == Manifest("m", "1", "t", ())
