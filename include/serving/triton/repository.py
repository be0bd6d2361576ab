"""Export registered MLflow versions into a Triton model repository (python backend running ONNX).

Layout, one folder per model, one per version::

    <repo>/<model>/config.pbtxt            inputs, output, batching, which versions serve, the packed columns
    <repo>/<model>/<version>/model.onnx    the scikit-learn pipeline as ONNX (:func:`include.serving.onnx.convert_to_onnx`)
    <repo>/<model>/<version>/model.py      python backend: a copy of :mod:`include.serving.triton.model`
    <repo>/<model>/<version>/request_log.py  its inference log writer: a copy of :mod:`include.serving.triton.request_log`
    <repo>/<model>/<version>/export.json   what was exported from where (the no-op check), the I/O spec
    <repo>/<model>/serving.json            the model's serving settings (inference log, challenger) the config carries
    <repo>/<model>.challenger/...          the ``@challenger`` version while it runs in shadow or canary

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
probability of the positive class; the output ``request_id`` (``TYPE_STRING``, ``[1]``) the id each row
was logged under (a request may send its own in the optional ``request_id`` input).

Every version logs what it scores (:mod:`include.serving.triton.request_log`); ``serving.json`` holds
what the config's ``parameters`` pass to it (:func:`serving_parameters`): the model's settings
(``config.serving``: :func:`write_serving_parameters`) and, while a challenger runs beside the champion,
its Triton model, mode and timeout (:func:`include.serving.shadow`).

model.py is the same file for every model and version: what differs (the packed columns, the
ONNX output, the positive column) it reads from config.pbtxt's ``parameters`` and ``export.json``.
Conversion and the parity check live in :mod:`include.serving.onnx`, shared with the batch job: a
model that cannot be converted, or whose ONNX outputs differ from scikit-learn's on the parity rows
(:func:`include.serving.onnx.parity_frame`: the logged input example, every feature missing, every
category unseen), is refused with :class:`include.serving.onnx.ExportError` and nothing half-exported
ever reaches the repository.

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
from typing import TYPE_CHECKING

from include.config import ModelConfig
from include.files import replace_dir
from include.serving import onnx
from include.serving.onnx import ExportError
from include.serving.triton import model as backend
from include.serving.triton import request_log
from include.serving.triton.model import CATEGORICAL_INPUT, MARKER, NUMERIC_INPUT, ONNX_FILE, PACKED_INPUTS, REQUEST_ID

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.tracking import MlflowClient

# pandas, mlflow, skl2onnx and onnxruntime are imported inside functions: Airflow imports this module
# in tasks, and the plugin side only needs the layout helpers.
log = logging.getLogger(__name__)

# 2: the packed inputs beside the per-feature ones; 3: missing values routed like scikit-learn;
# 4: model.py is include/serving/triton/model.py copied unchanged (no per-model text in it);
# 5: the server-side inference log (request_log.py beside model.py, the request_id input and output)
FORMAT = 5
MODEL_SOURCE = Path(backend.__file__)  # copied into every version folder as model.py
LOG_SOURCE = Path(request_log.__file__)  # copied beside it as request_log.py
LOG_FILE = "request_log.py"
OUTPUT_NAME = "probability"
SERVING_FILE = "serving.json"
CHALLENGER_SUFFIX = ".challenger"
MAX_BATCH_SIZE = 1024
MAX_QUEUE_DELAY_US = 100

TRITON_TYPES = {
    "int": "TYPE_INT64",
    "float": "TYPE_FP64",
    "bool": "TYPE_BOOL",
    "category": "TYPE_STRING",
    "string": "TYPE_STRING",
}


def version_number(version: str | int) -> int:
    """``version`` as a registry version number (a positive int); raises ExportError otherwise."""
    try:
        number = int(version)
    except (TypeError, ValueError):
        raise ExportError(f"model version must be a positive integer, got {version!r}") from None
    if number < 1:
        raise ExportError(f"model version must be a positive integer, got {version!r}")
    return number


def triton_inputs(config: ModelConfig) -> list[dict[str, str]]:
    """``[{"name", "type", "triton"}]``: one Triton input per feature column, in the order the model was trained on.

    :func:`include.serving.onnx.input_spec` with each column's Triton datatype (:data:`TRITON_TYPES`).
    Raises :class:`ExportError` for a feature type ONNX cannot take, or a feature named like a packed input.
    """
    spec = onnx.input_spec(config)
    reserved = [c["name"] for c in spec if c["name"] in (*PACKED_INPUTS, REQUEST_ID)]
    if reserved:
        raise ExportError(f"{config.name}: feature column(s) {', '.join(reserved)} take the name of one of the model's "
                          f"own inputs; rename the column (those are {', '.join((*PACKED_INPUTS, REQUEST_ID))})")
    return [{**c, "triton": TRITON_TYPES[c["type"]]} for c in spec]


def exporter_id() -> str:
    """Changes when anything that shapes the exported files changes (format, model.py, converter versions)."""
    from importlib.metadata import version

    parts = [str(FORMAT), MODEL_SOURCE.read_text(), LOG_SOURCE.read_text(), json.dumps(onnx.TARGET_OPSET, sort_keys=True)]
    parts += [f"{pkg}=={version(pkg)}" for pkg in ("skl2onnx", "onnx")]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


# --- repository layout -----------------------------------------------------------------------


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_marker(version_dir: Path) -> dict | None:
    """The version's ``export.json`` if its files are intact (hashes match), else None."""
    try:
        marker = json.loads((version_dir / MARKER).read_text())
        intact = (
            marker.get("format") == FORMAT
            and _sha256(version_dir / ONNX_FILE) == marker["onnx_sha256"]
            and _sha256(version_dir / "model.py") == marker["model_py_sha256"]
            and _sha256(version_dir / LOG_FILE) == marker["request_log_sha256"]
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


def challenger_name(model_name: str) -> str:
    """The Triton model the ``@challenger`` version is loaded as, beside the champion's: ``<model>.challenger``.

    Its own name, not another version of the model: Triton answers a request without a version with the
    highest loaded version, and a newer challenger must never answer the callers of the champion.
    """
    return f"{model_name}{CHALLENGER_SUFFIX}"


def serving_parameters(repo_dir: Path | str, triton_model: str) -> dict[str, str]:
    """``<repo>/<triton_model>/serving.json``: the config.pbtxt ``parameters`` beyond the inputs ({} when absent)."""
    try:
        found = json.loads((Path(repo_dir) / triton_model / SERVING_FILE).read_text())
    except FileNotFoundError:
        return {}
    return {str(k): str(v) for k, v in found.items()}


def write_serving_parameters(repo_dir: Path | str, triton_model: str, parameters: dict[str, str]) -> bool:
    """Replace ``serving.json`` (the config is rendered from it at the next :func:`set_served_versions`); True if changed."""
    folder = Path(repo_dir) / triton_model
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps({k: str(v) for k, v in sorted(parameters.items())}, indent=2) + "\n"
    return _write_if_changed(folder / SERVING_FILE, text)


def log_parameters(config: ModelConfig) -> dict[str, str]:
    """The inference log's settings of ``config.serving`` as config.pbtxt parameters (read by model.py)."""
    settings = config.serving.inference_log
    return {"registry_model": config.name, "inference_log": "on" if settings.enabled else "off",
            "log_flush_rows": str(settings.flush_rows), "log_flush_seconds": str(settings.flush_seconds)}


def packed_columns(inputs: list[dict[str, str]]) -> dict[str, list[str]]:
    """The feature columns each packed input carries, in order; an input with no column is left out."""
    columns = {
        NUMERIC_INPUT: [i["name"] for i in inputs if i["type"] not in onnx.STRING_TYPES],
        CATEGORICAL_INPUT: [i["name"] for i in inputs if i["type"] in onnx.STRING_TYPES],
    }
    return {name: cols for name, cols in columns.items() if cols}


def render_config(model_name: str, inputs: list[dict[str, str]], versions: Iterable[int],
                  extra: dict[str, str] | None = None) -> str:
    """``config.pbtxt`` for the python backend; deterministic for the same arguments.

    Every input is optional to Triton: a request sends either the packed inputs or one input per
    feature, and model.py names what is missing. The ``parameters`` list each packed input's columns
    (``GET /v2/models/<model>/config`` shows them to clients) and ``extra`` (:func:`serving_parameters`).
    """
    listed = ", ".join(str(v) for v in sorted(set(versions)))
    packed = packed_columns(inputs)
    packed_types = {NUMERIC_INPUT: "TYPE_FP64", CATEGORICAL_INPUT: "TYPE_STRING"}
    declared = [(i["name"], i["triton"], 1) for i in inputs]
    declared += [(name, packed_types[name], len(cols)) for name, cols in packed.items()]
    declared.append((REQUEST_ID, "TYPE_STRING", 1))
    parameters = [("intra_op_threads", "1"), *((name, json.dumps(cols)) for name, cols in packed.items()),
                  *sorted((extra or {}).items())]
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
        f"  {{ name: {json.dumps(OUTPUT_NAME)} data_type: TYPE_FP64 dims: [ 1 ] }},",
        f"  {{ name: {json.dumps(REQUEST_ID)} data_type: TYPE_STRING dims: [ 1 ] }}",
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
    text = render_config(model_name, inputs, served, serving_parameters(repo_dir, model_name))
    if _write_if_changed(model_dir / "config.pbtxt", text):
        log.info("%s: config.pbtxt now serves versions %s", model_name, served)
    return served


def remove_version(repo_dir: Path | str, model_name: str, version: str | int) -> bool:
    """Delete a version's folder (after it is unloaded and no longer listed); True if it existed."""
    version_dir = Path(repo_dir) / model_name / str(version_number(version))
    if not version_dir.exists():
        return False
    shutil.rmtree(version_dir)
    return True


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
    onnx_model = onnx.convert_to_onnx(model, config)
    parity = onnx.check_export(onnx_model, model, onnx.parity_frame(example, config, sample=sample), config)
    staged.mkdir(parents=True)
    (staged / ONNX_FILE).write_bytes(onnx_model)
    shutil.copyfile(MODEL_SOURCE, staged / "model.py")
    shutil.copyfile(LOG_SOURCE, staged / LOG_FILE)
    marker = {
        "format": FORMAT,
        "key": key,
        "inputs": triton_inputs(config),
        "output": OUTPUT_NAME,
        "onnx_output": onnx.ONNX_PROBABILITIES,
        "positive_column": onnx.positive_column(model, config),
        "classes": [c.item() if hasattr(c, "item") else c for c in model.classes_],
        "converted": onnx.describe(model),
        "parity": parity,
        "onnx_sha256": _sha256(staged / ONNX_FILE),
        "model_py_sha256": _sha256(staged / "model.py"),
        "request_log_sha256": _sha256(staged / LOG_FILE),
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
    triton_model: str | None = None,
) -> Path:
    """Export registry version ``version`` to ``<repo>/<model>/<version>/`` and serve it beside ``keep_versions``.

    ``triton_model``: the Triton model to export into, when not the registered model's own name (the
    challenger's: :func:`challenger_name`). The config's inference log settings (``config.serving``) go
    into ``serving.json``; a challenger set there is kept.

    A no-op when the same registry version was already exported by the same exporter and its files
    are intact; a corrupted or stale export is rebuilt. Conversion happens in a staging folder and
    is checked for parity with scikit-learn (on the logged input example, the same rows with unseen
    categories, and ``sample`` when given) before it replaces anything. A kept version exported by
    an older exporter (its model.py would not match the config written now) is exported again; if
    that fails it is left out with a warning rather than failing this export. Returns the version folder.
    Raises :class:`include.serving.onnx.ExportError` (nothing replaced) when the version cannot be
    converted, has no input example, or its export disagrees with scikit-learn (``ParityError``).
    """
    number = version_number(version)
    triton_model = triton_model or model_name
    model_dir = Path(repo_dir) / triton_model
    version_dir = _export_if_stale(client, model_name, number, config, model_dir, sample)
    for kept in {version_number(v) for v in keep_versions} - {number}:
        if (model_dir / str(kept)).exists():
            try:
                _export_if_stale(client, model_name, kept, config, model_dir, None)
            except Exception as exc:  # ExportError, or the registry no longer has the version
                log.warning("%s version %s: cannot export it again for this exporter (%s): %s", model_name, kept,
                            type(exc).__name__, exc)
    write_serving_parameters(repo_dir, triton_model, {**serving_parameters(repo_dir, triton_model),
                                                      **log_parameters(config)})
    set_served_versions(repo_dir, triton_model, [number, *keep_versions], primary=number)
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
        replace_dir(staged, version_dir)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    log.info("Exported %s version %s (%s) to %s; parity max |diff| %.3g on %d rows", model_name, number,
             marker["converted"], version_dir, marker["parity"]["max_abs_diff"], marker["parity"]["rows"])
    return version_dir
