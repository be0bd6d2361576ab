"""A small client for Triton's HTTP endpoint (KServe v2 protocol): health, repository API, inference.

Transport only: no retries, no logging of predictions (the inference log wraps :meth:`infer`).
Tensors travel with Triton's binary-data extension, so float columns may carry NaN and large
frames are not inflated into JSON numbers.

Models exported by :mod:`include.serving.triton.repository` (served by :mod:`include.serving.triton.model`) take a
frame in two tensors, the packed inputs
``numeric_features`` (``FP64`` ``[N, k]``) and ``categorical_features`` (``BYTES`` ``[N, m]``), whose
columns the model config's ``parameters`` list. The client sends that form: two tensors cost the
server much less than one per feature (``bench/online_serving.py``). For any other model each feature column is one input of shape
``[N, 1]`` with the datatype the model's metadata declares (``FP64``, ``INT64``, ``BOOL`` or ``BYTES``).
Either way a column is checked against the datatype its own input declares: an integer column with
missing or fractional values is refused before anything is sent.

The server logs every row it scores (:mod:`include.serving.triton.request_log`): a caller passes its
own ids per row (``request_ids``, the model's optional ``request_id`` input) or gets the ids the
server made up back (:meth:`TritonClient.infer_with_ids`). ``role="verification"`` marks requests that
are not live traffic (the deployment's checks), so monitoring leaves them out.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from include.serving.triton.model import CATEGORICAL_INPUT, NUMERIC_INPUT, PACKED_INPUTS, REQUEST_ID, ROLE_PARAMETER

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

HEADER_LENGTH = "Inference-Header-Content-Length"
DEFAULT_MAX_BATCH = 1024
_NUMPY_TYPES = {"FP64": "<f8", "FP32": "<f4", "INT64": "<i8", "INT32": "<i4", "BOOL": "?"}


class TritonError(RuntimeError):
    """Triton refused a request; the message carries the server's own error text."""


def _model_path(name: str, version: str | int | None) -> str:
    path = f"/v2/models/{quote(name, safe='')}"
    return f"{path}/versions/{version}" if version is not None else path


def _checked(values: pd.Series, datatype: str) -> np.ndarray:
    """The column as the numpy array its input's datatype takes; missing or fractional integers are refused."""
    import numpy as np

    if datatype not in _NUMPY_TYPES:
        raise ValueError(f"input {values.name!r}: unsupported datatype {datatype}")
    if datatype in ("INT64", "INT32", "BOOL") and values.isna().any():
        raise ValueError(f"input {values.name!r}: {int(values.isna().sum())} missing values cannot be sent as {datatype}")
    if datatype in ("INT64", "INT32") and values.dtype.kind == "f" and not (values == values.round()).all():
        raise ValueError(f"input {values.name!r}: non-integer values cannot be sent as {datatype}")
    return np.ascontiguousarray(values.to_numpy().astype(_NUMPY_TYPES[datatype]))


def _encode_bytes(items: Iterable[Any]) -> bytes:
    """Triton's BYTES wire format: each element as a little-endian uint32 length and its UTF-8 bytes."""
    import numpy as np

    texts = ("" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in items)
    return b"".join(struct.pack("<I", len(b)) + b for b in (t.encode("utf-8") for t in texts))


def _decode_bytes(data: bytes) -> list[str]:
    """Triton's BYTES wire format back into text (each element: uint32 length, then the bytes)."""
    out, offset = [], 0
    while offset < len(data):
        (length,) = struct.unpack_from("<I", data, offset)
        out.append(data[offset + 4 : offset + 4 + length].decode("utf-8", "replace"))
        offset += 4 + length
    return out


def _decode_output(output: dict, data: bytes) -> np.ndarray:
    import numpy as np

    datatype = output["datatype"]
    if datatype == "BYTES":
        return np.array(_decode_bytes(data), dtype=object).reshape(output["shape"])
    if datatype not in _NUMPY_TYPES:
        raise TritonError(f"output {output['name']!r}: unsupported datatype {datatype}")
    return np.frombuffer(data, dtype=_NUMPY_TYPES[datatype]).reshape(output["shape"])


@dataclass(frozen=True)
class _Layout:
    """How a frame becomes the tensors of one request to a model (version)."""

    datatypes: dict[str, str]  # feature column -> the datatype of its own input (the model's metadata)
    packed: dict[str, list[str]]  # packed input -> its columns (the config's parameters); empty: one input each
    max_batch: int
    output: str = ""  # the scores' output (the first the model declares)
    logged: bool = False  # the model takes and returns request ids (exports of include.serving.triton.repository)

    def tensors(self, frame: pd.DataFrame) -> list[tuple[str, list[int], str, bytes]]:
        """(input name, shape, datatype, payload) for every input the request sends."""
        import numpy as np

        rows = len(frame)
        if not self.packed:
            return [(name, [rows, 1], datatype,
                     _encode_bytes(frame[name]) if datatype == "BYTES" else _checked(frame[name], datatype).tobytes())
                    for name, datatype in self.datatypes.items()]
        tensors = []
        if numeric := self.packed.get(NUMERIC_INPUT):
            matrix = np.column_stack([_checked(frame[c], self.datatypes[c]).astype(np.float64) for c in numeric])
            tensors.append((NUMERIC_INPUT, [rows, len(numeric)], "FP64", matrix.tobytes()))
        if categorical := self.packed.get(CATEGORICAL_INPUT):
            items = frame[categorical].to_numpy(dtype=object).ravel()  # row by row, as the [N, m] tensor lays out
            tensors.append((CATEGORICAL_INPUT, [rows, len(categorical)], "BYTES", _encode_bytes(items)))
        return tensors


class TritonClient:
    """``TritonClient("http://127.0.0.1:8000")``; a context manager that closes its connection pool."""

    def __init__(self, url: str, *, timeout: float = 30.0, load_timeout: float = 300.0) -> None:
        self.url = url.rstrip("/")
        self.load_timeout = load_timeout
        self._http = httpx.Client(base_url=self.url, timeout=timeout)
        self._layouts: dict[tuple[str, str | None], _Layout] = {}

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> TritonClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- plumbing --------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise TritonError(f"{method} {self.url}{path}: {exc}") from exc
        if response.status_code >= 400:
            raise TritonError(f"{method} {path}: HTTP {response.status_code}: {self._error_text(response)}")
        return response

    @staticmethod
    def _error_text(response: httpx.Response) -> str:
        try:
            return response.json().get("error") or response.text
        except ValueError:
            return response.text

    def _ok(self, path: str) -> bool:
        try:
            return self._http.get(path).status_code == 200
        except httpx.HTTPError:
            return False

    # --- health and repository -------------------------------------------------------------

    def is_live(self) -> bool:
        return self._ok("/v2/health/live")

    def is_ready(self) -> bool:
        return self._ok("/v2/health/ready")

    def model_ready(self, name: str, version: str | int | None = None) -> bool:
        return self._ok(f"{_model_path(name, version)}/ready")

    def repository_index(self) -> list[dict]:
        """Every model in the repository with its versions' state (``READY``, ``UNAVAILABLE``) and reason."""
        return self._request("POST", "/v2/repository/index", json={}).json()

    def load(self, name: str) -> None:
        """Load (or reload) ``name`` from the repository: the versions config.pbtxt lists load, others unload.

        Triton answers when the load finished; on failure the versions that served before keep serving.
        """
        self._layouts = {k: v for k, v in self._layouts.items() if k[0] != name}
        self._request("POST", f"/v2/repository/models/{quote(name, safe='')}/load", json={}, timeout=self.load_timeout)

    def unload(self, name: str, *, unload_dependents: bool = False) -> None:
        self._layouts = {k: v for k, v in self._layouts.items() if k[0] != name}
        body = {"parameters": {"unload_dependents": unload_dependents}}
        self._request("POST", f"/v2/repository/models/{quote(name, safe='')}/unload", json=body,
                      timeout=self.load_timeout)

    def wait_ready(self, name: str, version: str | int | None = None, timeout: float = 60.0) -> None:
        """Block until the model (version) is ready; a timeout names the state Triton reports for it."""
        deadline = time.monotonic() + timeout
        while not self.model_ready(name, version):
            if time.monotonic() >= deadline:
                states = [m for m in self.repository_index() if m.get("name") == name]
                raise TritonError(f"model {name} version {version or 'any'} not ready after {timeout:.0f}s: {states}")
            time.sleep(0.2)

    def metadata(self, name: str, version: str | int | None = None) -> dict:
        return self._request("GET", _model_path(name, version)).json()

    def config(self, name: str, version: str | int | None = None) -> dict:
        return self._request("GET", f"{_model_path(name, version)}/config").json()

    # --- inference ---------------------------------------------------------------------------

    def _layout(self, name: str, version: str | int | None) -> _Layout:
        key = (name, None if version is None else str(version))
        if key not in self._layouts:
            metadata = self.metadata(name, version)
            inputs = metadata["inputs"]
            outputs = [o["name"] for o in metadata.get("outputs", [])]
            config = self.config(name, version)
            datatypes = {i["name"]: i["datatype"] for i in inputs if i["name"] not in (*PACKED_INPUTS, REQUEST_ID)}
            parameters = config.get("parameters") or {}
            packed = {k: json.loads(v["string_value"]) for k, v in parameters.items() if k in PACKED_INPUTS}
            unknown = sorted({c for cols in packed.values() for c in cols} - set(datatypes))
            if unknown:
                raise TritonError(f"model {name}: the packed inputs list column(s) with no input of their own: "
                                  f"{', '.join(unknown)}")
            max_batch = int(config.get("max_batch_size") or DEFAULT_MAX_BATCH)
            logged = REQUEST_ID in outputs and any(i["name"] == REQUEST_ID for i in inputs)
            scores = next((o for o in outputs if o != REQUEST_ID), outputs[0] if outputs else "")
            self._layouts[key] = _Layout(datatypes, packed, max_batch, scores, logged)
        return self._layouts[key]

    def infer(self, name: str, frame: pd.DataFrame, version: str | int | None = None, *,
              role: str | None = None) -> np.ndarray:
        """Score every row of ``frame`` (one column per feature); returns the first output, one value per row."""
        return self.infer_with_ids(name, frame, version, role=role)[0]

    def infer_with_version(
        self, name: str, frame: pd.DataFrame, version: str | int | None = None, *, role: str | None = None
    ) -> tuple[np.ndarray, str | None]:
        """Like :meth:`infer`, plus the model version that answered (Triton's ``model_version``)."""
        scores, answered, _ = self.infer_with_ids(name, frame, version, role=role)
        return scores, answered

    def infer_with_ids(
        self, name: str, frame: pd.DataFrame, version: str | int | None = None, *,
        request_ids: Iterable[str] | None = None, role: str | None = None,
    ) -> tuple[np.ndarray, str | None, list[str] | None]:
        """(scores, the version that answered, the id each row was logged under: None for a model that logs none).

        ``request_ids``: one per row of ``frame``, sent as the ``request_id`` input (the server makes
        them up otherwise); ``role``: the ``modelops_role`` request parameter (``verification``).
        """
        import numpy as np

        layout = self._layout(name, version)
        missing = [c for c in layout.datatypes if c not in frame.columns]
        if missing:
            raise ValueError(f"frame is missing input column(s) of model {name}: {', '.join(missing)}")
        ids = None if request_ids is None else [str(i) for i in request_ids]
        if ids is not None and len(ids) != len(frame):
            raise ValueError(f"request_ids: {len(ids)} id(s) for {len(frame)} row(s)")
        if frame.empty:
            return np.empty(0, dtype=np.float64), None if version is None else str(version), [] if layout.logged else None
        chunks = [self._infer_chunk(name, frame.iloc[i : i + layout.max_batch], layout, version,
                                    None if ids is None else ids[i : i + layout.max_batch], role)
                  for i in range(0, len(frame), layout.max_batch)]
        versions = {v for _, v, _ in chunks}
        if len(versions) > 1:  # a switch between chunks: the caller must not log one version for all rows
            raise TritonError(f"model {name} changed version during one request: {sorted(versions)}")
        logged = [i for _, _, chunk_ids in chunks for i in (chunk_ids or [])] if layout.logged else None
        return np.concatenate([a for a, _, _ in chunks]), versions.pop(), logged

    def _infer_chunk(
        self, name: str, frame: pd.DataFrame, layout: _Layout, version: str | int | None,
        request_ids: list[str] | None, role: str | None,
    ) -> tuple[np.ndarray, str | None, list[str] | None]:
        tensors = layout.tensors(frame)
        if request_ids is not None and layout.logged:
            tensors.append((REQUEST_ID, [len(frame), 1], "BYTES", _encode_bytes(request_ids)))
        header: dict[str, Any] = {
            "inputs": [{"name": n, "shape": shape, "datatype": datatype, "parameters": {"binary_data_size": len(data)}}
                       for n, shape, datatype, data in tensors],
            "parameters": {"binary_data_output": True, **({ROLE_PARAMETER: role} if role else {})},
        }
        if layout.logged:
            header["outputs"] = [{"name": n, "parameters": {"binary_data": True}} for n in (layout.output, REQUEST_ID)]
        head = json.dumps(header).encode()
        response = self._request(
            "POST", f"{_model_path(name, version)}/infer", content=b"".join([head, *(t[3] for t in tensors)]),
            headers={HEADER_LENGTH: str(len(head)), "Content-Type": "application/octet-stream"},
        )
        arrays, answered_by = self._parse_response(response)
        if not layout.logged:
            return next(iter(arrays.values())).reshape(-1), answered_by, None
        return arrays[layout.output].reshape(-1), answered_by, [str(i) for i in arrays[REQUEST_ID].reshape(-1)]

    @staticmethod
    def _parse_response(response: httpx.Response) -> tuple[dict[str, np.ndarray], str | None]:
        body = response.content
        length = int(response.headers.get(HEADER_LENGTH, len(body)))
        result = json.loads(body[:length])
        arrays, offset = {}, length
        for output in result["outputs"]:
            size = output.get("parameters", {}).get("binary_data_size")
            if size is None:
                import numpy as np

                arrays[output["name"]] = np.asarray(output["data"]).reshape(output["shape"])
                continue
            arrays[output["name"]] = _decode_output(output, body[offset : offset + size])
            offset += size
        return arrays, result.get("model_version")
