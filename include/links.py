"""Where to see what a lifecycle task produced: pages of MLflow's web UI and Triton's state of a model.

Pure URL building and the few MLflow and Triton reads it needs; the Airflow side
(:mod:`modelops.links`) reads the task's XCom and the connections, and puts the links in the UI.

MLflow 3's web UI routes with a hash router; the routes, as MLflow 3.17's UI defines them
(``mlflow/server/js``: ``RoutePaths.runPage``, ``runPageWithTab``, ``modelVersionPage`` and
``Routes.getRunPageRoute(experimentId, runId, artifactPath)``, which opens the run's ``artifacts`` tab
with the file selected; HTML artifacts are shown in the page):

=========================  ======================================================================
a run                      ``<base>/#/experiments/<experiment id>/runs/<run id>``
an artifact of a run       ``<base>/#/experiments/<experiment id>/runs/<run id>/artifacts/<path>``
a registered version       ``<base>/#/models/<name, percent-encoded>/versions/<version>``
=========================  ======================================================================

The tracking server's own ``/get-artifact`` answers an HTML artifact as a download
(``Content-Disposition: attachment``), so reports are linked in the UI's artifact view instead.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit, urlunsplit

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

# The names of the links, as the Airflow UI shows them on a task instance (sorted by name there).
MLFLOW_RUN = "MLflow run"
MODEL_VERSION = "MLflow model version"
DATA_DOCS = "Data Docs"
EVIDENTLY_REPORT = "Evidently report"
TRITON_STATUS = "Triton model status"
NAMES = (MLFLOW_RUN, MODEL_VERSION, DATA_DOCS, EVIDENTLY_REPORT, TRITON_STATUS)

# Where the training run keeps the Great Expectations Data Docs: the validation's artifacts are logged under
# "validation/" (include.data.checks.validate), the site in its DOCS_DIR (include.data.validation, which
# imports GX: not imported here), one page per validation under validations/<suite>/<run>/<time>/<batch>.html.
DATA_DOCS_ROOT = "validation/data_docs"
_VALIDATION_PAGES = f"{DATA_DOCS_ROOT}/validations"
_MAX_DEPTH = 6  # validations/<suite>/<run name>/<run time>/<batch>.html, with room to spare


def ui_base(url: str | None) -> str | None:
    """The MLflow web UI's address from ``url``: an http(s) URL (the connection's ``extra.ui_url``, else the
    tracking server's URI), without user info, query, fragment or trailing slash; None for anything else
    (a SQLite file, a database or ``databricks`` store: no web UI is known).

    ``ui_base("https://u:p@mlflow.example.com/ml/?x=1#/") == "https://mlflow.example.com/ml"``.
    """
    if not url:
        return None
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    netloc = parts.netloc.rpartition("@")[2]  # never a credential in a link
    return urlunsplit((parts.scheme.lower(), netloc, parts.path.rstrip("/"), "", ""))


def _segment(value: str) -> str:
    return quote(str(value), safe="")


@dataclass(frozen=True)
class MlflowUi:
    """Pages of the MLflow web UI at ``base`` (see :func:`ui_base`)."""

    base: str

    def _page(self, route: str) -> str:
        return f"{self.base}/#/{route}"

    def model(self, name: str) -> str:
        """The registered model's page: ``<base>/#/models/<name>`` (the name percent-encoded)."""
        return self._page(f"models/{_segment(name)}")

    def experiment(self, experiment_id: str) -> str:
        """The experiment's page: ``<base>/#/experiments/<experiment id>``."""
        return self._page(f"experiments/{_segment(experiment_id)}")

    def run(self, experiment_id: str, run_id: str) -> str:
        """The run's page: ``<base>/#/experiments/<experiment id>/runs/<run id>``."""
        return self._page(f"experiments/{_segment(experiment_id)}/runs/{_segment(run_id)}")

    def artifact(self, experiment_id: str, run_id: str, path: str) -> str:
        """The run's artifacts tab with the file at ``path`` (relative to the run's artifact root) open.

        Each segment of ``path`` is percent-encoded, the ``/`` between them kept (the UI's route is
        ``artifacts/*``). ``ValueError`` for an empty path or one that leaves the artifact root.
        """
        segments = [s for s in path.strip("/").split("/") if s not in ("", ".")]
        if not segments or ".." in segments:
            raise ValueError(f"not an artifact path of a run: {path!r}")
        return f"{self.run(experiment_id, run_id)}/artifacts/{'/'.join(map(_segment, segments))}"

    def model_version(self, name: str, version: str | int) -> str:
        """The registered version's page: ``<base>/#/models/<name>/versions/<version>`` (the name percent-encoded,
        as the UI's own links encode it)."""
        return self._page(f"models/{_segment(name)}/versions/{_segment(str(version))}")


def run_url(ui: MlflowUi, client: MlflowClient, run_id: str) -> str:
    """The page of run ``run_id`` (one ``get_run`` for its experiment). MLflow's ``RESOURCE_DOES_NOT_EXIST``
    error is raised when there is no such run."""
    return ui.run(client.get_run(run_id).info.experiment_id, run_id)


def artifact_url(ui: MlflowUi, client: MlflowClient, run_id: str, path: str) -> str:
    """The artifact ``path`` of run ``run_id`` in the UI's artifact view (one ``get_run``); see :meth:`MlflowUi.artifact`."""
    return ui.artifact(client.get_run(run_id).info.experiment_id, run_id, path)


def data_docs_page(paths: Iterable[str]) -> str | None:
    """Among a run's artifact ``paths``, the Data Docs page of its validation: an ``.html`` file under
    ``validation/data_docs/validations/``; the latest when there are several (the folder names hold the
    validation time, so they sort by it); else the site's ``index.html``; None when there is neither."""
    pages = sorted(p for p in paths if p.startswith(f"{_VALIDATION_PAGES}/") and p.endswith(".html"))
    if pages:
        return pages[-1]
    index = f"{DATA_DOCS_ROOT}/index.html"
    return index if index in set(paths) else None


def find_data_docs(client: MlflowClient, run_id: str) -> str | None:
    """The artifact path of run ``run_id``'s Data Docs page (:func:`data_docs_page`), found by listing its
    ``validation/data_docs`` artifacts (one request per folder on the way down); None when the run has none
    (validation never ran, or the batch could not be read)."""
    found: list[str] = []

    def walk(folder: str, depth: int) -> None:
        for entry in client.list_artifacts(run_id, folder):
            if entry.is_dir and depth < _MAX_DEPTH and entry.path.startswith(_VALIDATION_PAGES):
                walk(entry.path, depth + 1)
            elif not entry.is_dir:
                found.append(entry.path)

    for entry in client.list_artifacts(run_id, DATA_DOCS_ROOT):
        if entry.is_dir and entry.path == _VALIDATION_PAGES:
            walk(entry.path, 1)
        elif not entry.is_dir:
            found.append(entry.path)
    return data_docs_page(found)


# --- Triton -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TritonModelStatus:
    """What Triton says about ``model``, and whether ``version`` (the one a deployment put live) is ready.

    ``versions``: every version of the model in Triton's repository index with its state (``READY``,
    ``UNAVAILABLE``, ``LOADING``, …); ``reasons``: Triton's reason for a state, where it gave one.
    """

    model: str
    version: str
    ready: bool
    versions: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    detail: str = ""


def triton_model_status(index: Iterable[Mapping], model: str, version: str | int) -> TritonModelStatus:
    """``model``'s versions in Triton's repository index (``POST /v2/repository/index``: entries
    ``{"name", "version", "state", "reason"}``), and whether ``version`` is ``READY``."""
    from include.promotion.rollout import READY

    version = str(version)
    entries = [e for e in index if e.get("name") == model and e.get("version") not in (None, "")]
    versions = {str(e["version"]): str(e.get("state") or "") for e in entries}
    reasons = {str(e["version"]): str(e["reason"]) for e in entries if e.get("reason")}
    ready = versions.get(version) == READY
    if ready:
        detail = f"version {version} of {model} is READY on Triton"
    elif version in versions:
        why = f": {reasons[version]}" if version in reasons else ""
        detail = f"version {version} of {model} is {versions[version] or 'in no state'} on Triton{why}"
    else:
        known = ", ".join(f"v{v} {s}" for v, s in _by_version(versions).items()) or "none"
        detail = f"Triton's repository has no version {version} of {model} (versions it knows: {known})"
    return TritonModelStatus(model=model, version=version, ready=ready, versions=_by_version(versions),
                             reasons=_by_version(reasons), detail=detail)


def _by_version(values: Mapping[str, str]) -> dict[str, str]:
    """``values`` ordered by version number (``"2"`` before ``"10"``), other names after them."""
    return dict(sorted(values.items(), key=lambda kv: (not kv[0].isdigit(), int(kv[0]) if kv[0].isdigit() else 0, kv[0])))
