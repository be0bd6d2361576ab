"""Tests for include.serving.triton.repository: the repository layout, re-exports, what serves beside what.

No server here (see test_server.py): the exported ONNX files run in this venv's onnxruntime. The conversion
and the parity check themselves are tested in tests/include/serving/test_onnx.py.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow.sklearn
import numpy as np
import onnxruntime as ort
import pytest

from include.config import Column
from include.serving import onnx
from include.serving.onnx import ExportError
from include.serving.triton import repository
from include.serving.triton.repository import export_version, set_served_versions

if TYPE_CHECKING:
    from conftest import Registry  # tests/include/serving/triton/conftest.py

# Measured: ~1e-7 (tree ensembles return float32 probabilities). With skl2onnx's stock float32
# thresholds, rows whose feature equals a split value differ by up to 0.2.
TOLERANCE = 1e-6


def _snapshot(directory: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every file under ``directory`` with its inode, mtime and content."""
    return {str(p.relative_to(directory)): (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(directory.rglob("*")) if p.is_file()}


def _served(repo: Path, name: str) -> str:
    config = (repo / name / "config.pbtxt").read_text()
    return next(line for line in config.splitlines() if line.startswith("version_policy"))


def _onnx_positive_proba(version_dir: Path, frame, registry: Registry) -> np.ndarray:
    session = ort.InferenceSession(str(version_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    feeds = onnx.onnx_feeds(frame, onnx.input_spec(registry.config))
    return session.run([onnx.ONNX_PROBABILITIES], feeds)[0][:, 1]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return tmp_path / "models"


def test_export_runs_like_the_registered_model(registry: Registry, repo: Path) -> None:
    version_dir = export_version(registry.client, registry.name, "1", registry.config, repo)

    got = _onnx_positive_proba(version_dir, registry.holdout, registry)
    pyfunc = np.asarray(registry.pyfunc("1").predict(registry.holdout))[:, 1]
    sklearn = mlflow.sklearn.load_model(registry.client.get_model_version_download_uri(registry.name, "1"))
    assert len(got) == 200
    np.testing.assert_allclose(got, pyfunc, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(got, sklearn.predict_proba(registry.holdout)[:, 1], rtol=0, atol=TOLERANCE)


def test_export_writes_the_layout_triton_loads(registry: Registry, repo: Path) -> None:
    version_dir = export_version(registry.client, registry.name, 1, registry.config, repo)

    assert version_dir == repo / registry.name / "1"
    assert sorted(p.name for p in version_dir.iterdir()) == ["export.json", "model.onnx", "model.py", "request_log.py"]
    config = (repo / registry.name / "config.pbtxt").read_text()
    assert f'name: "{registry.name}"' in config
    assert 'backend: "python"' in config
    assert "version_policy: { specific: { versions: [ 1 ] } }" in config
    # one optional input per feature, and the two packed inputs with their columns listed in order
    assert '{ name: "age" data_type: TYPE_INT64 dims: [ 1 ] optional: true }' in config
    assert '{ name: "annual_income" data_type: TYPE_FP64 dims: [ 1 ] optional: true }' in config
    assert '{ name: "region" data_type: TYPE_STRING dims: [ 1 ] optional: true }' in config
    assert '{ name: "numeric_features" data_type: TYPE_FP64 dims: [ 6 ] optional: true }' in config
    assert '{ name: "categorical_features" data_type: TYPE_STRING dims: [ 3 ] optional: true }' in config
    assert ('parameters: { key: "numeric_features" value: { string_value: "[\\"age\\", \\"annual_income\\", '
            '\\"loan_amount\\", \\"credit_score\\", \\"employment_years\\", \\"debt_to_income\\"]" } }') in config
    assert ('parameters: { key: "categorical_features" value: { string_value: '
            '"[\\"home_ownership\\", \\"loan_purpose\\", \\"region\\"]" } }') in config
    assert '{ name: "probability" data_type: TYPE_FP64 dims: [ 1 ] }' in config
    assert "dynamic_batching" in config and "max_batch_size: 1024" in config

    marker = json.loads((version_dir / "export.json").read_text())
    registered = registry.client.get_model_version(registry.name, "1")
    assert marker["key"]["source"] == registered.source and marker["key"]["run_id"] == registered.run_id
    assert [i["name"] for i in marker["inputs"]] == registry.config.dataset.feature_names
    assert marker["converted"] == "ColumnTransformer → HistGradientBoostingClassifier"
    assert marker["parity"]["max_abs_diff"] <= TOLERANCE
    assert marker["classes"] == [0, 1] and marker["positive_column"] == 1


def test_reexport_of_the_same_version_is_a_noop(registry: Registry, repo: Path) -> None:
    export_version(registry.client, registry.name, "1", registry.config, repo)
    before = _snapshot(repo)

    export_version(registry.client, registry.name, "1", registry.config, repo)

    assert _snapshot(repo) == before


def test_a_new_version_is_served_beside_the_kept_one_which_stays_untouched(registry: Registry, repo: Path) -> None:
    export_version(registry.client, registry.name, "1", registry.config, repo)
    first = _snapshot(repo / registry.name / "1")

    export_version(registry.client, registry.name, "2", registry.config, repo, keep_versions=["1"])

    assert _served(repo, registry.name) == "version_policy: { specific: { versions: [ 1, 2 ] } }"
    assert _snapshot(repo / registry.name / "1") == first
    assert repository.exported_versions(repo, registry.name) == [1, 2]

    # a rollback to version 1 is a config change only
    assert set_served_versions(repo, registry.name, ["1"]) == [1]
    assert _served(repo, registry.name) == "version_policy: { specific: { versions: [ 1 ] } }"
    assert (repo / registry.name / "2" / "model.onnx").is_file()


@pytest.mark.parametrize("stale", ["older format", "other exporter"])
def test_a_kept_version_from_an_older_exporter_is_exported_again_to_serve_beside(
    registry: Registry, repo: Path, stale: str
) -> None:
    """After an upgrade of the exporter, the previous champion is re-exported so that it keeps serving (and a
    rollback stays instant) beside the new version, with the model.py that the new config.pbtxt is written for."""
    old = export_version(registry.client, registry.name, "1", registry.config, repo)
    marker = json.loads((old / "export.json").read_text())
    if stale == "older format":
        marker["format"] = repository.FORMAT - 1
    else:
        marker["key"]["exporter"] = "0123456789abcdef"
    (old / "export.json").write_text(json.dumps(marker))

    export_version(registry.client, registry.name, "2", registry.config, repo, keep_versions=["1"])

    assert _served(repo, registry.name) == "version_policy: { specific: { versions: [ 1, 2 ] } }"
    refreshed = repository.read_marker(old)
    assert refreshed is not None and refreshed["key"]["exporter"] == repository.exporter_id()


def test_a_kept_version_that_cannot_be_exported_again_is_left_out(registry: Registry, repo: Path, caplog) -> None:
    old = export_version(registry.client, registry.name, "1", registry.config, repo)
    marker = json.loads((old / "export.json").read_text())
    marker["key"]["exporter"] = "0123456789abcdef"
    (old / "export.json").write_text(json.dumps(marker))
    shutil.copytree(old, repo / registry.name / "3")  # version 3 is the DummyClassifier: it does not convert

    with caplog.at_level(logging.WARNING, logger="include.serving.triton.repository"):
        export_version(registry.client, registry.name, "2", registry.config, repo, keep_versions=["3"])

    assert _served(repo, registry.name) == "version_policy: { specific: { versions: [ 2 ] } }"
    assert "version 3: cannot export it again" in caplog.text and "skl2onnx cannot convert" in caplog.text
    assert "version 3 was exported by another exporter: not served" in caplog.text


def test_a_kept_version_that_is_not_exported_is_left_out(registry: Registry, repo: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="include.serving.triton.repository"):
        export_version(registry.client, registry.name, "1", registry.config, repo, keep_versions=["7"])

    assert _served(repo, registry.name) == "version_policy: { specific: { versions: [ 1 ] } }"
    assert "version 7 is not exported" in caplog.text


def test_a_version_with_other_inputs_is_not_served_beside_the_primary(registry: Registry, repo: Path, caplog) -> None:
    export_version(registry.client, registry.name, "1", registry.config, repo, keep_versions=[])
    export_version(registry.client, registry.name, "2", registry.config, repo, keep_versions=["1"])
    marker_path = repo / registry.name / "1" / "export.json"
    marker = json.loads(marker_path.read_text())
    marker["inputs"] = marker["inputs"][:-1]  # version 1 as if it had been trained without "region"
    marker_path.write_text(json.dumps(marker))

    with caplog.at_level(logging.WARNING, logger="include.serving.triton.repository"):
        served = set_served_versions(repo, registry.name, ["1", "2"], primary="2")

    assert served == [2]
    assert "version 1 has other inputs than version 2" in caplog.text


def test_a_damaged_export_is_rebuilt(registry: Registry, repo: Path, caplog) -> None:
    version_dir = export_version(registry.client, registry.name, "1", registry.config, repo)
    good = (version_dir / "model.onnx").read_bytes()
    (version_dir / "model.onnx").write_bytes(b"not an onnx model")
    assert repository.read_marker(version_dir) is None

    with caplog.at_level(logging.WARNING, logger="include.serving.triton.repository"):
        export_version(registry.client, registry.name, "1", registry.config, repo)

    assert (version_dir / "model.onnx").read_bytes() == good
    assert "replacing a stale or damaged export" in caplog.text


def test_a_model_skl2onnx_cannot_convert_is_refused_and_nothing_is_left(registry: Registry, repo: Path) -> None:
    export_version(registry.client, registry.name, "1", registry.config, repo)
    before = _snapshot(repo)

    with pytest.raises(ExportError, match=r"cannot convert ColumnTransformer → DummyClassifier"):
        export_version(registry.client, registry.name, "3", registry.config, repo, keep_versions=["1"])

    assert _snapshot(repo) == before
    assert sorted(p.name for p in (repo / registry.name).iterdir()) == ["1", "config.pbtxt", "serving.json"]


def test_the_export_checks_parity_on_every_missing_and_unseen_value(registry: Registry, repo: Path) -> None:
    version_dir = export_version(registry.client, registry.name, "1", registry.config, repo)

    marker = json.loads((version_dir / "export.json").read_text())
    features = registry.config.dataset.features
    categorical = sum(c.type in onnx.STRING_TYPES for c in features)
    # the 5-row input example, then again with each number missing, each category missing (None, NaN) and unseen
    assert marker["format"] == repository.FORMAT
    assert marker["parity"]["rows"] == 5 * (1 + len(features) - categorical + 3 * categorical)
    assert marker["parity"]["max_abs_diff"] <= TOLERANCE


def test_features_triton_cannot_take_are_named(registry: Registry) -> None:
    dataset = registry.config.dataset.model_copy(
        update={"features": [*registry.config.dataset.features, Column(name="decided_at", type="timestamp")]})
    config = registry.config.model_copy(update={"dataset": dataset})

    with pytest.raises(ExportError, match=r"cannot be converted to ONNX \(nor served\): decided_at \(timestamp\)"):
        repository.triton_inputs(config)


def test_each_feature_is_a_triton_input_of_its_type(registry: Registry) -> None:
    inputs = repository.triton_inputs(registry.config)

    assert [i["name"] for i in inputs] == registry.config.dataset.feature_names
    assert {i["type"]: i["triton"] for i in inputs} == {"int": "TYPE_INT64", "float": "TYPE_FP64",
                                                         "category": "TYPE_STRING"}


def test_a_feature_named_like_a_packed_input_is_refused(registry: Registry) -> None:
    features = [c.model_copy(update={"name": "numeric_features"}) if c.name == "age" else c
                for c in registry.config.dataset.features]
    config = registry.config.model_copy(update={"dataset": registry.config.dataset.model_copy(update={"features": features})})

    with pytest.raises(ExportError, match=r"feature column\(s\) numeric_features take the name of one of the model.s own inputs"):
        repository.triton_inputs(config)


def test_a_model_without_categories_declares_no_categorical_input() -> None:
    inputs = [{"name": "x", "type": "float", "triton": "TYPE_FP64"}, {"name": "n", "type": "int", "triton": "TYPE_INT64"}]

    config = repository.render_config("m", inputs, [1])

    assert '{ name: "numeric_features" data_type: TYPE_FP64 dims: [ 2 ] optional: true }' in config
    assert "categorical_features" not in config
    assert repository.packed_columns(inputs) == {"numeric_features": ["x", "n"]}


@pytest.mark.parametrize("version", ["abc", "0", None])
def test_a_bad_version_is_named(version) -> None:
    with pytest.raises(ExportError, match="model version must be a positive integer"):
        repository.version_number(version)


def test_serving_a_version_that_is_not_exported_fails(repo: Path) -> None:
    with pytest.raises(ExportError, match="version 5 is not exported"):
        set_served_versions(repo, "credit_approval", ["5"])


def test_remove_version(registry: Registry, repo: Path) -> None:
    export_version(registry.client, registry.name, "1", registry.config, repo)
    shutil.copytree(repo / registry.name / "1", repo / registry.name / "9")

    assert repository.remove_version(repo, registry.name, "9") is True
    assert repository.remove_version(repo, registry.name, "9") is False
    assert repository.exported_versions(repo, registry.name) == [1]
