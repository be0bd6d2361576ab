"""Tests for modelops.governance.archive_s3: the archive on S3, against moto's S3 server on loopback.

The store goes through the Amazon provider's ``S3Hook`` with the connection given as
``AIRFLOW_CONN_ARCHIVE_S3``, as in production; only the endpoint is moto's.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import mlflow
import mlflow.pyfunc
import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from moto.server import ThreadedMotoServer
from sklearn.linear_model import LogisticRegression

from include import tracking
from include.governance import archive
from include.governance.archive import ArchiveError, LocalArchiveStore
from include.monitoring import reference_profile
from include.promotion import registry
from include.training.train import sklearn_types_to_trust
from modelops.governance.archive_s3 import S3ArchiveStore, archive_store
from tests.fakes.archive_store import FaultyStore

CONN_ID = "archive_s3"
FEATURES = ["a", "b", "c"]


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """moto's S3 server on a free loopback port, stopped after the module."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def connection(moto_endpoint: str) -> Iterator[str]:
    """The Airflow connection ``archive_s3`` as ``AIRFLOW_CONN_ARCHIVE_S3`` JSON."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps({
            "conn_type": "aws", "login": "testing", "password": "testing",
            "extra": {"endpoint_url": moto_endpoint, "region_name": "us-east-1"},
        }))
        yield CONN_ID


@pytest.fixture(scope="module")
def s3(moto_endpoint: str):
    """A plain boto3 client on the same server: what someone acting behind the store's back would use."""
    return boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture
def bucket(s3) -> str:
    name = f"archive-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowClient]:
    """A fresh SQLite MLflow store for this module; mlflow's global URIs are restored afterwards."""
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    yield tracking.configure(f"sqlite:///{tmp_path_factory.mktemp('archive-s3')}/mlflow.db")
    mlflow.set_tracking_uri(previous[0])
    mlflow.set_registry_uri(previous[1])


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    return pd.DataFrame(rng.normal(size=(200, 3)), columns=FEATURES)


@pytest.fixture(scope="module")
def trained(client: MlflowClient, frame: pd.DataFrame) -> tuple[str, str]:
    """A training run with a model, params, metrics and the drift reference profile: ``(run_id, model_uri)``."""
    model = LogisticRegression().fit(frame, (frame["a"] + frame["b"] > 0).astype(int))
    run_id = tracking.upsert_run(client, "modelops/s3-archive-tests", {"test": "archive-s3"}, "archive-s3")
    with mlflow.start_run(run_id=run_id):
        reference_profile.log_profile(reference_profile.build_profile(frame, dict.fromkeys(FEATURES, "float")))
        mlflow.log_params({"C": 1.0, "estimator": "LogisticRegression"})
        mlflow.log_metrics({"roc_auc": 0.93, "f1": 0.81})
        info = mlflow.sklearn.log_model(model, name="model", skops_trusted_types=sklearn_types_to_trust(model),
                                        pip_requirements=["scikit-learn"], pyfunc_predict_fn="predict_proba")
    tracking.close_run(client, run_id, "FINISHED", "trained")
    return run_id, info.model_uri


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    """A registered model name of its own for each test."""
    return "s3_" + re.sub(r"[^A-Za-z0-9]+", "_", request.node.name).strip("_")


def _collected(client: MlflowClient, name: str, trained: tuple[str, str], tmp_path: Path) -> tuple[str, Path]:
    run_id, model_uri = trained
    version = registry.register_challenger(client, name=name, description="s3 test", model_uri=model_uri,
                                           run_id=run_id, tags={"owner": "risk"}, actor="tester")
    client.set_model_version_tag(name, version.version, "retired", "true")
    workdir = tmp_path / "collected"
    archive.collect(client, name, str(version.version), workdir, extra={"ledger.jsonl": b"{}\n"})
    return str(version.version), workdir


def test_moto_keeps_the_sha256_of_an_upload_through_the_hook_and_returns_it(connection, bucket, s3, tmp_path) -> None:
    """The premise of the store's check: HeadObject with ChecksumMode answers ChecksumSHA256 (base64 of the digest)."""
    store = S3ArchiveStore(f"s3://{bucket}", aws_conn_id=connection)
    data = b"archive bytes" * 1000
    (tmp_path / "f").write_bytes(data)

    store.writer.load_file(tmp_path / "f", "premise", bucket_name=bucket, replace=True)

    head = s3.head_object(Bucket=bucket, Key="premise", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert store.stored_sha256("premise") == hashlib.sha256(data).hexdigest()


def test_round_trip_through_s3_with_the_storage_class_on_every_object(
    client, connection, bucket, s3, trained, frame, name, tmp_path
) -> None:
    version, workdir = _collected(client, name, trained, tmp_path)
    store = archive_store(f"s3://{bucket}/archives", aws_conn_id=connection, storage_class="STANDARD_IA")
    prefix = archive.archive_prefix(name, version)

    uploaded = archive.upload(store, prefix, workdir)
    checked = archive.verify(store, prefix, expected=uploaded)
    restored = archive.restore(client, store, prefix, name)

    assert checked == uploaded
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == sorted([f"archives/{prefix}/{f.path}" for f in uploaded.files] + [f"archives/{prefix}/manifest.json"])
    for key in keys:  # the manifest stays readable without a restore: the bucket's default class
        head = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        assert head.get("StorageClass", "STANDARD") == ("STANDARD" if key.endswith("/manifest.json") else "STANDARD_IA")
    for item in uploaded.files:
        head = s3.head_object(Bucket=bucket, Key=f"archives/{prefix}/{item.path}", ChecksumMode="ENABLED")
        assert base64.b64decode(head["ChecksumSHA256"]).hex() == item.sha256
        assert head["ContentLength"] == item.size
    assert store.storage_class_of(f"{prefix}/version.json") == "STANDARD_IA"
    assert store.storage_class_of(f"{prefix}/manifest.json") == "STANDARD"
    # The restored version: new, tagged with where it came from, and predicting what the original did.
    assert restored.tags["restored_from"] == f"{name}/{version}"
    assert restored.tags["restored_archive"] == f"s3://{bucket}/archives/{prefix}"
    assert restored.tags["owner"] == "risk" and "retired" not in restored.tags
    assert client.get_run(restored.run_id).data.params == client.get_run(trained[0]).data.params
    before = mlflow.pyfunc.load_model(f"models:/{name}/{version}").predict(frame)
    after = mlflow.pyfunc.load_model(f"models:/{name}/{restored.version}").predict(frame)
    np.testing.assert_array_equal(np.asarray(after), np.asarray(before))


def test_glacier_objects_are_checked_without_a_restore_and_read_after_one(
    client, connection, bucket, s3, trained, name, tmp_path
) -> None:
    version, workdir = _collected(client, name, trained, tmp_path)
    store = S3ArchiveStore(f"s3://{bucket}/cold", aws_conn_id=connection, storage_class="GLACIER")
    prefix = archive.archive_prefix(name, version)
    manifest = archive.upload(store, prefix, workdir)

    assert archive.verify(store, prefix) == manifest  # the manifest is readable; HeadObject answers for the rest
    first = manifest.files[0].path
    with pytest.raises(ArchiveError, match=f"{prefix}/{first} is in storage class GLACIER and not restored"):
        archive.restore(client, store, prefix, name)
    assert len(client.search_model_versions(f"name = '{name}'")) == 1

    pending = store.request_restore(prefix, days=1)

    assert sorted(pending) == sorted(f"{prefix}/{f.path}" for f in manifest.files)
    assert 'ongoing-request="false"' in s3.head_object(Bucket=bucket, Key=f"cold/{prefix}/{first}")["Restore"]
    assert store.request_restore(prefix) == []  # moto restores at once: everything is readable now
    restored = archive.restore(client, store, prefix, name)
    assert int(restored.version) == int(version) + 1


def test_the_server_side_checksum_is_checked_on_upload_and_on_verify(
    client, connection, bucket, s3, trained, name, tmp_path
) -> None:
    store = S3ArchiveStore(f"s3://{bucket}/chk", aws_conn_id=connection)
    source = tmp_path / "file.bin"
    source.write_bytes(b"the bytes that were hashed")
    actual = hashlib.sha256(source.read_bytes()).hexdigest()

    # The file changed after it was hashed: S3's checksum of what it received is not the manifest's.
    with pytest.raises(ArchiveError, match=f"S3's checksum after upload is sha256 {actual}, expected {'0' * 64}"):
        store.put("m/1/file.bin", source, "0" * 64)

    version, workdir = _collected(client, name, trained, tmp_path)
    prefix = archive.archive_prefix(name, version)
    manifest = archive.upload(store, prefix, workdir)
    item = next(f for f in manifest.files if f.path == "run/params.json")
    # Replaced behind the store's back, with a checksum S3 keeps: verify names it, expected vs found.
    s3.put_object(Bucket=bucket, Key=f"chk/{prefix}/{item.path}", Body=b"{}", ChecksumAlgorithm="SHA256")
    with pytest.raises(ArchiveError) as info:
        archive.verify(store, prefix)
    assert f"s3://{bucket}/chk/{prefix}/{item.path}: checksum mismatch" in str(info.value)
    assert f"expected sha256 {item.sha256}, found {hashlib.sha256(b'{}').hexdigest()}" in str(info.value)
    # Replaced without a SHA-256 (another tool): S3 cannot vouch for it, so verify refuses it.
    s3.put_object(Bucket=bucket, Key=f"chk/{prefix}/{item.path}", Body=(workdir / item.path).read_bytes())
    with pytest.raises(ArchiveError, match=f"{item.path} has no SHA-256 checksum in the store"):
        archive.verify(store, prefix)
    # The next upload repairs it: only that file is sent again.
    retry = FaultyStore(store)
    archive.upload(retry, prefix, workdir)
    assert retry.puts == [f"{prefix}/{item.path}"]
    assert archive.verify(store, prefix) == manifest


def test_an_upload_to_s3_failing_half_way_is_completed_by_the_retry(
    client, connection, bucket, s3, trained, name, tmp_path
) -> None:
    version, workdir = _collected(client, name, trained, tmp_path)
    store = S3ArchiveStore(f"s3://{bucket}", aws_conn_id=connection, storage_class="DEEP_ARCHIVE")
    prefix = archive.archive_prefix(name, version)
    expected = archive.read_manifest(workdir)
    failing = FaultyStore(store, fail_on=3)

    with pytest.raises(ConnectionError, match="injected"):
        archive.upload(failing, prefix, workdir)

    stored = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))
    assert stored == sorted(failing.puts)
    assert f"{prefix}/manifest.json" not in stored
    with pytest.raises(ArchiveError, match=f"{prefix}/{expected.files[2].path}"):
        archive.verify(store, prefix, expected=expected)
    first = {k: s3.head_object(Bucket=bucket, Key=k)["LastModified"] for k in stored}

    retry = FaultyStore(store)
    archive.upload(retry, prefix, workdir)

    assert not set(failing.puts) & set(retry.puts)
    assert retry.puts[-1] == f"{prefix}/manifest.json"
    assert len(retry.puts) == len(expected.files) - 2 + 1
    assert {k: s3.head_object(Bucket=bucket, Key=k)["LastModified"] for k in stored} == first
    assert archive.verify(store, prefix, expected=expected) == expected
    assert store.storage_class_of(f"{prefix}/run/params.json") == "DEEP_ARCHIVE"


def test_a_missing_object_is_reported_as_missing(connection, bucket, tmp_path) -> None:
    store = S3ArchiveStore(f"s3://{bucket}/p", aws_conn_id=connection)

    assert store.exists("m/1/manifest.json") is False
    assert store.stored_sha256("m/1/manifest.json") is None
    with pytest.raises(ArchiveError, match=f"s3://{bucket}/p/m/1/x: no such object"):
        store.get("m/1/x", tmp_path / "x")
    with pytest.raises(ArchiveError, match=f"incomplete archive: s3://{bucket}/p/m/1/manifest.json is missing"):
        archive.verify(store, "m/1")


def test_archive_store_picks_the_store_from_the_uri(state_dir: Path, tmp_path: Path) -> None:
    s3_store = archive_store("s3://my-bucket/archive/root/", aws_conn_id="aws_prod", storage_class="GLACIER")
    assert isinstance(s3_store, S3ArchiveStore)
    assert (s3_store.bucket, s3_store.prefix, s3_store.uri) == ("my-bucket", "archive/root", "s3://my-bucket/archive/root")
    assert (s3_store.aws_conn_id, s3_store.storage_class) == ("aws_prod", "GLACIER")
    assert s3_store.key("m/1/manifest.json") == "archive/root/m/1/manifest.json"
    for uri, root in ((str(tmp_path), tmp_path), (tmp_path.as_uri(), tmp_path), (None, state_dir / "archive")):
        store = archive_store(uri, aws_conn_id="aws_default", storage_class=None)
        assert isinstance(store, LocalArchiveStore)
        assert store.root == root
    with pytest.raises(ArchiveError, match="names no bucket"):
        S3ArchiveStore("s3:///prefix")
    with pytest.raises(ArchiveError, match="invalid archive key"):
        s3_store.key("../escape")


def test_retirement_archives_to_s3_verifies_retires_and_restores(client, trained, name, connection, bucket, s3):
    """Monthly retirement's steps through the production store: archive → verify → retire → restore, on S3."""
    from include.governance import retirement
    from include.governance.ledger import default_ledger
    from include.promotion.registry import Because

    run_id, model_uri = trained
    version = str(registry.register_challenger(client, name=name, description="s3 retirement", model_uri=model_uri,
                                               run_id=run_id, tags={"owner": "risk"}, actor="tester").version)
    registry.remove_alias(client, name, registry.CHALLENGER, Because("tester", "superseded"))
    store = S3ArchiveStore(f"s3://{bucket}/models", aws_conn_id=connection, storage_class="STANDARD_IA")
    because = Because("tester", "manual", "retire_s3", "run-1")

    retirement.archive_version(client, store, name, version, because=because)
    retirement.verify_archive(client, store, name, version, because=because)
    retirement.mark_retired(client, store, name, version, reason="manual: listed", because=because)
    restored = retirement.restore_version(client, store, name, version, because=Because("auditor", "request #42"))

    tags = client.get_model_version(name, version).tags
    assert tags["retired"] == "true" and tags["retired.archive"] == f"s3://{bucket}/models/{name}/{version}"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=f"models/{name}/{version}/")["Contents"]]
    assert f"models/{name}/{version}/manifest.json" in keys and any("/model/" in k for k in keys)
    assert {s3.head_object(Bucket=bucket, Key=k).get("StorageClass") for k in keys if not k.endswith("manifest.json")} \
        == {"STANDARD_IA"}
    assert restored.tags["restored_from"] == f"{name}/{version}" and int(restored.version) > int(version)
    actions = [e.action for e in default_ledger().records(model=name, version=version)]
    assert [a for a in actions if a in retirement.ACTIONS] == ["archived", "archive_verified", "retired", "restore"]
