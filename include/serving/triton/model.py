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
  column of the positive class) and ``output`` (the name of the output tensor Triton returns);
* the inference log: every scored row is written by this process (:mod:`include.serving.triton.request_log`,
  copied beside this file) under ``$MODELOPS_INFERENCE_LOG``, whoever sent the request (HTTP, gRPC,
  any client). config.pbtxt's ``registry_model`` names the registered model the rows belong to,
  ``inference_log`` (``on``/``off``), ``log_flush_rows`` and ``log_flush_seconds`` tune it. With logging
  on and no ``MODELOPS_INFERENCE_LOG`` the version refuses to load (Triton reports it UNAVAILABLE):
  a server that would serve unmonitored never starts silently;
* the challenger (``challenger_model``, ``challenger_mode``, ``canary_fraction``, ``challenger_timeout_ms``):
  see *Shadow and canary* below.

Each row's request id: the request's optional ``request_id`` input (BYTES ``[N, 1]``, one per row),
else the request's own ``id`` (``id`` for one row, ``id/i`` for row ``i`` of several), else a new
one (32 hex digits: a random prefix per process and a counter). The ids come back in the ``request_id`` output (BYTES ``[N, 1]``), so a caller that sent none
can join its delayed labels to the log. A request parameter ``modelops_role`` (``verification``) marks
traffic that is not live (the deployment's checks): it is logged with that role and never shadowed.

Shadow and canary: while config.pbtxt names a ``challenger_model`` (the ``@challenger`` version, loaded
as its own Triton model ``<model>.challenger``: :func:`include.serving.triton.repository.challenger_name`),

* ``shadow``: the caller gets this version's answer; after the response is built, the same rows are
  queued to a background thread that sends them to the challenger (Triton's business logic scripting,
  with ``challenger_timeout_ms`` as the request's timeout) with the role ``shadow`` and the same request
  ids: the challenger's instance logs its own rows. A slow, failing or unloaded challenger costs the
  caller nothing but the enqueue; when the queue is full (``shadow_queue`` batches) rows are not shadowed
  (counted, and reported on stderr);
* ``canary``: a request whose routing key (request parameter ``routing_key``, else its first request id)
  hashes (SHA-256) below ``canary_fraction`` is answered by the challenger (role ``canary``), the same key
  always the same way; if the challenger fails or exceeds its timeout the request is answered here
  (role ``live``). A canary costs its requests the challenger's latency, bounded by the timeout.

A request sends its rows in one of two forms: the packed inputs (``numeric_features`` FP64 ``[N, k]``
and ``categorical_features`` BYTES ``[N, m]``) or one input per feature (``[N, 1]`` each, any numeric
type or BYTES). Requests that the dynamic batcher groups are scored in one onnxruntime call, whatever
their form; the response is one FP64 ``[N, 1]`` tensor, the positive-class probability per row. A
request whose inputs are wrong (missing, both forms mixed, row counts that disagree, text that is not
UTF-8) is answered with ``INVALID_ARG`` (HTTP 400) naming the problem; any other failure with
``INTERNAL`` (HTTP 500); either way the other requests of its batch are still scored.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import queue
import sys
import threading
import time
import uuid
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
REQUEST_ID = "request_id"  # optional input and output: BYTES [N, 1], one id per row
ROLE_PARAMETER = "modelops_role"  # request parameter: verification | shadow | canary (live when absent)
TS_PARAMETER = "modelops_ts_us"  # request parameter the shadow and canary requests carry: the live request's time
ROUTING_KEY = "routing_key"  # request parameter: what a canary's sticky routing hashes (default: the request id)
SHADOW, CANARY = "shadow", "canary"


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
        self.version = args["model_version"]
        self.model = params.get("registry_model") or args["model_name"]
        self.log = self._open_log(here, spec, params)
        self.challenger = params.get("challenger_model") or None
        self.mode = params.get("challenger_mode", SHADOW)
        self.canary_fraction = float(params.get("canary_fraction", "0"))
        self.timeout_us = int(float(params.get("challenger_timeout_ms", "100")) * 1000)
        self.shadow_dropped = 0
        self._shadow: queue.Queue | None = None
        if self.challenger and self.mode == SHADOW:
            self._shadow = queue.Queue(maxsize=int(params.get("shadow_queue", "1000")))
            self._shadow_thread = threading.Thread(target=self._shadow_worker, name="shadow", daemon=True)
            self._shadow_thread.start()

    def _open_log(self, here: Path, spec: dict, params: dict[str, str]) -> Any:
        """The inference log writer of this instance (:class:`request_log.RequestLog`), or None when ``off``."""
        if params.get("inference_log", "on") == "off":
            return None
        sys.path.insert(0, str(here))  # request_log.py is beside this file (Triton appends the folder; be sure)
        import request_log

        # Triton's virtualenv has no project code: the variable is read here, named where include.settings names it
        root = os.environ.get(request_log.ROOT_ENV)
        if not root:
            raise ValueError("the inference log is on but MODELOPS_INFERENCE_LOG is not set in tritonserver's "
                             "environment; set it to the log's folder, or set the parameter inference_log to off")

        types = {i["name"]: i["type"] for i in spec["inputs"]}
        return request_log.RequestLog(
            root, self.model, [(n, types[n]) for n in self.numeric], [(n, types[n]) for n in self.categorical],
            flush_rows=int(params.get("log_flush_rows", "10000")),
            flush_seconds=float(params.get("log_flush_seconds", "5")))

    def finalize(self) -> None:
        """Unload or shutdown: stop shadowing and write the rows still buffered."""
        if self._shadow is not None:
            self._shadow.put(None)
            self._shadow_thread.join(timeout=max(1.0, 2 * self.timeout_us / 1e6))
        if self.log is not None:
            self.log.close()

    def _columns(self, request: Any) -> tuple[np.ndarray | None, np.ndarray | None, int]:
        """(numeric ``[N, k]``, categorical ``[N, m]`` of str, N) from either input form; raises BadRequest."""
        tensors = {t.name(): t for t in request.inputs() if t.name() != REQUEST_ID}
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

    def _respond(self, scores: np.ndarray, ids: list[str]) -> Any:
        id_tensor = np.array([i.encode() for i in ids], dtype=object).reshape(-1, 1)
        return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(self.output, scores),
                                                          pb_utils.Tensor(REQUEST_ID, id_tensor)])

    def execute(self, requests: list[Any]) -> list[Any]:
        """One response per request, in order: the batch scored together, or each alone if any one fails.

        Then the scored rows go to the inference log (queued: written by the log's own thread) and, with a
        challenger, to the shadow queue (shadow) or to the challenger first (canary: the rows it routes).
        """
        now_us, started = time.time_ns() // 1000, time.perf_counter()
        metas = [self._meta(r) for r in requests]
        try:
            parts = [self._parse(r, m) for r, m in zip(requests, metas, strict=True)]
            merged = [None if parts[0][k] is None else np.concatenate([p[k] for p in parts]) for k in (0, 1)]
            scores = np.split(self._score(*merged), np.cumsum([p[2] for p in parts])[:-1])
        except Exception:  # one bad request must not fail the others batched with it
            parts, scores = [], []
            for request, meta in zip(requests, metas, strict=True):
                try:
                    part = self._parse(request, meta)
                    scores.append(self._score(part[0], part[1]))
                    parts.append(part)
                except Exception as exc:  # noqa: BLE001 - answered as this request's error
                    parts.append(exc)
                    scores.append(None)
        responses = []
        for part, score, (role, key, _, ts_us) in zip(parts, scores, metas, strict=True):
            if isinstance(part, Exception):
                code = pb_utils.TritonError.INVALID_ARG if isinstance(part, BadRequest) else pb_utils.TritonError.INTERNAL
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"inference failed: {part}", code)))
                continue
            ids, ts_us = part[3], ts_us or now_us
            answered = None
            if self.challenger and self.mode == CANARY and role is None and self._routed(key or ids[0]):
                answered = self._challenger_scores(part, ts_us, CANARY)
            responses.append(self._respond(score if answered is None else answered, ids))
            if answered is not None:
                continue  # the challenger's instance logged these rows (role canary)
            self._log(part, score, ts_us, role or "live", (time.perf_counter() - started) * 1000)
            if self._shadow is not None and role is None:
                self._enqueue_shadow(part, ts_us)
        return responses

    def _parse(self, request: Any, meta: tuple) -> tuple[np.ndarray | None, np.ndarray | None, int, list[str]]:
        """(numeric, categorical, N, one request id per row) of a request; raises BadRequest."""
        numeric, categorical, rows = self._columns(request)
        return numeric, categorical, rows, self._row_ids(request, meta[2], rows)

    # --- request metadata ----------------------------------------------------------------------

    @staticmethod
    def _meta(request: Any) -> tuple[str | None, str | None, str, int | None]:
        """(role when not live, routing key, the request's own id, the live request's time for a shadow/canary one)."""
        try:
            parameters = json.loads(request.parameters() or "{}")
        except (AttributeError, ValueError):
            parameters = {}
        try:
            request_id = request.request_id() or ""
        except AttributeError:
            request_id = ""
        role, key, ts = parameters.get(ROLE_PARAMETER), parameters.get(ROUTING_KEY), parameters.get(TS_PARAMETER)
        try:
            ts = int(ts) if ts is not None else None
        except (TypeError, ValueError):
            ts = None
        return (str(role) if role else None), (str(key) if key is not None else None), request_id, ts

    @staticmethod
    def _row_ids(request: Any, request_id: str, rows: int) -> list[str]:
        """One id per row: the ``request_id`` input, else the request's id (``id/i`` when several rows), else new."""
        for tensor in request.inputs():
            if tensor.name() == REQUEST_ID:
                values = tensor.as_numpy().reshape(-1)
                if len(values) != rows:
                    raise BadRequest(f"{REQUEST_ID}: {len(values)} id(s) for {rows} row(s)")
                return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values]
        if request_id:
            return [request_id] if rows == 1 else [f"{request_id}/{i}" for i in range(rows)]
        return [f"{_ID_PREFIX}{next(_ID_COUNTER):012x}" for _ in range(rows)]

    def _routed(self, key: str) -> bool:
        """Whether a canary request with this routing key goes to the challenger (sticky: a hash of the key)."""
        digest = hashlib.sha256(key.encode("utf-8")).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < self.canary_fraction

    # --- the inference log ----------------------------------------------------------------------

    def _log(self, part: tuple, scores: np.ndarray, ts_us: int, role: str, latency_ms: float) -> None:
        """Hand the rows to the log's writer: references only, the Arrow work happens in its thread."""
        if self.log is not None:
            self.log.append((part[3], ts_us, self.version, part[0], part[1], scores, latency_ms, role))  # request_log.Batch

    # --- the challenger ---------------------------------------------------------------------------

    def _challenger_request(self, part: tuple, ts_us: int, role: str) -> Any:
        numeric, categorical, _, ids = part
        inputs = []
        if numeric is not None:
            inputs.append(pb_utils.Tensor(NUMERIC_INPUT, np.ascontiguousarray(numeric, dtype=np.float64)))
        if categorical is not None:
            encoded = np.array([v.encode("utf-8") for v in categorical.ravel()], dtype=object).reshape(categorical.shape)
            inputs.append(pb_utils.Tensor(CATEGORICAL_INPUT, encoded))
        inputs.append(pb_utils.Tensor(REQUEST_ID, np.array([i.encode() for i in ids], dtype=object).reshape(-1, 1)))
        return pb_utils.InferenceRequest(model_name=self.challenger, inputs=inputs, requested_output_names=[self.output],
                                         parameters={ROLE_PARAMETER: role, TS_PARAMETER: str(ts_us)},
                                         timeout=self.timeout_us)

    def _challenger_scores(self, part: tuple, ts_us: int, role: str) -> np.ndarray | None:
        """The challenger's scores of the rows (it logs them with ``role``), or None when it fails or is too slow."""
        try:
            response = self._challenger_request(part, ts_us, role).exec()
            if response.has_error():
                raise RuntimeError(response.error().message())
            return pb_utils.get_output_tensor_by_name(response, self.output).as_numpy().astype(np.float64)
        except Exception as exc:  # noqa: BLE001 - the caller is answered by this version instead
            _report(f"{role} request to {self.challenger} failed: {type(exc).__name__}: {exc}")
            return None

    def _enqueue_shadow(self, part: tuple, ts_us: int) -> None:
        try:
            self._shadow.put_nowait((part, ts_us))
        except queue.Full:
            self.shadow_dropped += part[2]
            _report(f"shadow queue full: {part[2]} row(s) not shadowed ({self.shadow_dropped} so far)")

    def _shadow_worker(self) -> None:
        while (job := self._shadow.get()) is not None:
            try:
                self._challenger_scores(*job, SHADOW)
            except Exception as exc:  # noqa: BLE001 - the worker outlives any one job
                _report(f"shadow worker: {type(exc).__name__}: {exc}")


_ID_PREFIX = uuid.uuid4().hex[:20]  # per process: ids made up here are unique without a uuid4 per row
_ID_COUNTER = itertools.count()
_last_report = [0.0]


def _report(message: str) -> None:
    """A problem for Triton's log, at most one line a second: a failing challenger must not flood it."""
    now = time.monotonic()
    if now - _last_report[0] >= 1.0:
        _last_report[0] = now
        try:
            pb_utils.Logger.log_warn(f"modelops model.py: {message}")
        except Exception:  # noqa: BLE001 - no Triton logger here (tests) or in this thread: stderr
            print(f"modelops model.py: {message}", file=sys.stderr, flush=True)
