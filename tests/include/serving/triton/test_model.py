"""Tests for include.serving.triton.model, the python backend model, without a server.

The module is exported (copied) into a version folder by the real exporter, loaded from there as Triton
loads it, and driven with stand-ins for ``triton_python_backend_utils``: Tensor, InferenceResponse and
TritonError with the attributes the backend uses. test_server.py runs the same file in a real Triton.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import TYPE_CHECKING, Any

import mlflow.sklearn
import numpy as np
import pytest

from include.serving.triton import model as backend
from include.serving.triton import repository, request_log
from include.serving.triton.repository import export_version

if TYPE_CHECKING:
    from conftest import Registry  # tests/include/serving/triton/conftest.py

TOLERANCE = 1e-6
# what Triton's virtualenv holds (requirements-triton.txt) besides the standard library
AVAILABLE_IN_TRITON = {"numpy", "onnxruntime", "triton_python_backend_utils", "pyarrow"}
BESIDE_MODEL_PY = {"request_log"}  # copied into the version folder with it


class FakeTritonError:
    INVALID_ARG, INTERNAL = "INVALID_ARG", "INTERNAL"

    def __init__(self, message: str, code: str = INTERNAL) -> None:
        self.message, self.code = message, code


@dataclass
class FakeTensor:
    tensor_name: str
    array: np.ndarray

    def name(self) -> str:
        return self.tensor_name

    def as_numpy(self) -> np.ndarray:
        return self.array


@dataclass
class FakeResponse:
    output_tensors: list[FakeTensor] = field(default_factory=list)
    error: FakeTritonError | None = None


@dataclass
class FakeRequest:
    tensors: list[FakeTensor]

    def inputs(self) -> list[FakeTensor]:
        return self.tensors


FAKE_PB_UTILS = SimpleNamespace(Tensor=FakeTensor, InferenceResponse=FakeResponse, TritonError=FakeTritonError)


def _config_json(config_pbtxt: str) -> str:
    """The ``parameters`` of a config.pbtxt as Triton passes the config to the backend (``args["model_config"]``)."""
    found = re.findall(r'^parameters: \{ key: ("[^"]*") value: \{ string_value: (".*") \} \}$', config_pbtxt, re.M)
    assert found, config_pbtxt
    return json.dumps({"parameters": {json.loads(k): {"string_value": json.loads(v)} for k, v in found}})


def _load(path: Path) -> ModuleType:
    """The exported model.py as Triton's python backend imports it: a file, not the project's package."""
    spec = importlib.util.spec_from_file_location("triton_exported_model", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def exported(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("model-py") / "models"
    return export_version(registry.client, registry.name, "1", registry.config, repo)


@pytest.fixture
def served(exported: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """An initialised TritonPythonModel of the exported version 1, from the exported model.py."""
    module = _load(exported / "model.py")
    assert module.pb_utils is None  # no Triton here
    monkeypatch.setattr(module, "pb_utils", FAKE_PB_UTILS)
    monkeypatch.setenv("MODELOPS_INFERENCE_LOG", str(tmp_path / "log"))
    instance = module.TritonPythonModel()
    instance.initialize({"model_repository": str(exported.parent), "model_version": exported.name,
                         "model_name": exported.parent.name,
                         "model_config": _config_json((exported.parent / "config.pbtxt").read_text())})
    yield instance
    instance.finalize()


def test_without_a_log_folder_the_version_refuses_to_load(exported: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = _load(exported / "model.py")
    monkeypatch.setattr(module, "pb_utils", FAKE_PB_UTILS)
    monkeypatch.delenv("MODELOPS_INFERENCE_LOG", raising=False)
    with pytest.raises(ValueError, match="MODELOPS_INFERENCE_LOG is not set"):
        module.TritonPythonModel().initialize({
            "model_repository": str(exported.parent), "model_version": exported.name, "model_name": "m",
            "model_config": _config_json((exported.parent / "config.pbtxt").read_text())})


@pytest.fixture(scope="module")
def sklearn_model(registry: Registry) -> Any:
    return mlflow.sklearn.load_model(registry.client.get_model_version_download_uri(registry.name, "1"))


def _packed(frame, config) -> FakeRequest:
    numeric = [c.name for c in config.dataset.features if c.type != "category"]
    categorical = [c.name for c in config.dataset.features if c.type == "category"]
    return FakeRequest([FakeTensor(backend.NUMERIC_INPUT, frame[numeric].to_numpy(dtype=np.float64)),
                        FakeTensor(backend.CATEGORICAL_INPUT,
                                   np.array([[str(v).encode() for v in row] for row in frame[categorical].to_numpy()],
                                            dtype=object))])


def _named(frame, config) -> FakeRequest:
    def column(c):
        values = frame[c.name].to_numpy()
        if c.type == "category":
            return np.array([str(v).encode() for v in values], dtype=object).reshape(-1, 1)
        return values.astype(np.int64 if c.type == "int" else np.float64).reshape(-1, 1)

    return FakeRequest([FakeTensor(c.name, column(c)) for c in config.dataset.features])


def _scores(response: FakeResponse) -> np.ndarray:
    assert response.error is None, response.error.message
    tensor, ids = response.output_tensors
    assert tensor.name() == repository.OUTPUT_NAME and ids.name() == "request_id"
    assert ids.as_numpy().shape == tensor.as_numpy().shape
    return tensor.as_numpy()


def test_the_exported_model_py_is_the_module_unchanged(exported: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    assert (exported / "model.py").read_bytes() == Path(backend.__file__).read_bytes()
    before = repository.exporter_id()
    edited = tmp_path / "model.py"
    edited.write_text(Path(backend.__file__).read_text() + "\n# edited\n")
    monkeypatch.setattr(repository, "MODEL_SOURCE", edited)
    assert repository.exporter_id() != before  # an edit of model.py re-exports every version


def test_model_py_imports_only_what_tritons_virtualenv_holds() -> None:
    tree = ast.parse(Path(backend.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}

    assert imported - set(sys.stdlib_module_names) - {"__future__"} == AVAILABLE_IN_TRITON - {"pyarrow"} | BESIDE_MODEL_PY
    log_tree = ast.parse(Path(request_log.__file__).read_text())
    log_imports = {alias.name.split(".")[0] for node in ast.walk(log_tree) if isinstance(node, ast.Import)
                   for alias in node.names}
    log_imports |= {node.module.split(".")[0] for node in ast.walk(log_tree)
                    if isinstance(node, ast.ImportFrom) and node.module}
    assert log_imports - set(sys.stdlib_module_names) - {"__future__"} == {"numpy", "pyarrow"}


def test_both_forms_batched_together_each_get_their_own_rows(served, registry: Registry, sklearn_model) -> None:
    rows = registry.holdout.head(5)

    responses = served.execute([_packed(rows.head(3), registry.config), _named(rows.tail(2), registry.config)])

    scores = [_scores(r) for r in responses]
    assert [s.shape for s in scores] == [(3, 1), (2, 1)]
    assert all(s.dtype == np.float64 for s in scores)
    expected = sklearn_model.predict_proba(rows)[:, 1]
    np.testing.assert_allclose(np.concatenate(scores).ravel(), expected, rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize(("bad", "message"), [
    ("a packed input missing", "missing input categorical_features"),
    ("a feature missing", "missing input region"),
    ("both forms", "send the packed inputs or one input per feature, not both (also got age)"),
    ("rows disagree", "inputs disagree on the number of rows: [1, 2]"),
    ("not UTF-8", "categorical values must be UTF-8 text"),
])
def test_a_bad_request_is_invalid_arg_and_its_batch_is_still_scored(served, registry: Registry, sklearn_model,
                                                                    bad: str, message: str) -> None:
    rows, config = registry.holdout.head(2), registry.config
    request = _packed(rows, config)
    if bad == "a packed input missing":
        request.tensors = request.tensors[:1]
    elif bad == "a feature missing":
        request = _named(rows, config)
        request.tensors = [t for t in request.tensors if t.name() != "region"]
    elif bad == "both forms":
        request.tensors.append(_named(rows, config).tensors[0])
    elif bad == "rows disagree":
        request.tensors[0].array = request.tensors[0].array[:1]
    else:
        request.tensors[1].array[0, 0] = b"\xff\xfe"

    good, refused = served.execute([_packed(rows.head(1), config), request])

    np.testing.assert_allclose(_scores(good).ravel(), sklearn_model.predict_proba(rows.head(1))[:, 1], rtol=0,
                               atol=TOLERANCE)
    assert refused.output_tensors == [] and refused.error.code == FakeTritonError.INVALID_ARG
    assert refused.error.message.startswith("inference failed: ") and message in refused.error.message


def test_a_failure_of_the_model_itself_is_internal(served, registry: Registry) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("onnxruntime fell over")

    served.session = SimpleNamespace(run=broken)  # an onnxruntime session that fails

    [response] = served.execute([_packed(registry.holdout.head(1), registry.config)])

    assert response.error.code == FakeTritonError.INTERNAL
    assert response.error.message == "inference failed: onnxruntime fell over"


def test_a_config_whose_packed_columns_are_not_the_exported_inputs_does_not_load(exported: Path,
                                                                                 monkeypatch) -> None:
    module = _load(exported / "model.py")
    monkeypatch.setattr(module, "pb_utils", FAKE_PB_UTILS)
    config = json.loads(_config_json((exported.parent / "config.pbtxt").read_text()))
    config["parameters"][backend.CATEGORICAL_INPUT]["string_value"] = json.dumps(["home_ownership", "region"])

    with pytest.raises(ValueError, match=r"packed columns .* are not the inputs .* this version was exported with"):
        module.TritonPythonModel().initialize({"model_repository": str(exported.parent),
                                               "model_version": exported.name, "model_config": json.dumps(config)})


def test_every_scored_row_is_logged_once_the_instance_finalizes(exported: Path, registry: Registry,
                                                                monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    module = _load(exported / "model.py")
    monkeypatch.setattr(module, "pb_utils", FAKE_PB_UTILS)
    monkeypatch.setenv("MODELOPS_INFERENCE_LOG", str(tmp_path / "log"))
    instance = module.TritonPythonModel()
    instance.initialize({"model_repository": str(exported.parent), "model_version": exported.name, "model_name": "x",
                         "model_config": _config_json((exported.parent / "config.pbtxt").read_text())})
    rows = registry.holdout.head(4)
    ids = FakeTensor("request_id", np.array([[b"a"], [b"b"], [b"c"]], dtype=object))
    request = _packed(rows.head(3), registry.config)
    request.tensors.append(ids)
    responses = instance.execute([request, _named(rows.tail(1), registry.config)])
    instance.finalize()

    logged = pq.read_table(next((tmp_path / "log").rglob("*.parquet"))).to_pandas()
    returned = [r.output_tensors[1].as_numpy().ravel().tolist() for r in responses]
    assert returned[0] == [b"a", b"b", b"c"] and len(returned[1]) == 1
    assert logged["request_id"].tolist() == ["a", "b", "c", returned[1][0].decode()]
    assert set(logged["model_name"]) == {registry.name} and set(logged["model_version"]) == {"1"}
    np.testing.assert_allclose(logged["prediction"], np.concatenate([_scores(r).ravel() for r in responses]))
    assert logged["age"].tolist() == rows["age"].tolist() and logged["region"].tolist() == rows["region"].tolist()
