"""Export registered MLflow versions into a Triton model repository (python backend running ONNX).

Layout, one folder per model, one per version::

    <repo>/<model>/config.pbtxt            inputs, output, batching, and which versions serve
    <repo>/<model>/<version>/model.onnx    the scikit-learn pipeline, converted with skl2onnx
    <repo>/<model>/<version>/model.py      python backend: runs model.onnx with onnxruntime
    <repo>/<model>/<version>/export.json   what was exported from where (the no-op check), the I/O spec

A request sends its rows in one of two forms (``max_batch_size`` and dynamic batching on; every
input is ``optional`` to Triton and model.py names what a request lacks):

* packed, two tensors: ``numeric_features`` (``TYPE_FP64``, ``[k]`` per row: the ``int``, ``float``
  and ``bool`` features) and ``categorical_features`` (``TYPE_STRING``, ``[m]`` per row: the
  ``category``/``string`` ones), columns in the order the config's ``parameters`` list them. The
  project's client sends this form: the server handles two tensors per request instead of one per
  feature, which is most of its cost for single-row requests (``bench/online_serving.py``);
* one tensor per feature column, shape ``[1]`` per row: ``TYPE_INT64`` for ``int``, ``TYPE_FP64``
  for ``float``, ``TYPE_BOOL`` for ``bool``, ``TYPE_STRING`` for ``category``/``string`` (self-describing,
  for curl and generic KServe clients).

Requests of both forms batch together. The output ``probability`` (``TYPE_FP64``, ``[1]``) is the
probability of the positive class.

Why ONNX in the python backend rather than the pickled model: Triton's virtualenv pins numpy<2 and
has no scikit-learn, and the pickle/skops format is tied to the exact scikit-learn that trained
it. ONNX is a stable format, onnxruntime runs it ~50x faster per row than a pyfunc server, and
the python backend leaves room for request handling of our own. A model that skl2onnx cannot
convert, or whose ONNX outputs differ from scikit-learn's, is refused with :class:`ExportError`:
nothing half-exported ever reaches the repository.

skl2onnx's tree-ensemble converter writes thresholds and leaf values as float32
(``ai.onnx.ml`` opset 1). Tree splits that fall on a data value (common for integer features
with many distinct values) then route some rows differently from scikit-learn (up to 0.2 in
probability on the demo model). The exporter keeps them in float64 (opset 3 ``*_as_tensor``
attributes), which onnxruntime compares in double precision: parity is then ~1e-7.

Missing values score as in scikit-learn. A missing number enters the ONNX model as NaN, a missing
category as :data:`MISSING_CATEGORY` (the empty string, what Triton's client sends for None and the
batch job for a null). RandomForest, ExtraTrees and GradientBoosting are converted here rather than
by skl2onnx, whose converters drop each split's missing-value direction (sklearn-onnx#1253: up to 0.4
in probability) and never return on a tree trained with missing values (an infinite threshold);
HistGradientBoosting keeps skl2onnx's converter, which carries the direction. ``SimpleImputer`` steps
(which :func:`include.training.train.build_estimator` adds for estimators without missing-value support, and
for categories) are converted here too. The parity rows (:func:`parity_frame`) hold every numeric
feature missing and every categorical one missing and unseen, and an export is refused when
scikit-learn cannot score such a row (an older pipeline without imputer) or scores it otherwise.

Re-exporting a version that is already there is a no-op; ``config.pbtxt`` lists the served
versions in ``version_policy: { specific: ... }`` so a new version can load beside the previous one,
which keeps serving until the new one has passed its checks (and makes a rollback instant).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from include.config import ModelConfig

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from mlflow.tracking import MlflowClient

# numpy, pandas, mlflow, skl2onnx and onnxruntime are imported inside functions: Airflow imports
# this module in tasks, and the plugin side only needs the layout helpers.
log = logging.getLogger(__name__)

FORMAT = 3  # 2: the packed inputs beside the per-feature ones; 3: missing values routed like scikit-learn
MARKER = "export.json"
OUTPUT_NAME = "probability"
ONNX_PROBABILITIES = "probabilities"
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
PARITY_TOLERANCE = 1e-5
UNKNOWN_CATEGORY = "__unseen_category__"
MISSING_CATEGORY = ""  # a missing category as the ONNX model receives it (Triton's client sends None as "")
MAX_BATCH_SIZE = 1024
MAX_QUEUE_DELAY_US = 100
NUMERIC_INPUT = "numeric_features"
CATEGORICAL_INPUT = "categorical_features"
PACKED_INPUTS = (NUMERIC_INPUT, CATEGORICAL_INPUT)

TRITON_TYPES = {
    "int": "TYPE_INT64",
    "float": "TYPE_FP64",
    "bool": "TYPE_BOOL",
    "category": "TYPE_STRING",
    "string": "TYPE_STRING",
}
STRING_TYPES = ("category", "string")

MODEL_PY = '''\
"""Triton python backend: the model's ONNX export run with onnxruntime.

Generated by include.serving.triton.repository: do not edit. A request sends its rows in one of two forms:
the packed inputs (NUMERIC FP64 [N, k] and CATEGORICAL BYTES [N, m], columns in the order
config.pbtxt's parameters list them) or one input per feature ([N, 1] each). Requests that the
dynamic batcher groups are scored in one onnxruntime call, whatever their form.
"""

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

NUMERIC, CATEGORICAL = "@NUMERIC_INPUT@", "@CATEGORICAL_INPUT@"


class BadRequest(ValueError):
    """The request's inputs are wrong: answered as HTTP 400 (INVALID_ARG), not as a server error."""


class TritonPythonModel:
    def initialize(self, args):
        here = Path(args["model_repository"]) / args["model_version"]
        spec = json.loads((here / "export.json").read_text())
        params = {k: v["string_value"] for k, v in json.loads(args["model_config"]).get("parameters", {}).items()}
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(params.get("intra_op_threads", "1"))
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(here / "model.onnx"), options, providers=["CPUExecutionProvider"])
        self.numeric = json.loads(params.get(NUMERIC, "[]"))
        self.categorical = json.loads(params.get(CATEGORICAL, "[]"))
        self.names = [i["name"] for i in spec["inputs"]]
        if sorted(self.names) != sorted(self.numeric + self.categorical):
            raise ValueError(f"config.pbtxt's packed columns {self.numeric} + {self.categorical} are not the "
                             f"inputs {self.names} this version was exported with")
        self.packed = [n for n, cols in ((NUMERIC, self.numeric), (CATEGORICAL, self.categorical)) if cols]
        self.onnx_output = spec["onnx_output"]
        self.column = spec["positive_column"]
        self.output = spec["output"]

    def _columns(self, request):
        """(numeric [N, k], categorical [N, m] of str, N) from either input form; a bad request raises BadRequest."""
        tensors = {t.name(): t for t in request.inputs()}
        if NUMERIC in tensors or CATEGORICAL in tensors:
            extra = sorted(set(tensors) - {NUMERIC, CATEGORICAL})
            if extra:
                raise BadRequest(f"send the packed inputs or one input per feature, not both (also got {', '.join(extra)})")
            missing = [n for n in self.packed if n not in tensors]
            if missing:
                raise BadRequest("missing input " + ", ".join(missing))
            parts = [tensors[n].as_numpy() if n in tensors else None for n in (NUMERIC, CATEGORICAL)]
        else:
            missing = [n for n in self.names if n not in tensors]
            if missing:
                raise BadRequest("missing input " + ", ".join(missing))
            parts = [np.hstack([tensors[n].as_numpy().reshape(-1, 1) for n in cols]) if cols else None
                     for cols in (self.numeric, self.categorical)]
        rows = {len(p) for p in parts if p is not None}
        if len(rows) != 1:
            raise BadRequest(f"inputs disagree on the number of rows: {sorted(rows)}")
        if parts[1] is not None:
            try:
                text = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in parts[1].ravel()]
            except UnicodeDecodeError as exc:
                raise BadRequest(f"categorical values must be UTF-8 text: {exc}") from None
            parts[1] = np.array(text, dtype=object).reshape(parts[1].shape)
        return parts[0], parts[1], rows.pop()

    def _score(self, numeric, categorical):
        feeds = {}
        if numeric is not None:
            columns = np.ascontiguousarray(numeric.astype(np.float64, copy=False).T)
            feeds.update((name, columns[i].reshape(-1, 1)) for i, name in enumerate(self.numeric))
        if categorical is not None:
            columns = np.ascontiguousarray(categorical.T)
            feeds.update((name, columns[j].reshape(-1, 1)) for j, name in enumerate(self.categorical))
        probabilities = self.session.run([self.onnx_output], feeds)[0]
        return probabilities[:, self.column].astype(np.float64).reshape(-1, 1)

    def _respond(self, scores):
        return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(self.output, scores)])

    def execute(self, requests):
        try:
            parts = [self._columns(r) for r in requests]
            merged = [None if parts[0][k] is None else np.concatenate([p[k] for p in parts]) for k in (0, 1)]
            scores = np.split(self._score(*merged), np.cumsum([p[2] for p in parts])[:-1])
            return [self._respond(s) for s in scores]
        except Exception:  # one bad request must not fail the others batched with it
            return [self._execute_one(r) for r in requests]

    def _execute_one(self, request):
        try:
            numeric, categorical, _ = self._columns(request)
            return self._respond(self._score(numeric, categorical))
        except Exception as exc:
            code = pb_utils.TritonError.INVALID_ARG if isinstance(exc, BadRequest) else pb_utils.TritonError.INTERNAL
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(f"inference failed: {exc}", code))
'''.replace("@NUMERIC_INPUT@", NUMERIC_INPUT).replace("@CATEGORICAL_INPUT@", CATEGORICAL_INPUT)


class ExportError(RuntimeError):
    """A version cannot be exported for Triton: the message names the model, version and cause."""


def version_number(version: str | int) -> int:
    try:
        number = int(version)
    except (TypeError, ValueError):
        raise ExportError(f"model version must be a positive integer, got {version!r}") from None
    if number < 1:
        raise ExportError(f"model version must be a positive integer, got {version!r}")
    return number


def input_spec(config: ModelConfig) -> list[dict[str, str]]:
    """One Triton input per feature column, in the order the model was trained on."""
    unsupported = [f"{c.name} ({c.type})" for c in config.dataset.features if c.type not in TRITON_TYPES]
    if unsupported:
        raise ExportError(f"{config.name}: features of these types cannot be served: {', '.join(unsupported)}")
    reserved = [c.name for c in config.dataset.features if c.name in PACKED_INPUTS]
    if reserved:
        raise ExportError(f"{config.name}: feature column(s) {', '.join(reserved)} take the name of a packed input; "
                          f"rename the column (the packed inputs are {', '.join(PACKED_INPUTS)})")
    return [{"name": c.name, "type": c.type, "triton": TRITON_TYPES[c.type]} for c in config.dataset.features]


def exporter_id() -> str:
    """Changes when anything that shapes the exported files changes (format, model.py, converter versions)."""
    from importlib.metadata import version

    parts = [str(FORMAT), MODEL_PY, json.dumps(TARGET_OPSET, sort_keys=True)]
    parts += [f"{pkg}=={version(pkg)}" for pkg in ("skl2onnx", "onnx")]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


# --- conversion ------------------------------------------------------------------------------


def _sklearn_thresholds(thresholds: np.ndarray, precision: type) -> np.ndarray:
    """Thresholds in ``precision`` with which ``x <= w`` routes every ``x`` as scikit-learn's trees do.

    scikit-learn's trees cast a row to float32 and test ``float32(x) <= t`` with a float64 ``t``. With
    ``f``, the largest float32 at or below ``t``, that is ``float32(x) <= f``: for float32 rows ``w = f``;
    for float64 rows ``w`` is the largest double that rounds (to nearest, ties to even) to ``f`` or below:
    the midpoint between ``f`` and the next float32 (exact in float64), or the double just below it when
    the midpoint rounds up. Infinite thresholds (a split of the missing values from all others) stay infinite.
    """
    import numpy as np

    with np.errstate(over="ignore", invalid="ignore"):  # thresholds beyond float32's range, and infinities
        below = thresholds.astype(np.float32)
        over = below.astype(np.float64) > thresholds
        below[over] = np.nextafter(below[over], np.float32(-np.inf))
        if precision == np.float32:
            return below
        low = below.astype(np.float64)
        up = np.nextafter(below, np.float32(np.inf)).astype(np.float64)
        top = np.isinf(up) & ~np.isinf(low)  # the largest float32: rounding overflows half an ulp above it
        up[top] = low[top] + (low[top] - np.nextafter(below[top], np.float32(0)).astype(np.float64))
        middle = (low + up) / 2
        middle[np.isinf(low)] = low[np.isinf(low)]
        rounds_down = middle.astype(np.float32) == below
        return np.where(rounds_down, middle, np.nextafter(middle, -np.inf))


def _tree_nodes(trees: list[Any], precision: type) -> dict[str, Any]:
    """The ``nodes_*`` attributes of an ai.onnx.ml tree ensemble for scikit-learn ``Tree`` objects (tree id = index).

    Each split keeps scikit-learn's missing-value direction (``missing_go_to_left``: the side the node's
    missing training values went to, or its larger child when it saw none) and a threshold from
    :func:`_sklearn_thresholds` in ``precision`` (the ensemble's input type).
    """
    import numpy as np
    from onnx import numpy_helper

    parts: dict[str, list[np.ndarray]] = {}

    def add(key: str, values: np.ndarray) -> None:
        parts.setdefault(key, []).append(values)

    for tree_id, tree in enumerate(trees):
        leaf = tree.children_left < 0
        add("nodes_treeids", np.full(tree.node_count, tree_id, dtype=np.int64))
        add("nodes_nodeids", np.arange(tree.node_count, dtype=np.int64))
        add("nodes_featureids", np.where(leaf, 0, tree.feature))
        add("nodes_modes", np.where(leaf, "LEAF", "BRANCH_LEQ"))
        add("nodes_values", np.where(leaf, 0, _sklearn_thresholds(tree.threshold, precision)).astype(precision))
        add("nodes_truenodeids", np.where(leaf, 0, tree.children_left))
        add("nodes_falsenodeids", np.where(leaf, 0, tree.children_right))
        add("nodes_missing_value_tracks_true", np.where(leaf, 0, tree.missing_go_to_left))
    nodes = {key: np.concatenate(values) for key, values in parts.items()}
    attrs: dict[str, Any] = {key: [int(v) for v in values] for key, values in nodes.items()
                             if key not in ("nodes_modes", "nodes_values")}
    attrs["nodes_modes"] = [str(m) for m in nodes["nodes_modes"]]
    attrs["nodes_values_as_tensor"] = numpy_helper.from_array(nodes["nodes_values"], "nodes_values")
    return attrs


def _leaves(trees: list[Any]) -> list[tuple[int, int, Any]]:
    """(tree id, node id, value ``[n_outputs, n_values]``) of every leaf."""
    import numpy as np

    return [(t, int(n), tree.value[n]) for t, tree in enumerate(trees) for n in np.flatnonzero(tree.children_left < 0)]


def _sklearn_tree_ensemble(scope, operator, container) -> None:
    """RandomForest / ExtraTrees / GradientBoosting / DecisionTree classifiers, routing rows as scikit-learn does.

    Replaces skl2onnx's converters for these, which drop each split's missing-value direction
    (sklearn-onnx#1253: a row with a missing number takes another branch than in scikit-learn), and
    never return on a tree with an infinite threshold (one that splits the missing values from the rest,
    which scikit-learn makes when the training data has missing values). Thresholds come from
    :func:`_sklearn_thresholds` (scikit-learn compares the row cast to float32) and leaf values are kept
    in the input's precision (float64 here).

    * RandomForest / ExtraTrees / a DecisionTree: a TreeEnsembleClassifier whose leaves hold each class's
      share divided by the number of trees (``predict_proba``: the mean of the trees' normalised leaves);
    * GradientBoosting (binary, ``init`` None or "zero"): a TreeEnsembleRegressor sums ``learning_rate`` x
      leaf values, the initial raw score is added in float64, and the probability is ``expit(raw)``
      (``expit(2 raw)`` for the exponential loss), as ``predict_proba`` computes it.

    Probabilities leave as the graph's declared type (float64 here); the label is the most probable class.
    """
    import numpy as np
    from onnx import TensorProto, numpy_helper
    from sklearn.ensemble import GradientBoostingClassifier

    model = operator.raw_operator
    kind = type(model).__name__
    if getattr(model, "n_outputs_", 1) != 1:
        raise NotImplementedError(f"{kind} with {model.n_outputs_} outputs cannot be converted")
    classes = np.asarray(model.classes_)
    if classes.dtype.kind in "iub":
        labels = {"classlabels_int64s": [int(c) for c in classes]}
        label_tensor = numpy_helper.from_array(classes.astype(np.int64), "classes")
    else:
        labels = {"classlabels_strings": [str(c) for c in classes]}
        label_tensor = numpy_helper.from_array(np.array([str(c) for c in classes], dtype=object), "classes")
    label_out, proba_out = operator.outputs[0].full_name, operator.outputs[1].full_name
    proba_type = TensorProto.DOUBLE if type(operator.outputs[1].type).__name__ == "DoubleTensorType" else TensorProto.FLOAT

    def name(prefix: str) -> str:
        return scope.get_unique_variable_name(prefix)

    def node(op_type: str, inputs: list[str], outputs: list[str], **attrs: Any) -> None:
        container.add_node(op_type, inputs, outputs, name=scope.get_unique_operator_name(op_type), **attrs)

    def constant(prefix: str, tensor_type: int, values: list) -> str:
        key = name(prefix)
        container.add_initializer(key, tensor_type, [len(values)], values)
        return key

    # onnxruntime compares in the input's precision and wants thresholds and leaf values in it too
    rows = operator.inputs[0].full_name
    input_type = type(operator.inputs[0].type).__name__
    precision = np.float32 if input_type == "FloatTensorType" else np.float64
    if input_type not in ("FloatTensorType", "DoubleTensorType"):
        rows = name("rows_double")
        node("Cast", [operator.inputs[0].full_name], [rows], to=TensorProto.DOUBLE)

    if isinstance(model, GradientBoostingClassifier):
        if len(classes) != 2:
            raise NotImplementedError(f"{kind} with {len(classes)} classes cannot be converted (binary only)")
        if model.init not in (None, "zero"):
            raise NotImplementedError(f"{kind} with an init estimator cannot be converted")
        trees = [e.tree_ for e in model.estimators_[:, 0]]
        leaves = _leaves(trees)
        ensemble = {
            "n_targets": 1,
            "aggregate_function": "SUM",
            "post_transform": "NONE",
            "target_treeids": [t for t, _, _ in leaves],
            "target_nodeids": [n for _, n, _ in leaves],
            "target_ids": [0] * len(leaves),
            "target_weights_as_tensor": numpy_helper.from_array(
                np.array([model.learning_rate * v[0, 0] for _, _, v in leaves], dtype=precision), "target_weights"),
        }
        summed, summed64, raw, positive, negative, probabilities = (
            name(p) for p in ("tree_sum", "tree_sum_double", "raw_score", "positive", "negative", "probabilities"))
        node("TreeEnsembleRegressor", [rows], [summed], op_domain="ai.onnx.ml", op_version=3,
             **_tree_nodes(trees, precision), **ensemble)
        node("Cast", [summed], [summed64], to=TensorProto.DOUBLE)
        initial = float(model._raw_predict_init(np.zeros((1, model.n_features_in_))).ravel()[0])
        node("Add", [summed64, constant("initial_raw_score", TensorProto.DOUBLE, [initial])], [raw])
        if model.loss == "exponential":
            scaled = name("raw_score_x2")
            node("Mul", [raw, constant("two", TensorProto.DOUBLE, [2.0])], [scaled])
            raw = scaled
        node("Sigmoid", [raw], [positive])
        node("Sub", [constant("one", TensorProto.DOUBLE, [1.0]), positive], [negative])
        node("Concat", [negative, positive], [probabilities], axis=1)
        node("Cast", [probabilities], [proba_out], to=proba_type)
        best = name("best_class")
        node("ArgMax", [probabilities], [best], axis=1, keepdims=0)
        container.add_initializer(label_tensor.name, label_tensor.data_type, list(label_tensor.dims),
                                  label_tensor)
        node("Gather", [label_tensor.name, best], [label_out], axis=0)
        return

    trees = [model.tree_] if hasattr(model, "tree_") else [e.tree_ for e in model.estimators_]
    leaves = _leaves(trees)
    weights, class_ids = [], []
    for _, _, value in leaves:
        counts = value[0]
        total = counts.sum()
        weights.append(counts / (total if total > 0 else 1.0) / len(trees))
        class_ids.append(np.arange(len(classes)))
    ensemble = {
        **labels,
        "post_transform": "NONE",
        "class_treeids": [t for t, _, _ in leaves for _ in range(len(classes))],
        "class_nodeids": [n for _, n, _ in leaves for _ in range(len(classes))],
        "class_ids": [int(i) for i in np.concatenate(class_ids)],
        "class_weights_as_tensor": numpy_helper.from_array(np.concatenate(weights).astype(precision), "class_weights"),
    }
    probabilities = name("probabilities_float32")
    node("TreeEnsembleClassifier", [rows], [label_out, probabilities], op_domain="ai.onnx.ml", op_version=3,
         **_tree_nodes(trees, precision), **ensemble)
    node("Cast", [probabilities], [proba_out], to=proba_type)


def _double_precision_trees(scope, operator, container) -> None:
    """skl2onnx's HistGradientBoosting classifier converter, keeping thresholds and leaf values in float64.

    scikit-learn's HistGradientBoosting compares float64 rows with float64 thresholds and sends a missing
    value where each node's ``missing_go_to_left`` says, which skl2onnx carries over. The stock converter
    (ai.onnx.ml opset 1) rounds thresholds to float32. This one asks for opset 3 and moves the float64
    arrays into the ``*_as_tensor`` attributes, then casts the float32 probabilities onnxruntime returns
    to the double the graph declares. It also writes ``nodes_missing_value_tracks_true`` as ints:
    skl2onnx 1.20 mixes in Python bools for leaves, which protobuf 7 rejects ("Expected an int, got a boolean").
    """
    import numpy as np
    from onnx import TensorProto, numpy_helper
    from skl2onnx.operator_converters.random_forest import convert_sklearn_random_forest_classifier

    add_node = container.add_node
    double_outputs = {v.full_name for v in operator.outputs if type(v.type).__name__ == "DoubleTensorType"}
    # onnxruntime compares in the input's precision and wants the thresholds in it too
    precision = np.float64 if type(operator.inputs[0].type).__name__ == "DoubleTensorType" else np.float32

    def add_tree_node(op_type, inputs, outputs, op_domain="", op_version=None, name=None, **attrs):
        if op_type != "TreeEnsembleClassifier":
            return add_node(op_type, inputs, outputs, op_domain=op_domain, op_version=op_version, name=name, **attrs)
        if "nodes_missing_value_tracks_true" in attrs:
            attrs["nodes_missing_value_tracks_true"] = [int(v) for v in attrs["nodes_missing_value_tracks_true"]]
        for key in ("nodes_values", "nodes_hitrates", "class_weights", "base_values"):
            values = attrs.pop(key, None)
            if values is not None:
                attrs[f"{key}_as_tensor"] = numpy_helper.from_array(np.asarray(values, dtype=precision), key)
        outputs = list(outputs)
        casts = []
        for i, out in enumerate(outputs):
            if out in double_outputs and i > 0:  # probabilities: onnxruntime's tree ensembles return float
                outputs[i] = scope.get_unique_variable_name(f"{out}_float")
                casts.append((outputs[i], out))
        add_node(op_type, inputs, outputs, op_domain=op_domain, op_version=3, name=name, **attrs)
        for source, target in casts:
            add_node("Cast", source, target, to=TensorProto.DOUBLE, name=scope.get_unique_operator_name("Cast"))

    container.add_node = add_tree_node
    try:
        convert_sklearn_random_forest_classifier(scope, operator, container, op_version=3)
    finally:
        del container.add_node


def _simple_imputer(scope, operator, container) -> None:
    """SimpleImputer on numbers (float64 kept) or on categories, with missing values as the export receives them.

    Numbers: a NaN becomes the column's fill value (``statistics_``), in the input's precision (skl2onnx's
    converter writes an ``Imputer`` node with float32 fill values, which onnxruntime does not run on
    float64). Categories: a missing category arrives as :data:`MISSING_CATEGORY`; where the fill value is
    that string too (the pipelines :func:`include.training.train.build_estimator` builds) nothing is left to do,
    otherwise it is replaced by the fill value.
    """
    import numpy as np
    from onnx import TensorProto
    from skl2onnx.operator_converters.common import concatenate_variables
    from sklearn.utils._missing import is_scalar_nan

    imputer = operator.raw_operator
    if imputer.add_indicator:
        raise NotImplementedError("SimpleImputer(add_indicator=True) cannot be converted")
    rows = concatenate_variables(scope, operator.inputs, container)
    out = operator.outputs[0].full_name
    fills = list(imputer.statistics_)
    if any(v is None or (isinstance(v, float) and np.isnan(v)) for v in fills):
        raise NotImplementedError("SimpleImputer dropped a feature that had no value in training; "
                                  "use keep_empty_features=True")

    def op_name(op_type: str) -> str:
        return scope.get_unique_operator_name(op_type)

    fill = scope.get_unique_variable_name("fill_values")
    if type(operator.inputs[0].type).__name__ == "StringTensorType":
        if all(str(v) == MISSING_CATEGORY for v in fills):
            container.add_node("Identity", [rows], [out], name=op_name("Identity"))
            return
        container.add_initializer(fill, TensorProto.STRING, [len(fills)], [str(v).encode() for v in fills])
        flag, missing = scope.get_unique_variable_name("is_missing_int"), scope.get_unique_variable_name("is_missing")
        container.add_node("LabelEncoder", [rows], [flag], op_domain="ai.onnx.ml", op_version=2,
                           keys_strings=[MISSING_CATEGORY], values_int64s=[1], default_int64=0,
                           name=op_name("LabelEncoder"))
        container.add_node("Cast", [flag], [missing], to=TensorProto.BOOL, name=op_name("Cast"))
    else:
        if not is_scalar_nan(imputer.missing_values):
            raise NotImplementedError(f"SimpleImputer(missing_values={imputer.missing_values!r}) on numbers "
                                      "cannot be converted (NaN only)")
        double = type(operator.inputs[0].type).__name__ == "DoubleTensorType"
        container.add_initializer(fill, TensorProto.DOUBLE if double else TensorProto.FLOAT, [len(fills)],
                                  [float(v) for v in fills])
        missing = scope.get_unique_variable_name("is_missing")
        container.add_node("IsNaN", [rows], [missing], name=op_name("IsNaN"))
    container.add_node("Where", [missing, fill, rows], [out], name=op_name("Where"))


def convert_to_onnx(model: Any, config: ModelConfig) -> bytes:
    """The fitted pipeline as an ONNX model: one ``[N, 1]`` input per feature, ``probabilities`` ``[N, classes]``.

    Numeric features enter as double (scikit-learn scales them in float64 too), a missing one as NaN;
    categorical ones as strings, a missing one as :data:`MISSING_CATEGORY`. Raises :class:`ExportError`
    naming the pipeline's steps when skl2onnx (or a converter of this module) cannot convert it.
    """
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import DoubleTensorType, StringTensorType
    from sklearn.ensemble import (
        ExtraTreesClassifier,
        GradientBoostingClassifier,
        HistGradientBoostingClassifier,
        RandomForestClassifier,
    )
    from sklearn.impute import SimpleImputer
    from sklearn.tree import DecisionTreeClassifier, ExtraTreeClassifier

    initial_types = [
        (c["name"], StringTensorType([None, 1]) if c["type"] in STRING_TYPES else DoubleTensorType([None, 1]))
        for c in input_spec(config)
    ]
    converters = {
        RandomForestClassifier: _sklearn_tree_ensemble,
        ExtraTreesClassifier: _sklearn_tree_ensemble,
        GradientBoostingClassifier: _sklearn_tree_ensemble,
        DecisionTreeClassifier: _sklearn_tree_ensemble,
        ExtraTreeClassifier: _sklearn_tree_ensemble,
        HistGradientBoostingClassifier: _double_precision_trees,
        SimpleImputer: _simple_imputer,
    }
    try:
        onx = convert_sklearn(
            model,
            initial_types=initial_types,
            name=config.name,  # the graph name; skl2onnx's default is a random uuid
            options={id(model): {"zipmap": False}},
            target_opset=TARGET_OPSET,
            custom_conversion_functions=converters,
        )
    except Exception as exc:  # skl2onnx raises anything from RuntimeError to MissingShapeCalculator
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"{config.name}: skl2onnx cannot convert {_describe(model)}: {reason}") from exc
    outputs = [o.name for o in onx.graph.output]
    if ONNX_PROBABILITIES not in outputs:
        raise ExportError(f"{config.name}: the ONNX export has no {ONNX_PROBABILITIES!r} output (outputs: {outputs})")
    return onx.SerializeToString()


def _describe(model: Any) -> str:
    steps = getattr(model, "steps", None)
    return " → ".join(type(s).__name__ for _, s in steps) if steps else type(model).__name__


def onnx_feeds(frame: pd.DataFrame, spec: list[dict[str, str]]) -> dict[str, np.ndarray]:
    """The ONNX model's inputs for ``frame``: what model.py builds from the Triton tensors.

    Numbers become float64 ``[N, 1]`` (a null, NaN or ``pd.NA``, becomes NaN); text becomes strings, a
    null (None, NaN, ``pd.NA``) becoming :data:`MISSING_CATEGORY`, as Triton's client and the batch job send it.
    """
    import numpy as np

    missing = [c["name"] for c in spec if c["name"] not in frame.columns]
    if missing:
        raise ExportError(f"frame is missing feature column(s): {', '.join(missing)}")
    feeds = {}
    for column in spec:
        values = frame[column["name"]]
        if column["type"] in STRING_TYPES:
            text = [MISSING_CATEGORY if missing else str(v) for v, missing in zip(values, values.isna(), strict=True)]
            feeds[column["name"]] = np.array(text, dtype=object).reshape(-1, 1)
        else:
            try:
                feeds[column["name"]] = values.to_numpy(dtype=np.float64, na_value=np.nan).reshape(-1, 1)
            except (TypeError, ValueError) as exc:
                raise ExportError(f"feature column {column['name']!r} ({column['type']}) holds values that are not "
                                  f"numbers: {exc}") from None
    return feeds


def positive_column(model: Any, config: ModelConfig) -> int:
    classes = list(getattr(model, "classes_", []))
    if len(classes) != 2:
        raise ExportError(f"{config.name}: only binary classifiers can be served; the model's classes are {classes}")
    return 1  # scikit-learn sorts classes_: the positive label (1 / True) is the second


def parity_frame(example: pd.DataFrame, config: ModelConfig, sample: pd.DataFrame | None = None) -> pd.DataFrame:
    """Rows to compare ONNX and scikit-learn on; each row's index label names what it checks.

    * ``"sample"``: the ``sample`` rows, when given; ``"example"``: the logged input example;
    * ``"<feature> missing"``, for every numeric feature: the example with that feature null, the way
      :func:`include.data.dataset.read_dataset` reads a null (``pd.NA`` in an ``Int64`` / ``boolean`` column
      for ``int`` / ``bool``, NaN for ``float``);
    * for every categorical feature, the example with it null as read_dataset reads it (None,
      ``"<feature> missing"``) and as pandas' CSV reader does (NaN, ``"<feature> missing (NaN)"``), and
      set to a category never seen in training (``"<feature> unseen"``: ``handle_unknown``).

    Columns are the configured features, in order.
    """
    import numpy as np
    import pandas as pd

    names = config.dataset.feature_names
    example = pd.DataFrame(example)[names].reset_index(drop=True)
    null_dtypes = {"int": "Int64", "bool": "boolean"}
    cases: list[tuple[str, pd.DataFrame]] = []
    if sample is not None:
        cases.append(("sample", sample[names]))
    cases.append(("example", example))
    for column in config.dataset.features:
        if column.type in STRING_TYPES:
            values = {"missing": None, "missing (NaN)": np.nan, "unseen": UNKNOWN_CATEGORY}
            for case, value in values.items():
                rows = example.astype({column.name: object})
                rows[column.name] = pd.Series([value] * len(rows), index=rows.index, dtype=object)
                cases.append((f"{column.name} {case}", rows))
        else:
            rows = example.copy()
            dtype = null_dtypes.get(column.type, "float64")
            rows[column.name] = pd.Series(pd.array([None] * len(rows), dtype=dtype), index=rows.index)
            cases.append((f"{column.name} missing", rows))
    frames = [rows.set_axis(pd.Index([label] * len(rows)), axis=0) for label, rows in cases]
    return pd.concat(frames)


def _cases(labels: Iterable[Any], limit: int = 8) -> str:
    """``"credit_score missing, region unseen"`` for parity_frame's labels, ``"row 3, row 17"`` for a plain index."""
    import numbers

    unique = list(dict.fromkeys(labels))
    named = [f"row {v}" if isinstance(v, numbers.Integral) else str(v) for v in unique[:limit]]
    more = f" and {len(unique) - limit} more" if len(unique) > limit else ""
    return ", ".join(named) + more


def _sklearn_scores(model: Any, frame: pd.DataFrame, column: int, config: ModelConfig) -> np.ndarray:
    """scikit-learn's probability of class ``column`` for ``frame``; rows it cannot score raise ExportError naming them."""
    try:
        return model.predict_proba(frame)[:, column]
    except Exception as exc:  # scikit-learn's "Input X contains NaN", or whatever a foreign step raises
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        labels = frame.index.to_numpy()
        failing = []
        for label in dict.fromkeys(labels):
            try:
                model.predict_proba(frame[labels == label])
            except Exception:  # the same failure, located
                failing.append(label)
        where = f"rows with {_cases(failing)}" if failing else f"the {len(frame)} parity rows"
        raise ExportError(
            f"{config.name}: scikit-learn's {_describe(model)} cannot score {where} ({reason}) but the ONNX export "
            f"would score them: refused, so that Triton and the batch job never score a row the model itself "
            f"cannot. Retrain the model: the pipelines include.training.train builds impute missing numbers for "
            f"estimators without native missing-value support"
        ) from exc


def check_parity(onnx_model: bytes, model: Any, frame: pd.DataFrame, config: ModelConfig,
                 tolerance: float = PARITY_TOLERANCE) -> dict[str, float]:
    """Compare the ONNX model's probabilities with scikit-learn's ``predict_proba`` on ``frame``.

    ``frame``'s index names each row's case in the errors (:func:`parity_frame` labels them). Returns
    ``{"rows", "max_abs_diff", "tolerance"}``. Raises :class:`ExportError` when onnxruntime cannot run
    the export, when scikit-learn cannot score some rows (e.g. a missing number for an estimator without
    missing-value support: the export would score them anyway), or when a probability differs by more
    than ``tolerance`` (or is NaN on one side only); the message names the cases that disagree.
    """
    import numpy as np
    import onnxruntime as ort

    column = positive_column(model, config)
    feeds = onnx_feeds(frame, input_spec(config))
    try:
        session = ort.InferenceSession(onnx_model, providers=["CPUExecutionProvider"])
        got = session.run([ONNX_PROBABILITIES], feeds)[0][:, column].astype(np.float64)
    except Exception as exc:  # onnxruntime's errors (Fail, InvalidProtobuf, InvalidGraph…) share no base class
        raise ExportError(f"{config.name}: onnxruntime cannot run the ONNX export of {_describe(model)}: {exc}") from exc
    expected = _sklearn_scores(model, frame[config.dataset.feature_names], column, config)
    diff = np.abs(got - expected)
    wrong = ~(diff <= tolerance)  # NaN on either side is wrong too
    worst = float(np.nanmax(diff)) if len(diff) and not np.isnan(diff).all() else (float("nan") if len(diff) else 0.0)
    if wrong.any():
        row = int(np.nanargmax(diff)) if not np.isnan(diff).all() else int(np.flatnonzero(wrong)[0])
        raise ExportError(
            f"{config.name}: the ONNX export disagrees with scikit-learn: max |diff| {worst:.3g} > {tolerance:g} "
            f"on {int(wrong.sum())} of {len(diff)} rows, on rows with: {_cases(frame.index[wrong])} "
            f"(worst: {_cases([frame.index[row]])}: onnx {got[row]:.6f}, sklearn {expected[row]:.6f})"
        )
    return {"rows": len(diff), "max_abs_diff": worst, "tolerance": tolerance}


# --- repository layout -----------------------------------------------------------------------


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_marker(version_dir: Path) -> dict | None:
    """The version's ``export.json`` if its files are intact (hashes match), else None."""
    try:
        marker = json.loads((version_dir / MARKER).read_text())
        intact = (
            marker.get("format") == FORMAT
            and _sha256(version_dir / "model.onnx") == marker["onnx_sha256"]
            and _sha256(version_dir / "model.py") == marker["model_py_sha256"]
        )
    except (OSError, ValueError, KeyError):
        return None
    return marker if intact else None


def exported_versions(repo_dir: Path | str, model_name: str) -> list[int]:
    """Versions with intact exports under ``<repo>/<model>/``."""
    model_dir = Path(repo_dir) / model_name
    if not model_dir.is_dir():
        return []
    found = [int(p.name) for p in model_dir.iterdir() if p.name.isdigit() and read_marker(p) is not None]
    return sorted(found)


def packed_columns(inputs: list[dict[str, str]]) -> dict[str, list[str]]:
    """The feature columns each packed input carries, in order; an input with no column is left out."""
    columns = {
        NUMERIC_INPUT: [i["name"] for i in inputs if i["type"] not in STRING_TYPES],
        CATEGORICAL_INPUT: [i["name"] for i in inputs if i["type"] in STRING_TYPES],
    }
    return {name: cols for name, cols in columns.items() if cols}


def render_config(model_name: str, inputs: list[dict[str, str]], versions: Iterable[int]) -> str:
    """``config.pbtxt`` for the python backend; deterministic for the same arguments.

    Every input is optional to Triton: a request sends either the packed inputs or one input per
    feature, and model.py names what is missing. The ``parameters`` list each packed input's columns
    (``GET /v2/models/<model>/config`` shows them to clients).
    """
    listed = ", ".join(str(v) for v in sorted(set(versions)))
    packed = packed_columns(inputs)
    packed_types = {NUMERIC_INPUT: "TYPE_FP64", CATEGORICAL_INPUT: "TYPE_STRING"}
    declared = [(i["name"], i["triton"], 1) for i in inputs]
    declared += [(name, packed_types[name], len(cols)) for name, cols in packed.items()]
    parameters = [("intra_op_threads", "1"), *((name, json.dumps(cols)) for name, cols in packed.items())]
    lines = [
        "# Generated by include.serving.triton.repository: do not edit.",
        f"name: {json.dumps(model_name)}",
        'backend: "python"',
        f"max_batch_size: {MAX_BATCH_SIZE}",
        f"version_policy: {{ specific: {{ versions: [ {listed} ] }} }}",
        "input [",
        ",\n".join(f"  {{ name: {json.dumps(name)} data_type: {dtype} dims: [ {width} ] optional: true }}"
                   for name, dtype, width in declared),
        "]",
        "output [",
        f"  {{ name: {json.dumps(OUTPUT_NAME)} data_type: TYPE_FP64 dims: [ 1 ] }}",
        "]",
        f"dynamic_batching {{ max_queue_delay_microseconds: {MAX_QUEUE_DELAY_US} }}",
        "instance_group [ { kind: KIND_CPU count: 1 } ]",
        *(f"parameters: {{ key: {json.dumps(key)} value: {{ string_value: {json.dumps(value)} }} }}"
          for key, value in parameters),
    ]
    return "\n".join(lines) + "\n"


def _write_if_changed(path: Path, text: str) -> bool:
    if path.is_file() and path.read_text() == text:
        return False
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
    return True


def set_served_versions(repo_dir: Path | str, model_name: str, versions: Iterable[str | int],
                        primary: str | int | None = None) -> list[int]:
    """Rewrite ``config.pbtxt`` so that exactly ``versions`` load (those exported, with ``primary``'s inputs).

    A listed version that is not exported, or whose inputs differ from the primary's (the feature
    schema changed between versions), cannot share the config: it is left out with a warning.
    Returns the versions the config lists. Triton applies the change on the next load request.
    """
    model_dir = Path(repo_dir) / model_name
    wanted = sorted({version_number(v) for v in versions})
    if not wanted:
        raise ExportError(f"{model_name}: at least one version must be served")
    primary = version_number(primary) if primary is not None else wanted[-1]
    markers = {v: read_marker(model_dir / str(v)) for v in {*wanted, primary}}
    if markers[primary] is None:
        raise ExportError(f"{model_name}: version {primary} is not exported in {model_dir}")
    inputs = markers[primary]["inputs"]
    served = []
    for v in wanted:
        if markers[v] is None:
            log.warning("%s: version %s is not exported in %s: not served", model_name, v, model_dir)
        elif markers[v]["key"].get("exporter") != markers[primary]["key"].get("exporter"):
            log.warning("%s: version %s was exported by another exporter: not served beside version %s", model_name,
                        v, primary)
        elif markers[v]["inputs"] != inputs:
            log.warning("%s: version %s has other inputs than version %s: not served beside it", model_name, v, primary)
        else:
            served.append(v)
    if _write_if_changed(model_dir / "config.pbtxt", render_config(model_name, inputs, served)):
        log.info("%s: config.pbtxt now serves versions %s", model_name, served)
    return served


def remove_version(repo_dir: Path | str, model_name: str, version: str | int) -> bool:
    """Delete a version's folder (after it is unloaded and no longer listed); True if it existed."""
    version_dir = Path(repo_dir) / model_name / str(version_number(version))
    if not version_dir.exists():
        return False
    shutil.rmtree(version_dir)
    return True


def _replace_dir(staged: Path, target: Path) -> None:
    """Swap ``staged`` in as ``target``; other versions' folders are never touched."""
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        os.replace(target, old)
    os.replace(staged, target)
    shutil.rmtree(old, ignore_errors=True)


def _stage_export(client: MlflowClient, model_name: str, version: int, config: ModelConfig, key: dict,
                  staged: Path, sample: pd.DataFrame | None) -> dict:
    import mlflow.artifacts
    import mlflow.sklearn
    from mlflow.models import Model

    source = client.get_model_version_download_uri(model_name, str(version))  # this client's store, not mlflow's global one
    with tempfile.TemporaryDirectory(prefix="modelops-export-") as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=tmp)
        model = mlflow.sklearn.load_model(local)
        example = Model.load(local).load_input_example(local)
    if example is None:
        raise ExportError(f"{model_name} version {version}: the logged model has no input example to check parity on")
    onnx_model = convert_to_onnx(model, config)
    parity = check_parity(onnx_model, model, parity_frame(example, config, sample), config)
    staged.mkdir(parents=True)
    (staged / "model.onnx").write_bytes(onnx_model)
    (staged / "model.py").write_text(MODEL_PY)
    marker = {
        "format": FORMAT,
        "key": key,
        "inputs": input_spec(config),
        "output": OUTPUT_NAME,
        "onnx_output": ONNX_PROBABILITIES,
        "positive_column": positive_column(model, config),
        "classes": [c.item() if hasattr(c, "item") else c for c in model.classes_],
        "converted": _describe(model),
        "parity": parity,
        "onnx_sha256": _sha256(staged / "model.onnx"),
        "model_py_sha256": _sha256(staged / "model.py"),
    }
    (staged / MARKER).write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n")
    return marker


def export_version(
    client: MlflowClient,
    model_name: str,
    version: str | int,
    config: ModelConfig,
    repo_dir: Path | str,
    keep_versions: Iterable[str | int] = (),
    *,
    sample: pd.DataFrame | None = None,
) -> Path:
    """Export registry version ``version`` to ``<repo>/<model>/<version>/`` and serve it beside ``keep_versions``.

    A no-op when the same registry version was already exported by the same exporter and its files
    are intact; a corrupted or stale export is rebuilt. Conversion happens in a staging folder and
    is checked for parity with scikit-learn (on the logged input example, the same rows with unseen
    categories, and ``sample`` when given) before it replaces anything. A kept version exported by
    an older exporter (its model.py would not match the config written now) is exported again; if
    that fails it is left out with a warning rather than failing this export. Returns the version folder.
    """
    number = version_number(version)
    model_dir = Path(repo_dir) / model_name
    version_dir = _export_if_stale(client, model_name, number, config, model_dir, sample)
    for kept in {version_number(v) for v in keep_versions} - {number}:
        if (model_dir / str(kept)).exists():
            try:
                _export_if_stale(client, model_name, kept, config, model_dir, None)
            except Exception as exc:  # ExportError, or the registry no longer has the version
                log.warning("%s version %s: cannot export it again for this exporter (%s): %s", model_name, kept,
                            type(exc).__name__, exc)
    set_served_versions(repo_dir, model_name, [number, *keep_versions], primary=number)
    return version_dir


def _export_if_stale(client: MlflowClient, model_name: str, number: int, config: ModelConfig, model_dir: Path,
                     sample: pd.DataFrame | None) -> Path:
    """``<model_dir>/<number>`` exported from the registry by this exporter: left alone when it already is."""
    version_dir = model_dir / str(number)
    registered = client.get_model_version(model_name, str(number))
    key = {"model": model_name, "version": number, "source": registered.source, "run_id": registered.run_id,
           "exporter": exporter_id()}
    current = read_marker(version_dir)
    if current is not None and current["key"] == key:
        log.info("%s version %s is already exported in %s", model_name, number, version_dir)
        return version_dir
    if version_dir.exists():
        log.warning("%s version %s: replacing a stale or damaged export in %s", model_name, number, version_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    staged = model_dir / f".{number}.staged-{os.getpid()}"
    shutil.rmtree(staged, ignore_errors=True)
    try:
        marker = _stage_export(client, model_name, number, config, key, staged, sample)
        _replace_dir(staged, version_dir)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    log.info("Exported %s version %s (%s) to %s; parity max |diff| %.3g on %d rows", model_name, number,
             marker["converted"], version_dir, marker["parity"]["max_abs_diff"], marker["parity"]["rows"])
    return version_dir
