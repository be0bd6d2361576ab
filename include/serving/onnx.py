"""ONNX export of a registered scikit-learn model, and the one parity check every scorer of it passes.

One home for what Triton (:mod:`include.serving.triton.repository`), the batch job
(:mod:`include.batch.worker`) and the deployment's verification (:mod:`include.serving.deploy`) share:

* :func:`convert_to_onnx`: the fitted pipeline as ONNX bytes, one ``[N, 1]`` input per feature
  (:func:`input_spec`) and a ``probabilities`` output ``[N, classes]``; :func:`onnx_feeds` builds those
  inputs from a DataFrame, :func:`positive_column` says which output column is the positive class;
* :func:`parity_frame`: the rows a parity check runs on, each labelled with the case it checks
  (the rows as given, every feature missing, every category unseen);
* :func:`check_parity`: THE comparison: two scorings of the same rows agree within
  :data:`PARITY_TOLERANCE` (absolute, in probability), NaN on either side counting as a disagreement,
  or :class:`ParityError` names the cases that differ. :func:`check_export` runs it on an export
  (onnxruntime) against the scikit-learn model; the deployment runs it on Triton's answers against
  the MLflow model's.

Why ONNX rather than the pickled model: Triton's virtualenv pins numpy<2 and has no scikit-learn, and
the pickle/skops format is tied to the exact scikit-learn that trained it. ONNX is a stable format,
onnxruntime runs it ~50x faster per row than a pyfunc server, and the same bytes serve online and in
batch. A model that skl2onnx cannot convert, or whose ONNX outputs differ from scikit-learn's, is
refused with :class:`ExportError`.

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
for categories) are converted here too. The parity rows hold every numeric feature missing and every
categorical one missing and unseen, and an export is refused when scikit-learn cannot score such a row
(an older pipeline without imputer) or scores it otherwise.

No Airflow, no Triton here; numpy, pandas, skl2onnx and onnxruntime are imported inside functions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from include.config import ModelConfig

ONNX_PROBABILITIES = "probabilities"  # the ONNX model's output: [N, classes] probabilities, float64
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
PARITY_TOLERANCE = 1e-5  # probability, absolute; measured ~1e-7 between an export and its scikit-learn model
UNKNOWN_CATEGORY = "__unseen_category__"  # a category no training set holds: parity rows for handle_unknown
MISSING_CATEGORY = ""  # a missing category as the ONNX model receives it (Triton's client sends None as "")
STRING_TYPES = ("category", "string")  # feature types that enter the ONNX model as strings; the rest as double
CONVERTIBLE_TYPES = ("int", "float", "bool", *STRING_TYPES)
PARITY_MISSING_ROWS = 5  # rows repeated with each missing / unseen value when the base rows are many


class ExportError(RuntimeError):
    """A model cannot be exported to ONNX faithfully: the message names the model (version) and the cause."""


class ParityError(ExportError):
    """Two scorings of the same rows disagree beyond the tolerance; the message names the cases that differ."""


def input_spec(config: ModelConfig) -> list[dict[str, str]]:
    """``[{"name", "type"}]``: one ONNX input per feature column, in the order the model was trained on.

    ``type`` is the configured column type (``int``, ``float``, ``bool``, ``category``, ``string``).
    Raises :class:`ExportError` naming the features of any other type (timestamps cannot be converted).
    """
    unsupported = [f"{c.name} ({c.type})" for c in config.dataset.features if c.type not in CONVERTIBLE_TYPES]
    if unsupported:
        raise ExportError(f"{config.name}: features of these types cannot be converted to ONNX (nor served): "
                          f"{', '.join(unsupported)}")
    return [{"name": c.name, "type": c.type} for c in config.dataset.features]


# --- conversion --------------------------------------------------------------------------------


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
        raise ExportError(f"{config.name}: skl2onnx cannot convert {describe(model)}: {reason}") from exc
    outputs = [o.name for o in onx.graph.output]
    if ONNX_PROBABILITIES not in outputs:
        raise ExportError(f"{config.name}: the ONNX export has no {ONNX_PROBABILITIES!r} output (outputs: {outputs})")
    return onx.SerializeToString()


def describe(model: Any) -> str:
    """The pipeline's steps as ``"ColumnTransformer → HistGradientBoostingClassifier"`` (the class name alone
    for an estimator that is not a pipeline): how errors and export.json name what was converted."""
    steps = getattr(model, "steps", None)
    return " → ".join(type(s).__name__ for _, s in steps) if steps else type(model).__name__


def onnx_feeds(frame: pd.DataFrame, spec: list[dict[str, str]]) -> dict[str, np.ndarray]:
    """The ONNX model's inputs for ``frame``: ``{feature: [N, 1] array}``, what Triton's model.py and the batch
    workers build from their own tensors.

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
    """The column of ``probabilities`` (and of ``predict_proba``) that holds the positive class: 1.

    Raises :class:`ExportError` for a model that is not a binary classifier.
    """
    classes = [c.item() if hasattr(c, "item") else c for c in getattr(model, "classes_", [])]
    if len(classes) != 2:
        raise ExportError(f"{config.name}: only binary classifiers can be served; the model's classes are {classes}")
    return 1  # scikit-learn sorts classes_: the positive label (1 / True) is the second


# --- parity ------------------------------------------------------------------------------------


def parity_frame(
    rows: pd.DataFrame,
    config: ModelConfig,
    *,
    label: str = "example",
    sample: pd.DataFrame | None = None,
    missing_rows: int | None = None,
    nulls: Literal["all", "sendable"] = "all",
) -> pd.DataFrame:
    """Rows to compare two scorings of a model on; each row's index label names the case it checks.

    * ``"sample"``: the ``sample`` rows, when given; ``label`` (``"example"``, ``"holdout"``…): ``rows``;
    * the first ``missing_rows`` of ``rows`` (None: all of them) again with each feature null, one
      feature at a time (``"<feature> missing"``), and each categorical feature set to a category
      training never saw (``"<feature> unseen"``: ``handle_unknown``).

    ``nulls="all"`` (the export's check): every feature is made null the way
    :func:`include.data.dataset.read_dataset` reads a null (``pd.NA`` in an ``Int64`` / ``boolean``
    column for ``int`` / ``bool``, NaN for ``float``, None for text), and text also as pandas' CSV
    reader does (NaN, ``"<feature> missing (NaN)"``). ``nulls="sendable"`` (the deployment's check
    through Triton): only the nulls a request carries and the MLflow signature accepts: NaN in ``float``
    features and None in categorical ones (an INT64 / BOOL tensor has no null).

    Columns: the configured features, in order. Rows: ``len(sample) + len(rows)`` plus
    ``min(missing_rows, len(rows))`` per case.
    """
    import numpy as np
    import pandas as pd

    names = config.dataset.feature_names
    base = pd.DataFrame(rows)[names].reset_index(drop=True)
    few = base if missing_rows is None else base.head(missing_rows)
    null_dtypes = {"int": "Int64", "bool": "boolean"}
    cases: list[tuple[str, pd.DataFrame]] = []
    if sample is not None:
        cases.append(("sample", sample[names]))
    cases.append((label, base))
    for column in config.dataset.features:
        if column.type in STRING_TYPES:
            values = {"missing": None, "missing (NaN)": np.nan, "unseen": UNKNOWN_CATEGORY}
            if nulls == "sendable":
                del values["missing (NaN)"]
            for case, value in values.items():
                changed = few.astype({column.name: object})
                changed[column.name] = pd.Series([value] * len(few), index=few.index, dtype=object)
                cases.append((f"{column.name} {case}", changed))
        elif nulls == "all" or column.type == "float":
            changed = few.copy()
            dtype = null_dtypes.get(column.type, "float64")
            changed[column.name] = pd.Series(pd.array([None] * len(few), dtype=dtype), index=few.index)
            cases.append((f"{column.name} missing", changed))
    return pd.concat([frame.set_axis(pd.Index([case] * len(frame)), axis=0) for case, frame in cases])


def _cases(labels: Iterable[Any], limit: int = 8) -> str:
    """``"credit_score missing, region unseen"`` for parity_frame's labels, ``"row 3, row 17"`` for a plain index."""
    import numbers

    unique = list(dict.fromkeys(labels))
    named = [f"row {v}" if isinstance(v, numbers.Integral) else str(v) for v in unique[:limit]]
    more = f" and {len(unique) - limit} more" if len(unique) > limit else ""
    return ", ".join(named) + more


def check_parity(
    expected: Sequence[float] | np.ndarray,
    got: Sequence[float] | np.ndarray,
    *,
    labels: Sequence[Any] | None = None,
    tolerance: float = PARITY_TOLERANCE,
    names: tuple[str, str] = ("scikit-learn", "the ONNX export"),
    subject: str = "parity",
) -> dict[str, float]:
    """The one parity rule: ``got`` agrees with ``expected`` on every row within ``tolerance``.

    ``expected``, ``got``: one probability per row (any shape; flattened), e.g. the positive-class
    probability from the reference scorer and from the one checked. ``labels``: one per row
    (:func:`parity_frame`'s index), naming the cases that differ in the error; integer labels read
    ``"row <n>"``. ``names``: how the error calls (expected, got); ``subject``: what it is about (the
    model and version). A row agrees when ``|expected - got| <= tolerance``; NaN or infinity on either
    side never agrees. Returns ``{"rows", "max_abs_diff", "tolerance"}`` (max over the finite
    differences; 0.0 for no rows). Raises :class:`ParityError` when the sizes differ or a row disagrees,
    naming how many rows, which cases and the worst row's two values.
    """
    import numpy as np

    reference, name_got = names
    expected = np.asarray(expected, dtype=np.float64).ravel()
    got = np.asarray(got, dtype=np.float64).ravel()
    if expected.shape != got.shape:
        raise ParityError(f"{subject}: {name_got} returned {got.size} values for {expected.size} rows")
    labels = np.arange(expected.size) if labels is None else np.asarray(list(labels), dtype=object)
    with np.errstate(invalid="ignore"):
        diff = np.abs(got - expected)
    finite = np.isfinite(diff)
    worst = float(diff[finite].max()) if finite.any() else (float("nan") if diff.size else 0.0)
    wrong = ~(diff <= tolerance)  # NaN (and inf - inf) on either side is wrong too
    if wrong.any():
        row = int(np.argmax(np.where(finite, diff, -1.0))) if finite[wrong].any() else int(np.flatnonzero(wrong)[0])
        non_finite = int((~finite).sum())
        extra = f", {non_finite} of them not finite" if non_finite else ""
        raise ParityError(
            f"{subject}: {name_got} disagrees with {reference}: max |diff| {worst:.3g} > {tolerance:g} on "
            f"{int(wrong.sum())} of {diff.size} rows{extra}, on rows with: {_cases(labels[wrong])} (worst: "
            f"{_cases([labels[row]])}: {name_got} {got[row]:.6f}, {reference} {expected[row]:.6f})"
        )
    return {"rows": int(diff.size), "max_abs_diff": worst, "tolerance": tolerance}


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
            f"{config.name}: scikit-learn's {describe(model)} cannot score {where} ({reason}) but the ONNX export "
            f"would score them: refused, so that Triton and the batch job never score a row the model itself "
            f"cannot. Retrain the model: the pipelines include.training.train builds impute missing numbers for "
            f"estimators without native missing-value support"
        ) from exc


def check_export(onnx_model: bytes, model: Any, frame: pd.DataFrame, config: ModelConfig,
                 tolerance: float = PARITY_TOLERANCE) -> dict[str, float]:
    """:func:`check_parity` of the ONNX export (run with onnxruntime) against scikit-learn's ``predict_proba``.

    ``frame``: feature columns (more are ignored); its index names each row's case in the errors
    (:func:`parity_frame` labels them). Returns ``{"rows", "max_abs_diff", "tolerance"}``. Raises
    :class:`ExportError` when onnxruntime cannot run the export, or when scikit-learn cannot score some
    rows (e.g. a missing number for an estimator without missing-value support: the export would score
    them anyway); :class:`ParityError` (an ExportError) when a probability differs by more than
    ``tolerance`` or is NaN on one side only.
    """
    import numpy as np
    import onnxruntime as ort

    column = positive_column(model, config)
    feeds = onnx_feeds(frame, input_spec(config))
    try:
        session = ort.InferenceSession(onnx_model, providers=["CPUExecutionProvider"])
        got = session.run([ONNX_PROBABILITIES], feeds)[0][:, column].astype(np.float64)
    except Exception as exc:  # onnxruntime's errors (Fail, InvalidProtobuf, InvalidGraph…) share no base class
        raise ExportError(f"{config.name}: onnxruntime cannot run the ONNX export of {describe(model)}: {exc}") from exc
    expected = _sklearn_scores(model, frame[config.dataset.feature_names], column, config)
    return check_parity(expected, got, labels=frame.index, tolerance=tolerance, subject=config.name)
