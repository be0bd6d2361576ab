"""Triton python backend: a version's ONNX export run with onnxruntime, one session per model instance.

:func:`include.serving.triton.repository.export_version` copies this file unchanged to
``<repo>/<model>/<version>/model.py``, beside ``model.onnx`` and ``export.json``. Triton's python
backend runs it in Triton's own virtualenv (numpy<2, onnxruntime, no project code), so it imports
only the standard library, numpy, onnxruntime and ``triton_python_backend_utils``; the exporter and
the client import its names (:data:`NUMERIC_INPUT`, :data:`CATEGORICAL_INPUT`, :data:`MARKER`) from here.

What differs per model is read at ``initialize``, never written into this file:

* ``config.pbtxt`` ``parameters`` (``args["model_config"]``): each packed input's columns, in order
  (``numeric_features``, ``categorical_features``: JSON lists of feature names), and
  ``intra_op_threads`` (onnxruntime's threads per session; default 1);
* ``export.json`` beside it (:data:`MARKER`): ``inputs`` (the feature columns the ONNX model takes,
  ``[{"name", "type", ...}]``), ``onnx_output`` (its probabilities output), ``positive_column`` (the
  column of the positive class) and ``output`` (the name of the output tensor Triton returns).

A request sends its rows in one of two forms: the packed inputs (``numeric_features`` FP64 ``[N, k]``
and ``categorical_features`` BYTES ``[N, m]``) or one input per feature (``[N, 1]`` each, any numeric
type or BYTES). Requests that the dynamic batcher groups are scored in one onnxruntime call, whatever
their form; the response is one FP64 ``[N, 1]`` tensor, the positive-class probability per row. A
request whose inputs are wrong (missing, both forms mixed, row counts that disagree, text that is not
UTF-8) is answered with ``INVALID_ARG`` (HTTP 400) naming the problem; any other failure with
``INTERNAL`` (HTTP 500); either way the other requests of its batch are still scored.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

try:  # present inside Triton's python backend stub only
    import triton_python_backend_utils as pb_utils
except ImportError:  # the exporter, the client and the tests import this module for its names
    pb_utils = None

NUMERIC_INPUT = "numeric_features"  # packed FP64 [N, k]: the int, float and bool features
CATEGORICAL_INPUT = "categorical_features"  # packed BYTES [N, m]: the category and string features
PACKED_INPUTS = (NUMERIC_INPUT, CATEGORICAL_INPUT)
MARKER = "export.json"  # beside this file: what was exported, and the I/O spec read here
ONNX_FILE = "model.onnx"


class BadRequest(ValueError):
    """The request's inputs are wrong: answered as HTTP 400 (INVALID_ARG), not as a server error."""


def _parameters(model_config: dict[str, Any]) -> dict[str, str]:
    """config.pbtxt's ``parameters`` as ``{key: string_value}`` (Triton's JSON form of the model config)."""
    return {key: value["string_value"] for key, value in (model_config.get("parameters") or {}).items()}


class TritonPythonModel:
    """The python backend's entry point: ``initialize`` once per model instance, ``execute`` per batch."""

    def initialize(self, args: dict[str, str]) -> None:
        """Open ``model.onnx`` of this version and read its inputs from ``export.json`` and config.pbtxt.

        ``args``: Triton's (``model_repository``: the model's folder, ``model_version``, ``model_config``:
        the config as JSON). Raises ValueError when config.pbtxt's packed columns are not the inputs
        this version was exported with (Triton then reports the version UNAVAILABLE with that reason).
        """
        import onnxruntime as ort  # here, not at import: the exporter and the client need only the names

        here = Path(args["model_repository"]) / args["model_version"]
        spec = json.loads((here / MARKER).read_text())
        params = _parameters(json.loads(args["model_config"]))
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(params.get("intra_op_threads", "1"))
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(here / ONNX_FILE), options, providers=["CPUExecutionProvider"])
        self.numeric = json.loads(params.get(NUMERIC_INPUT, "[]"))
        self.categorical = json.loads(params.get(CATEGORICAL_INPUT, "[]"))
        self.names = [i["name"] for i in spec["inputs"]]
        if sorted(self.names) != sorted(self.numeric + self.categorical):
            raise ValueError(f"config.pbtxt's packed columns {self.numeric} + {self.categorical} are not the "
                             f"inputs {self.names} this version was exported with")
        self.packed = [n for n, cols in ((NUMERIC_INPUT, self.numeric), (CATEGORICAL_INPUT, self.categorical)) if cols]
        self.onnx_output = spec["onnx_output"]
        self.column = spec["positive_column"]
        self.output = spec["output"]

    def _columns(self, request: Any) -> tuple[np.ndarray | None, np.ndarray | None, int]:
        """(numeric ``[N, k]``, categorical ``[N, m]`` of str, N) from either input form; raises BadRequest."""
        tensors = {t.name(): t for t in request.inputs()}
        if NUMERIC_INPUT in tensors or CATEGORICAL_INPUT in tensors:
            extra = sorted(set(tensors) - set(PACKED_INPUTS))
            if extra:
                raise BadRequest(f"send the packed inputs or one input per feature, not both (also got {', '.join(extra)})")
            missing = [n for n in self.packed if n not in tensors]
            if missing:
                raise BadRequest("missing input " + ", ".join(missing))
            parts = [tensors[n].as_numpy() if n in tensors else None for n in PACKED_INPUTS]
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

    def _score(self, numeric: np.ndarray | None, categorical: np.ndarray | None) -> np.ndarray:
        """The positive-class probability ``[N, 1]`` float64 of the rows, in one onnxruntime call."""
        feeds = {}
        if numeric is not None:
            columns = np.ascontiguousarray(numeric.astype(np.float64, copy=False).T)
            feeds.update((name, columns[i].reshape(-1, 1)) for i, name in enumerate(self.numeric))
        if categorical is not None:
            columns = np.ascontiguousarray(categorical.T)
            feeds.update((name, columns[j].reshape(-1, 1)) for j, name in enumerate(self.categorical))
        probabilities = self.session.run([self.onnx_output], feeds)[0]
        return probabilities[:, self.column].astype(np.float64).reshape(-1, 1)

    def _respond(self, scores: np.ndarray) -> Any:
        return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(self.output, scores)])

    def execute(self, requests: list[Any]) -> list[Any]:
        """One response per request, in order: the batch scored together, or each alone if any one fails."""
        try:
            parts = [self._columns(r) for r in requests]
            merged = [None if parts[0][k] is None else np.concatenate([p[k] for p in parts]) for k in (0, 1)]
            scores = np.split(self._score(*merged), np.cumsum([p[2] for p in parts])[:-1])
            return [self._respond(s) for s in scores]
        except Exception:  # one bad request must not fail the others batched with it
            return [self._execute_one(r) for r in requests]

    def _execute_one(self, request: Any) -> Any:
        try:
            numeric, categorical, _ = self._columns(request)
            return self._respond(self._score(numeric, categorical))
        except Exception as exc:
            code = pb_utils.TritonError.INVALID_ARG if isinstance(exc, BadRequest) else pb_utils.TritonError.INTERNAL
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(f"inference failed: {exc}", code))
