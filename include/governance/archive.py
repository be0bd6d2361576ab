"""The archive of a model version: what an auditor needs to bring a retired version back and judge it.

Four steps, each safe to repeat:

1. :func:`collect` gathers the version into a local folder and writes ``manifest.json`` last;
2. :func:`upload` copies that folder into an :class:`ArchiveStore` under a prefix, skipping files the
   store already holds with the right checksum, and stores the manifest last;
3. :func:`verify` checks every file the manifest lists against the store's checksum;
4. :func:`restore` fetches the archive, checks every file's SHA-256 and registers it as a NEW version.

Layout: keys are ``<prefix>/<relative path>``, the prefix is ``<model>/<version>``
(:func:`archive_prefix`), so an archive's address is ``<store uri>/<model>/<version>/``::

    <model>/<version>/
        model/...              the version's MLflow model as stored at its source (MLmodel, weights,
                               environment files), bytes unchanged
        version.json           the registered version: name, version, description, tags, aliases,
                               source, run id, status, creation and update times (ms since the epoch)
        logged_model.json      MLflow 3's logged-model record, when the source is ``models:/<model id>``
        run/info.json          the training run: ids, experiment, name, status, times, dataset inputs
        run/params.json        ``{name: value}``
        run/metrics.json       ``{key: [{"value", "step", "timestamp"}]}``: every logged value, oldest first
        run/tags.json          ``{key: value}``
        run/artifacts/...      the training run's artifacts, among them ``validation/`` (Great Expectations'
                               ``validation_result.json``, ``project_checks.json``, Data Docs:
                               :func:`include.data.checks.validate`), ``reference_profile/`` (the drift
                               reference, :mod:`include.monitoring.reference_profile`) and ``plots/``
        extra/<name>           the caller's files (the retirement ledger's records, its evidence pack)
        manifest.json          written last: an archive without it is incomplete

``manifest.json``: ``format_version``, ``model``, ``version``, ``created_at`` (UTC, ISO 8601), ``files``
(``path`` relative and POSIX, ``size`` in bytes, ``sha256`` hex, sorted by path; the manifest itself is
not listed) and ``absent`` (what an auditor would expect and the version did not have, e.g. a training
run without a validation result).

Stores: :class:`LocalArchiveStore` (a folder, the embedded default ``<state folder>/archive``); the S3
store lives on the Airflow side (``plugins/modelops/governance/archive_s3.py``), because it goes
through the Amazon provider's ``S3Hook``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import unquote, urlparse

from include import settings

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MODEL_DIR = "model"
VERSION_FILE = "version.json"
LOGGED_MODEL_FILE = "logged_model.json"
RUN_DIR = "run"
RUN_ARTIFACTS_DIR = f"{RUN_DIR}/artifacts"
EXTRA_DIR = "extra"
# Where training leaves what an auditor judges the data by (run artifacts): include.data.checks.validate
# logs include.data.validation.RESULT_FILE under "validation/"; training logs the drift reference under
# include.monitoring.reference_profile.PROFILE_ARTIFACT. A test checks these against those constants.
VALIDATION_RESULT = "validation/validation_result.json"
REFERENCE_PROFILE = "reference_profile/profile.json"

RESTORED_FROM_TAG = "restored_from"  # "<model>/<version>" the restored version was archived from
RESTORED_ARCHIVE_TAG = "restored_archive"  # "<store uri>/<prefix>"
RESTORED_RUN_TAG = "restored.run_id"  # the original training run's id, on the restored run
# Version tags that describe the archived version's life rather than the model: not copied on restore.
# Aliases are not tags and are never copied either.
VERSION_TAGS_NOT_COPIED = ("audit.", "retire", "serving.", RESTORED_FROM_TAG, RESTORED_ARCHIVE_TAG)
# Run tags not copied to the restored run: MLflow's own, the Airflow keys that tracking.upsert_run finds
# a training run by (a retried training task must not find the restored run), the old model's URI.
RUN_TAGS_NOT_COPIED = ("mlflow.", "airflow.", "modelops.model_uri", "modelops.outcome")
RETIRED_TAG = "retired"  # as include.promotion.rollout.RETIRED_TAG: a retired restore is not reused
REGISTERED_MODEL_META = "registered_model_meta"  # written by MLflow on download; rewritten on load

_CHUNK = 1 << 20
_MAX_PARAMS, _MAX_METRICS = 100, 1000  # MLflow's log_batch limits per call


class ArchiveError(RuntimeError):
    """An archive cannot be written, is incomplete or does not match its manifest; the message names the file."""


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, hex (64 characters), read in 1 MiB blocks."""
    sha = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            sha.update(block)
    return sha.hexdigest()


def check_key(key: str) -> str:
    """``key`` if it is a relative POSIX path without empty, ``.`` or ``..`` parts; else ``ArchiveError``."""
    parts = key.split("/")
    if not key or key.startswith("/") or "\\" in key or any(p in ("", ".", "..") for p in parts):
        raise ArchiveError(f"invalid archive key {key!r}: a relative path of non-empty parts, without '.' or '..'")
    return key


def archive_prefix(model: str, version: str | int) -> str:
    """The prefix a version is archived under: ``<model>/<version>``."""
    return f"{check_key(model)}/{check_key(str(version))}"


def _join(prefix: str, path: str) -> str:
    return check_key(f"{prefix.strip('/')}/{path}" if prefix.strip("/") else path)


# --- stores ------------------------------------------------------------------------------------


@runtime_checkable
class ArchiveStore(Protocol):
    """Where archives are kept. Keys are relative POSIX paths (:func:`check_key`) below :attr:`uri`."""

    @property
    def uri(self) -> str:
        """Where the store is (``file:///...``, ``s3://bucket/prefix``), for messages and tags."""
        ...

    def put(self, key: str, path: Path, sha256: str) -> None:
        """Store the file ``path`` as ``key``, replacing it; raise :class:`ArchiveError` unless the store
        then holds bytes whose SHA-256 (hex) is ``sha256`` (checked server-side where the store can)."""
        ...

    def get(self, key: str, dest: Path) -> None:
        """Write the object ``key`` to the file ``dest`` (its folder must exist); ``ArchiveError`` if missing."""
        ...

    def exists(self, key: str) -> bool:
        """Whether the store holds ``key``."""
        ...

    def stored_sha256(self, key: str) -> str | None:
        """The SHA-256 (hex) the store has for ``key``; None when there is no such object or no checksum."""
        ...


class LocalArchiveStore:
    """An :class:`ArchiveStore` in a folder: the embedded default, ``<state folder>/archive``.

    A put copies into a hidden temporary sibling, fsyncs it, rehashes what was written and only then
    renames it into place (``os.replace``), so a reader sees the old object or the new one, never a
    part. It has no checksum besides the bytes, so :meth:`stored_sha256` rehashes the file.
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).absolute()

    def __repr__(self) -> str:
        return f"LocalArchiveStore({str(self.root)!r})"

    @property
    def uri(self) -> str:
        return self.root.as_uri()

    def path(self, key: str) -> Path:
        """The file that holds ``key``."""
        return self.root.joinpath(*check_key(key).split("/"))

    def put(self, key: str, path: Path, sha256: str) -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        staged = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex}")
        try:
            with Path(path).open("rb") as src, staged.open("wb") as dst:
                shutil.copyfileobj(src, dst, _CHUNK)
                dst.flush()
                os.fsync(dst.fileno())
            found = file_sha256(staged)
            if found != sha256:
                raise ArchiveError(f"{self.uri}/{key}: stored bytes have sha256 {found}, expected {sha256}")
            os.replace(staged, target)
        finally:
            staged.unlink(missing_ok=True)
        _fsync_dir(target.parent)

    def get(self, key: str, dest: Path) -> None:
        source = self.path(key)
        if not source.is_file():
            raise ArchiveError(f"{self.uri}/{key}: no such object")
        staged = Path(dest).with_name(f".{Path(dest).name}.tmp-{uuid.uuid4().hex}")
        try:
            shutil.copyfile(source, staged)
            os.replace(staged, dest)
        finally:
            staged.unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def stored_sha256(self, key: str) -> str | None:
        path = self.path(key)
        return file_sha256(path) if path.is_file() else None


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not every platform opens folders
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def default_archive_root() -> Path:
    """The embedded default archive: ``<state folder>/archive``."""
    return settings.state_dir() / "archive"


def local_archive_store(uri: str | None) -> LocalArchiveStore:
    """A :class:`LocalArchiveStore` for a folder, a ``file://`` URI or None (:func:`default_archive_root`).

    Other schemes raise :class:`ArchiveError`; ``s3://`` stores are made on the Airflow side
    (``modelops.governance.archive_s3.archive_store``).
    """
    if uri is None:
        return LocalArchiveStore(default_archive_root())
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ArchiveError(f"archive URI {uri}: a file:// URI names no host")
        return LocalArchiveStore(Path(unquote(parsed.path)))
    if parsed.scheme and len(parsed.scheme) > 1:  # a Windows drive letter is not a scheme
        raise ArchiveError(f"archive URI {uri}: not a folder or file:// URI (s3:// is handled by the Airflow side)")
    return LocalArchiveStore(Path(uri).expanduser())


# --- the manifest ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArchivedFile:
    """One archived file: ``path`` relative to the archive (POSIX), ``size`` in bytes, ``sha256`` hex."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """What an archive holds; ``manifest.json`` (see the module docstring)."""

    model: str
    version: str
    created_at: str  # UTC, ISO 8601 with microseconds and "Z"
    files: tuple[ArchivedFile, ...]
    absent: tuple[str, ...] = ()
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps({
            "format_version": self.format_version, "model": self.model, "version": self.version,
            "created_at": self.created_at,
            "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in self.files],
            "absent": list(self.absent),
        }, indent=2) + "\n"

    @property
    def sha256(self) -> str:
        """SHA-256 (hex) of :meth:`to_json`: the bytes of the stored ``manifest.json``; a ledger can record it."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    def same_content(self, other: Manifest) -> bool:
        """Whether both describe the same files (creation time aside)."""
        return (self.model, self.version, self.files) == (other.model, other.version, other.files)

    @classmethod
    def from_json(cls, text: str | bytes, where: str) -> Manifest:
        """Parse a ``manifest.json``; :class:`ArchiveError` naming ``where`` when it is malformed."""
        try:
            data = json.loads(text)
            if data["format_version"] != FORMAT_VERSION:
                raise ArchiveError(f"{where}: manifest format_version {data['format_version']!r} is not {FORMAT_VERSION}")
            files = tuple(ArchivedFile(check_key(str(f["path"])), int(f["size"]), str(f["sha256"]))
                          for f in data["files"])
            return cls(model=str(data["model"]), version=str(data["version"]), created_at=str(data["created_at"]),
                       files=files, absent=tuple(str(a) for a in data.get("absent", ())))
        except ArchiveError:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            raise ArchiveError(f"{where}: malformed manifest ({type(exc).__name__}: {exc})") from None


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def write_manifest(workdir: Path, model: str, version: str, *, absent: Iterable[str] = ()) -> Manifest:
    """Hash every file under ``workdir`` (but ``manifest.json``) and write ``manifest.json`` (renamed into place)."""
    workdir = Path(workdir)
    files = []
    for path in sorted(p for p in workdir.rglob("*") if p.is_file()):
        relative = path.relative_to(workdir).as_posix()
        if relative != MANIFEST:
            files.append(ArchivedFile(check_key(relative), path.stat().st_size, file_sha256(path)))
    manifest = Manifest(model=model, version=str(version), created_at=_utc_now(),
                        files=tuple(sorted(files, key=lambda f: f.path)), absent=tuple(absent))
    staged = workdir / f".{MANIFEST}.tmp"
    staged.write_text(manifest.to_json(), encoding="utf-8")
    os.replace(staged, workdir / MANIFEST)
    return manifest


def read_manifest(workdir: Path) -> Manifest:
    """The ``manifest.json`` of a collected folder; :class:`ArchiveError` when it has none (incomplete)."""
    path = Path(workdir) / MANIFEST
    if not path.is_file():
        raise ArchiveError(f"{workdir}: no {MANIFEST}: the collection is incomplete")
    return Manifest.from_json(path.read_bytes(), str(path))


# --- collect -----------------------------------------------------------------------------------


def _write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    return path


def _logged_model_id(version: ModelVersion) -> str | None:
    model_id = getattr(version, "model_id", None)
    if model_id:
        return model_id
    source = version.source or ""
    rest = source.removeprefix("models:/")
    return rest if source.startswith("models:/") and rest.startswith("m-") and "/" not in rest else None


def _version_record(version: ModelVersion) -> dict[str, Any]:
    return {
        "name": version.name, "version": str(version.version), "description": version.description or "",
        "tags": dict(version.tags), "aliases": list(version.aliases), "source": version.source,
        "run_id": version.run_id, "model_id": _logged_model_id(version), "status": version.status,
        "creation_timestamp": version.creation_timestamp, "last_updated_timestamp": version.last_updated_timestamp,
        "user_id": version.user_id,
    }


def _metric(m: Any) -> dict[str, Any]:
    return {"key": m.key, "value": m.value, "step": m.step, "timestamp": m.timestamp}


def _collect_run(client: MlflowClient, run_id: str, workdir: Path) -> list[str]:
    """The training run's record, params, metrics, tags and artifacts; returns what an auditor misses."""
    run = client.get_run(run_id)
    info = run.info
    inputs = []
    for dataset_input in (run.inputs.dataset_inputs if run.inputs else []):
        ds = dataset_input.dataset
        inputs.append({"name": ds.name, "digest": ds.digest, "source_type": ds.source_type, "source": ds.source,
                       "tags": {t.key: t.value for t in dataset_input.tags}})
    _write_json(workdir / RUN_DIR / "info.json", {
        "run_id": info.run_id, "run_name": info.run_name, "experiment_id": info.experiment_id,
        "experiment_name": (client.get_experiment(info.experiment_id).name if info.experiment_id else None),
        "status": info.status, "start_time": info.start_time, "end_time": info.end_time, "user_id": info.user_id,
        "artifact_uri": info.artifact_uri, "dataset_inputs": inputs,
    })
    _write_json(workdir / RUN_DIR / "params.json", dict(run.data.params))
    _write_json(workdir / RUN_DIR / "tags.json", dict(run.data.tags))
    history = {key: [{"value": m.value, "step": m.step, "timestamp": m.timestamp}
                     for m in sorted(client.get_metric_history(run_id, key), key=lambda m: (m.timestamp, m.step))]
               for key in sorted(run.data.metrics)}
    _write_json(workdir / RUN_DIR / "metrics.json", history)
    if client.list_artifacts(run_id):
        target = workdir / RUN_ARTIFACTS_DIR
        target.mkdir(parents=True, exist_ok=True)
        client.download_artifacts(run_id, "", str(target))
    absent = []
    for relative, what in ((VALIDATION_RESULT, "validation result"), (REFERENCE_PROFILE, "drift reference profile")):
        if not (workdir / RUN_ARTIFACTS_DIR / relative).is_file():
            absent.append(f"{what}: training run {run_id} has no {relative} artifact")
    return absent


def collect(
    client: MlflowClient, model: str, version: str, workdir: Path, *, extra: Mapping[str, bytes] | None = None
) -> list[Path]:
    """Gather everything an auditor needs about ``model`` version ``version`` into ``workdir``; ``manifest.json`` last.

    ``workdir`` must be absent or empty (:class:`ArchiveError` otherwise: a half-collected folder from an
    earlier attempt is never mixed in). The layout is the module docstring's. ``extra`` maps relative
    file names to their bytes (e.g. ``{"ledger.jsonl": ..., "evidence.zip": ...}``), written under
    ``extra/``. What the version lacks (no training run, no validation result or reference profile
    among the run's artifacts) is logged as a warning and listed in the manifest's ``absent``.
    Returns the files written, ``manifest.json`` last. Sources: the MLflow registry (the version, its
    download URI), the tracking store (the run, its metric history and artifacts).
    """
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    workdir = Path(workdir)
    if workdir.exists() and any(workdir.iterdir()):
        raise ArchiveError(f"{workdir}: the collection folder must be empty")
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        found = client.get_model_version(model, str(version))
    except MlflowException as exc:
        raise ArchiveError(f"{model} version {version} cannot be read from the registry: {exc.message}") from None
    version = str(found.version)
    # The model, from where the registry says its files are (the version's source, resolved).
    download = workdir / ".download"
    download.mkdir()
    fetched = Path(mlflow.artifacts.download_artifacts(
        artifact_uri=client.get_model_version_download_uri(model, version), dst_path=str(download),
        tracking_uri=client.tracking_uri))
    if not (fetched / "MLmodel").is_file():
        raise ArchiveError(f"{model} version {version}: its source {found.source} holds no MLmodel file")
    os.replace(fetched, workdir / MODEL_DIR)
    shutil.rmtree(download)
    _write_json(workdir / VERSION_FILE, _version_record(found))
    if model_id := _logged_model_id(found):
        try:
            logged = client.get_logged_model(model_id)
            _write_json(workdir / LOGGED_MODEL_FILE, {
                "model_id": logged.model_id, "name": logged.name, "source_run_id": logged.source_run_id,
                "experiment_id": logged.experiment_id, "artifact_location": logged.artifact_location,
                "creation_timestamp": logged.creation_timestamp, "status": str(logged.status),
                "tags": dict(logged.tags), "params": dict(logged.params),
                "metrics": [_metric(m) for m in logged.metrics or []],
            })
        except MlflowException as exc:
            log.warning("%s version %s: logged model %s cannot be read (%s)", model, version, model_id, exc.message)
    if found.run_id:
        absent = _collect_run(client, found.run_id, workdir)
    else:
        absent = [f"training run: {model} version {version} names none"]
    for name, data in (extra or {}).items():
        target = workdir / EXTRA_DIR / check_key(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    for line in absent:
        log.warning("Archive of %s version %s lacks the %s", model, version, line)
    manifest = write_manifest(workdir, model, version, absent=absent)
    log.info("Collected %s version %s: %d files, %d bytes", model, version, len(manifest.files),
             sum(f.size for f in manifest.files))
    return [*(workdir / f.path for f in manifest.files), workdir / MANIFEST]


# --- upload and verify -------------------------------------------------------------------------


def _stored_manifest(store: ArchiveStore, prefix: str) -> Manifest | None:
    key = _join(prefix, MANIFEST)
    if not store.exists(key):
        return None
    with tempfile.TemporaryDirectory(prefix="archive-manifest-") as tmp:
        dest = Path(tmp) / MANIFEST
        store.get(key, dest)
        return Manifest.from_json(dest.read_bytes(), f"{store.uri}/{key}")


def upload(store: ArchiveStore, prefix: str, workdir: Path, *, replace: bool = False) -> Manifest:
    """Store the collected folder ``workdir`` under ``prefix``; the manifest goes last. Returns the stored manifest.

    Idempotent and safe to retry: a file the store already holds with the manifest's SHA-256 is not
    sent again, so a retry after a failure half-way sends only what is missing or wrong. When the
    store already holds a manifest with the same files (a repeated run, even of a newer collection),
    it is kept and returned. One listing other files raises :class:`ArchiveError` before anything is
    sent, unless ``replace``: archives are not rewritten by accident. Raises :class:`ArchiveError` when
    ``workdir`` has no manifest (an incomplete collection) or the store's checksum of a sent file differs.
    """
    manifest = read_manifest(workdir)
    existing = _stored_manifest(store, prefix)
    if existing is not None and not existing.same_content(manifest) and not replace:
        different = _first_difference(existing, manifest)
        raise ArchiveError(f"{store.uri}/{prefix} already holds an archive of other content ({different}); "
                           "pass replace=True to overwrite it")
    sent = kept = 0
    for item in manifest.files:
        key = _join(prefix, item.path)
        if store.stored_sha256(key) == item.sha256:
            kept += 1
            continue
        store.put(key, Path(workdir) / item.path, item.sha256)
        sent += 1
    if existing is not None and existing.same_content(manifest):
        log.info("Archive %s/%s: %d files sent, %d already stored; its manifest was already stored",
                 store.uri, prefix, sent, kept)
        return existing
    store.put(_join(prefix, MANIFEST), Path(workdir) / MANIFEST, file_sha256(Path(workdir) / MANIFEST))
    log.info("Archive %s/%s: %d files sent, %d already stored, manifest %s", store.uri, prefix, sent, kept,
             manifest.sha256)
    return manifest


def _first_difference(old: Manifest, new: Manifest) -> str:
    if (old.model, old.version) != (new.model, new.version):
        return f"it archives {old.model} version {old.version}, not {new.model} version {new.version}"
    before, after = {f.path: f for f in old.files}, {f.path: f for f in new.files}
    for path in sorted(before.keys() | after.keys()):
        if before.get(path) != after.get(path):
            return f"first difference: {path}"
    return "no difference"


def verify(store: ArchiveStore, prefix: str, *, expected: Manifest | None = None) -> Manifest:
    """Check the archive under ``prefix``: every file its manifest lists, by the store's SHA-256. Returns the manifest.

    Raises :class:`ArchiveError` naming the first problem: no manifest (an incomplete archive; with
    ``expected``, e.g. the manifest :func:`upload` returned or a ledger kept, also the first of its files
    the store lacks), a missing file, a file without a SHA-256 in the store, a checksum that differs
    (expected vs found, hex), or a stored manifest other than ``expected``. For :class:`LocalArchiveStore`
    the store's checksum is a rehash of the bytes; for S3 it is the checksum S3 computed on upload.
    """
    stored = _stored_manifest(store, prefix)
    if stored is None:
        where = f"{store.uri}/{_join(prefix, MANIFEST)}"
        if expected is not None:
            missing = [f.path for f in expected.files if not store.exists(_join(prefix, f.path))]
            if missing:
                raise ArchiveError(f"incomplete archive: {where} is missing, and so is "
                                   f"{store.uri}/{_join(prefix, missing[0])} ({len(missing)} files missing)")
        raise ArchiveError(f"incomplete archive: {where} is missing")
    if expected is not None and not stored.same_content(expected):
        raise ArchiveError(f"{store.uri}/{prefix}: the stored manifest differs from the expected one "
                           f"({_first_difference(stored, expected)})")
    for item in stored.files:
        key = _join(prefix, item.path)
        found = store.stored_sha256(key)
        if found is None:
            if not store.exists(key):
                raise ArchiveError(f"{store.uri}/{key} is missing (listed in the manifest, sha256 {item.sha256})")
            raise ArchiveError(f"{store.uri}/{key} has no SHA-256 checksum in the store (expected {item.sha256})")
        if found != item.sha256:
            raise ArchiveError(f"{store.uri}/{key}: checksum mismatch: expected sha256 {item.sha256}, found {found}")
    log.info("Archive %s/%s verified: %d files", store.uri, prefix, len(stored.files))
    return stored


def fetch(store: ArchiveStore, prefix: str, dest: Path) -> Manifest:
    """Download the archive under ``prefix`` into the folder ``dest`` (absent or empty), checking every file.

    The store's checksums are checked first (:func:`verify`), then each downloaded file's size and
    SHA-256 against the manifest; :class:`ArchiveError` names the first file that differs.
    """
    manifest = verify(store, prefix)
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise ArchiveError(f"{dest}: the download folder must be empty")
    for item in manifest.files:
        target = dest / item.path
        target.parent.mkdir(parents=True, exist_ok=True)
        store.get(_join(prefix, item.path), target)
        size, found = target.stat().st_size, file_sha256(target)
        if (size, found) != (item.size, item.sha256):
            raise ArchiveError(f"{store.uri}/{_join(prefix, item.path)}: downloaded {size} bytes with sha256 {found}, "
                               f"expected {item.size} bytes with sha256 {item.sha256}")
    store.get(_join(prefix, MANIFEST), dest / MANIFEST)
    if Manifest.from_json((dest / MANIFEST).read_bytes(), f"{store.uri}/{_join(prefix, MANIFEST)}") != manifest:
        raise ArchiveError(f"{store.uri}/{_join(prefix, MANIFEST)} changed while the archive was downloaded")
    return manifest


# --- restore -----------------------------------------------------------------------------------


def _copied(tags: Mapping[str, str], not_copied: tuple[str, ...]) -> dict[str, str]:
    return {k: v for k, v in tags.items() if not k.startswith(not_copied)}


def _chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _flag(value: str | None) -> bool:
    return value is not None and value.strip().lower() not in ("", "false", "0", "no")


def _earlier_restore(client: MlflowClient, experiment_id: str, model: str, keys: Mapping[str, str]) -> ModelVersion | None:
    """The version a finished earlier restore of the same archive registered, unless it has been retired since."""
    if any("'" in v for v in keys.values()):
        return None  # cannot be searched for; restore again
    query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in keys.items())
    for run in client.search_runs([experiment_id], filter_string=query, order_by=["attributes.start_time DESC"]):
        if run.info.status != "FINISHED":
            continue
        versions = client.search_model_versions(f"name = '{model}' and run_id = '{run.info.run_id}'")
        for version in versions:
            if not _flag(version.tags.get(RETIRED_TAG)):
                return version
    return None


def restore(
    client: MlflowClient, store: ArchiveStore, prefix: str, model: str, *, experiment: str | None = None
) -> ModelVersion:
    """Register the archive under ``prefix`` as a NEW version of ``model``; returns it.

    The archive is checked (:func:`verify`), fetched into a temporary folder and every file's size and
    SHA-256 checked again (:func:`fetch`); nothing is registered when a check fails. Then, in the
    experiment ``experiment`` (default ``modelops/<model>``, as :attr:`include.config.ModelConfig.experiment_name`):
    a new run with the original run's params and full metric history, its tags (but MLflow's own,
    the ``airflow.*`` keys training runs are found by, ``modelops.model_uri`` and ``modelops.outcome``),
    its artifacts (validation result, drift reference profile: monitoring reads them from the version's
    run), and the archive's records under ``restored_archive/``; a logged model holding the archived
    model's bytes unchanged; and a version of ``model`` with the original's description and tags
    (but ``audit.*``, ``retire*``, ``serving.*``: the archived version's life, not the model's), plus
    ``restored_from`` = ``<model>/<version>`` and ``restored_archive`` = ``<store uri>/<prefix>``. No alias
    is set. Safe to retry: a finished earlier restore of the same archive whose version is not retired
    is returned instead of registering another.
    """
    from mlflow.entities import Metric, Param

    from include import tracking
    from include.promotion.registry import ensure_registered_model

    archive_uri = f"{store.uri}/{prefix.strip('/')}"
    experiment = experiment or f"modelops/{model}"
    listed = verify(store, prefix)
    experiment_id = tracking.ensure_experiment(client, experiment)
    original = f"{listed.model}/{listed.version}"
    keys = {RESTORED_FROM_TAG: original, RESTORED_ARCHIVE_TAG: archive_uri}
    if (earlier := _earlier_restore(client, experiment_id, model, keys)) is not None:
        log.info("Archive %s was already restored as %s version %s", archive_uri, model, earlier.version)
        return earlier  # before any download: a retry needs no thawed (GLACIER) objects
    with tempfile.TemporaryDirectory(prefix="archive-restore-") as tmp:
        folder = Path(tmp) / "archive"
        manifest = fetch(store, prefix, folder)
        if not manifest.same_content(listed):
            raise ArchiveError(f"{archive_uri}: the archive changed while it was restored")
        record = json.loads((folder / VERSION_FILE).read_text(encoding="utf-8"))
        run_dir = folder / RUN_DIR
        run_tags = json.loads((run_dir / "tags.json").read_text()) if (run_dir / "tags.json").is_file() else {}
        params = json.loads((run_dir / "params.json").read_text()) if (run_dir / "params.json").is_file() else {}
        metrics = json.loads((run_dir / "metrics.json").read_text()) if (run_dir / "metrics.json").is_file() else {}
        tags = {**_copied(run_tags, RUN_TAGS_NOT_COPIED), **keys}
        if record.get("run_id"):
            tags[RESTORED_RUN_TAG] = record["run_id"]
        run_id = client.create_run(experiment_id, run_name=f"restore-{manifest.model}-v{manifest.version}",
                                   tags=tags).info.run_id
        try:
            for chunk in _chunks([Param(k, str(v)) for k, v in params.items()], _MAX_PARAMS):
                client.log_batch(run_id, params=chunk)
            points = [Metric(k, float(p["value"]), int(p["timestamp"]), int(p["step"]))
                      for k, values in metrics.items() for p in values]
            for chunk in _chunks(points, _MAX_METRICS):
                client.log_batch(run_id, metrics=chunk)
            if (folder / RUN_ARTIFACTS_DIR).is_dir():
                client.log_artifacts(run_id, str(folder / RUN_ARTIFACTS_DIR))
            for item in [*manifest.files, ArchivedFile(MANIFEST, 0, "")]:
                path = PurePosixPath(item.path)
                if path.parts[0] != MODEL_DIR and not item.path.startswith(f"{RUN_ARTIFACTS_DIR}/"):
                    parent = PurePosixPath("restored_archive", *path.parts[:-1]).as_posix()
                    client.log_artifact(run_id, str(folder / item.path), artifact_path=parent)
            logged = client.create_logged_model(experiment_id, name=MODEL_DIR, source_run_id=run_id,
                                                tags={RESTORED_FROM_TAG: original})
            model_dir = Path(tmp) / "model"
            shutil.copytree(folder / MODEL_DIR, model_dir,
                            ignore=shutil.ignore_patterns(REGISTERED_MODEL_META))  # MLflow rewrites it on load
            client.log_model_artifacts(logged.model_id, str(model_dir))
            client.finalize_logged_model(logged.model_id, "READY")
            ensure_registered_model(client, model)
            version_tags = {**_copied(record.get("tags") or {}, VERSION_TAGS_NOT_COPIED), **keys}
            created = client.create_model_version(
                model, source=f"models:/{logged.model_id}", run_id=run_id, tags=version_tags,
                description=record.get("description") or None, model_id=logged.model_id,
            )
            client.set_tag(run_id, "modelops.model_uri", f"models:/{logged.model_id}")
        except Exception:
            tracking.close_run(client, run_id, "FAILED", f"failed: restoring {archive_uri}")
            raise
        tracking.close_run(client, run_id, "FINISHED", f"restored {original} from {archive_uri} "
                                                       f"as {model} version {created.version}")
    log.info("Restored %s from %s as %s version %s", original, archive_uri, model, created.version)
    return client.get_model_version(model, str(created.version))


__all__ = [
    "ArchiveError", "ArchiveStore", "ArchivedFile", "LocalArchiveStore", "Manifest", "archive_prefix", "check_key",
    "collect", "default_archive_root", "fetch", "file_sha256", "local_archive_store", "read_manifest", "restore",
    "upload", "verify", "write_manifest",
]
