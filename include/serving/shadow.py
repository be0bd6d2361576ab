"""The ``@challenger`` on live traffic before promotion: loaded beside the champion in shadow or canary.

``start`` exports the challenger version as its own Triton model (``<model>.challenger``:
:func:`include.serving.triton.repository.challenger_name`), loads it, waits until it is ready, then
names it in the champion's ``serving.json`` and reloads the champion's model, whose ``model.py`` from
then on sends it every live request (shadow) or the requests of ``canary_fraction`` of the routing
keys (canary): :mod:`include.serving.triton.model`. ``stop`` does the reverse: the champion forgets it
(reload), then it is unloaded and its folder removed. Both are idempotent and write an audit record
(``challenger_start`` / ``challenger_stop``): what answers live requests changes.

The promotion DAG starts it when a version that passed its offline gates waits for the ``shadow``
gate; the promotion (when the deployment of the new champion is live), a rejection and retirement
stop it; monitoring stops a canary whose hour is critical.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from include.config import ModelConfig
from include.governance import audit
from include.serving.triton import repository
from include.serving.triton.repository import challenger_name, serving_parameters, write_serving_parameters

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from include.serving.triton.client import TritonClient

log = logging.getLogger(__name__)

START_ACTION, STOP_ACTION = "challenger_start", "challenger_stop"
CHALLENGER_KEYS = ("challenger_model", "challenger_mode", "canary_fraction", "challenger_timeout_ms",
                   "challenger_version")
READY_TIMEOUT_S = 120
_VERSIONS = re.compile(r"version_policy: \{ specific: \{ versions: \[ ([0-9, ]+) \] \} \}")


def listed_versions(repo_dir: Path | str, triton_model: str) -> list[int]:
    """The versions ``<repo>/<triton_model>/config.pbtxt`` serves ([] when there is no config)."""
    try:
        text = (Path(repo_dir) / triton_model / "config.pbtxt").read_text()
    except FileNotFoundError:
        return []
    found = _VERSIONS.search(text)
    return [int(v) for v in found.group(1).split(",")] if found else []


def current(repo_dir: Path | str, model: str) -> dict[str, str] | None:
    """What the champion's model sends live traffic to: ``{"version", "mode", ...}``, or None."""
    params = serving_parameters(repo_dir, model)
    if not params.get("challenger_model"):
        return None
    return {"version": params.get("challenger_version", ""), "mode": params.get("challenger_mode", ""),
            "triton_model": params["challenger_model"], "canary_fraction": params.get("canary_fraction", ""),
            "timeout_ms": params.get("challenger_timeout_ms", "")}


def _apply_to_champion(triton: TritonClient, repo_dir: Path | str, model: str) -> None:
    """Render the champion's config from ``serving.json`` and reload it (when Triton has it loaded)."""
    versions = listed_versions(repo_dir, model)
    if not versions:
        return  # nothing deployed yet: the first deployment renders the config with these parameters
    repository.set_served_versions(repo_dir, model, versions, primary=max(versions))
    if any(m.get("name") == model and m.get("state") == "READY" for m in triton.repository_index()):
        triton.load(model)


def start(client: MlflowClient, triton: TritonClient, repo_dir: Path | str, config: ModelConfig, version: str, *,
          actor: str, reason: str, dag_id: str | None = None, run_id: str | None = None,
          timeout: float = READY_TIMEOUT_S) -> dict[str, str]:
    """Load ``version`` as the challenger and send it live traffic (``config.serving.challenger.mode``).

    Returns :func:`current`. Raises ValueError when the mode is ``off``; the export's
    :class:`~include.serving.onnx.ExportError` and Triton's errors pass through, and then the champion's
    config is unchanged (the challenger is named there only once it is ready).
    """
    settings = config.serving.challenger
    if settings.mode == "off":
        raise ValueError(f"{config.name}: serving.challenger.mode is off: no challenger is put on live traffic")
    model, name = config.name, challenger_name(config.name)
    wanted = {"challenger_model": name, "challenger_mode": settings.mode, "canary_fraction": str(settings.canary_fraction),
              "challenger_timeout_ms": str(settings.timeout_ms), "challenger_version": str(version)}
    params = serving_parameters(repo_dir, model)
    if all(params.get(k) == v for k, v in wanted.items()) and triton.model_ready(name, version):
        log.info("%s version %s is already the %s challenger", model, version, settings.mode)
        return current(repo_dir, model)
    stale = [int(v) for v in listed_versions(repo_dir, name) if str(v) != str(version)]
    repository.export_version(client, model, version, config, repo_dir, triton_model=name)
    for old in stale:
        repository.remove_version(repo_dir, name, old)
    triton.load(name)
    triton.wait_ready(name, version, timeout=timeout)
    write_serving_parameters(repo_dir, model, {**params, **wanted})
    _apply_to_champion(triton, repo_dir, model)
    audit.write(client, audit.AuditRecord(
        action=START_ACTION, model=model, version=str(version), actor=actor, reason=reason, dag_id=dag_id,
        run_id=run_id, details={"mode": settings.mode, "triton_model": name,
                                "canary_fraction": settings.canary_fraction if settings.mode == "canary" else None,
                                "timeout_ms": settings.timeout_ms}))
    log.info("%s version %s now runs as the %s challenger (%s)", model, version, settings.mode, name)
    return current(repo_dir, model)


def stop(client: MlflowClient, triton: TritonClient, repo_dir: Path | str, config: ModelConfig, *, actor: str,
         reason: str, only_version: str | None = None, dag_id: str | None = None,
         run_id: str | None = None) -> str | None:
    """Take the challenger off live traffic and unload it; returns the version stopped (None: none ran).

    ``only_version``: stop only if that version is the challenger (a rejection of version 5 must not
    stop version 6 that replaced it). Triton's errors pass through (the task retries; a second call
    finishes the job).
    """
    model, name = config.name, challenger_name(config.name)
    running = current(repo_dir, model)
    version = running["version"] if running else None
    if only_version is not None and version is not None and str(version) != str(only_version):
        log.info("%s: the challenger is version %s, not %s: left running", model, version, only_version)
        return None
    params = {k: v for k, v in serving_parameters(repo_dir, model).items() if k not in CHALLENGER_KEYS}
    if running is not None:
        write_serving_parameters(repo_dir, model, params)
        _apply_to_champion(triton, repo_dir, model)
    if any(m.get("name") == name and m.get("state") == "READY" for m in triton.repository_index()):
        triton.unload(name)
    shutil.rmtree(Path(repo_dir) / name, ignore_errors=True)
    if running is None:
        return None
    audit.write(client, audit.AuditRecord(
        action=STOP_ACTION, model=model, version=str(version), actor=actor, reason=reason, dag_id=dag_id,
        run_id=run_id, details={"mode": running["mode"], "triton_model": name}))
    log.info("%s version %s is off live traffic (%s): %s", model, version, running["mode"], reason)
    return str(version)
