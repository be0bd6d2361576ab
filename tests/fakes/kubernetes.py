"""A Kubernetes API server on loopback that runs each pod's containers as local processes.

It speaks the core/v1 REST protocol the Kubernetes Python clients use (``kubernetes`` for the
``KubernetesPodOperator``, ``kubernetes_asyncio`` for its ``KubernetesPodTrigger``), over real HTTP
with bearer-token authentication, so the provider's own code is what is tested:

* ``POST /api/v1/namespaces/{ns}/pods``: the body is validated against Kubernetes' OpenAPI schema
  (``kubernetes-validate``, version :data:`K8S_VERSION`, unknown fields refused as with
  ``fieldValidation=Strict``) and a few of the API server's own rules (names, labels, env names,
  requests within limits); a bad pod gets ``422 Invalid`` with a ``Status`` naming the fields.
  Missing namespace: ``404``; unknown service account: ``403``; name taken: ``409``.
* ``GET …/pods`` (``labelSelector``, ``fieldSelector``, ``watch=true`` streaming JSON lines),
  ``GET / PATCH / DELETE …/pods/{name}``, ``GET …/pods/{name}/log`` (``container``, ``follow``,
  ``timestamps`` in RFC 3339 with nanoseconds, ``sinceSeconds``, ``sinceTime``, ``tailLines``,
  ``limitBytes``), ``GET …/events`` (list and watch), secrets, config maps and service accounts.
  ``exec`` / ``attach`` answer ``400 Upgrade request required`` (no websockets here).

A pod goes through the phases the kubelet reports: ``Pending`` (unscheduled, then scheduled with its
containers ``waiting: ContainerCreating``), ``Running``, then ``Succeeded`` or ``Failed`` with each
container ``terminated`` (``exitCode``, ``reason`` ``Completed`` / ``Error``, ``startedAt``,
``finishedAt``, and with ``terminationMessagePolicy: FallbackToLogsOnError`` the last 80 lines /
2048 bytes of its log as ``message``), with the events the scheduler and the kubelet write
(``Scheduled``, ``Pulling``, ``Pulled``, ``Created``, ``Started``, ``Failed``, ``BackOff``,
``FailedScheduling``, ``Killing``).

What a container runs comes from the :class:`Image` registered under its ``image`` reference: a host
folder that appears at a path inside the container (``/opt/airflow`` for the project's image), the
image's ``ENV``, ``WORKDIR`` and ``ENTRYPOINT``. The process gets exactly the image's environment
overlaid with the pod's ``env`` / ``envFrom`` (literal values, ``$(VAR)`` expansion, ``secretKeyRef``
and ``configMapKeyRef`` from objects registered in the double, ``fieldRef``), nothing of the test's
own environment. A reference that is not registered cannot be pulled: ``ErrImagePull``, then
``ImagePullBackOff`` for good (:meth:`FakeKubernetes.fail_pull` sets the registry's error message).
A missing Secret or key leaves the container ``waiting: CreateContainerConfigError`` until it appears.
Scheduling checks ``nodeSelector`` and resource requests against one node (:class:`Node`); a pod
that does not fit stays ``Pending`` with ``PodScheduled=False, reason Unschedulable``.
``DELETE`` sends SIGTERM to the container's process group and SIGKILL after the grace period.

Not simulated: init and ephemeral containers (``501``), restarts (every pod runs once, as with
``restartPolicy: Never``), resource limits (nothing is enforced), volumes, probes, ``activeDeadlineSeconds``.

    with FakeKubernetes(images={"modelops:test": Image(root=ROOT, mount="/opt/airflow")}) as kube:
        kube.add_namespace("ml-training", service_accounts=["modelops-trainer"])
        kube.add_secret("ml-training", "mlflow", {"uri": "sqlite:///…"})
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
        ...
        (record,) = kube.records()
        assert record.exit_codes == {"base": 0} and record.deleted
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import secrets as _secrets
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

K8S_VERSION = "1.33"
MAX_BODY = 3 << 20  # the API server's request size limit
TERMINATION_LOG_LINES = 80  # FallbackToLogsOnError: the kubelet keeps this much of the log …
TERMINATION_LOG_BYTES = 2048  # … whichever is smaller
DEFAULT_GRACE_S = 30

_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN = re.compile(rf"^{_DNS_LABEL}(\.{_DNS_LABEL})*$")
_DNS_LABEL_RE = re.compile(rf"^{_DNS_LABEL}$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_QUANTITY = re.compile(r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$")
_SUFFIX = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60, "n": Decimal("1e-9"),
           "u": Decimal("1e-6"), "m": Decimal("1e-3"), "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15,
           "E": 10**18, None: 1}
_GENERATED = "bcdfghjklmnpqrstvwxz2456789"  # the API server's generateName alphabet

# Field selectors the API server accepts, per kind (others: 400).
_FIELDS = {
    "Pod": {"metadata.name", "metadata.namespace", "spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
            "spec.serviceAccountName", "status.phase", "status.podIP", "status.nominatedNodeName"},
    "Event": {"metadata.name", "metadata.namespace", "involvedObject.kind", "involvedObject.namespace",
              "involvedObject.name", "involvedObject.uid", "involvedObject.apiVersion",
              "involvedObject.resourceVersion", "involvedObject.fieldPath", "reason", "reportingComponent",
              "source", "type"},
}
_RESOURCES = {"pods": "Pod", "events": "Event", "secrets": "Secret", "configmaps": "ConfigMap",
              "serviceaccounts": "ServiceAccount"}
_CREATABLE = {"Pod", "Secret", "ConfigMap", "ServiceAccount"}


def parse_quantity(text: str | int | float) -> Decimal:
    """A Kubernetes resource quantity (``"500m"``, ``"4Gi"``, ``"1e3"``, ``2``) as a number; ValueError if malformed."""
    match = _QUANTITY.match(str(text).strip())
    if not match:
        raise ValueError(f"quantities must match the regular expression '{_QUANTITY.pattern}'")
    number, suffix = match.groups()
    try:
        value = Decimal(number)
    except InvalidOperation:
        raise ValueError(f"invalid quantity {text!r}") from None
    if suffix and suffix[0] in "eE" and suffix not in _SUFFIX:
        return value * Decimal(10) ** int(suffix[1:])
    return value * Decimal(_SUFFIX[suffix])


def _now() -> datetime:
    return datetime.now(UTC)


def _rfc3339(moment: datetime) -> str:
    """RFC 3339 to the second, as the API server writes timestamps (``2026-11-22T10:00:00Z``)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _rfc3339_nano(moment: datetime) -> str:
    """RFC 3339 with nanoseconds, trailing zeros trimmed (Go's ``time.RFC3339Nano``), as in ``kubectl logs --timestamps``."""
    fraction = f"{moment.microsecond:06d}000".rstrip("0")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "") + "Z"


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def normalize_image(reference: str) -> str:
    """``name`` → ``name:latest``, as a container runtime reads a reference without a tag or digest."""
    last = reference.rsplit("/", 1)[-1]
    return reference if ":" in last or "@" in last else f"{reference}:latest"


@dataclass(frozen=True)
class Image:
    """What a container image holds, for the double.

    ``root``: the host folder whose files appear in the container at ``mount`` (paths under
    ``mount`` in the working directory, in environment values and in arguments are translated to
    it). ``env``: the image's ``ENV`` (give ``PATH`` where ``python`` and friends are found).
    ``workdir``: the image's ``WORKDIR`` (default: ``mount``). ``entrypoint`` and ``cmd``: the
    image's ``ENTRYPOINT`` and ``CMD``, combined with a container's ``command`` and ``args`` as
    Kubernetes does (``command`` replaces both, ``args`` replaces ``CMD``).
    """

    root: Path
    mount: str = "/"
    env: Mapping[str, str] = field(default_factory=dict)
    workdir: str | None = None
    entrypoint: Sequence[str] = ()
    cmd: Sequence[str] = ()

    def host_path(self, value: str) -> str:
        """``value`` with a container path under ``mount`` (or each such ``:``-separated element) made a host path."""
        def one(part: str) -> str:
            mount = self.mount.rstrip("/")
            if mount and (part == mount or part.startswith(mount + "/")):
                return str(self.root) + part[len(mount):]
            return part

        return os.pathsep.join(one(p) for p in value.split(os.pathsep)) if os.pathsep in value else one(value)


@dataclass(frozen=True)
class Node:
    """The one node pods are scheduled on: its labels (for ``nodeSelector``) and allocatable resources."""

    name: str = "loopback-node"
    labels: Mapping[str, str] = field(default_factory=lambda: {
        "kubernetes.io/hostname": "loopback-node", "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"})
    allocatable: Mapping[str, str] = field(default_factory=lambda: {"cpu": "16", "memory": "64Gi", "pods": "110"})


@dataclass
class PodRecord:
    """What happened to one pod, kept after it is deleted: for tests to look at."""

    namespace: str
    name: str
    body: dict  # the request body, as the client posted it
    phases: list[str] = field(default_factory=list)  # every phase the pod went through, in order
    argv: dict[str, list[str]] = field(default_factory=dict)  # container -> the command line that ran
    env: dict[str, dict[str, str]] = field(default_factory=dict)  # container -> its process environment
    exit_codes: dict[str, int] = field(default_factory=dict)
    logs: dict[str, list[tuple[datetime, bytes]]] = field(default_factory=dict)  # container -> (time, line)
    deleted: bool = False
    final: dict | None = None  # the pod object as it was when deleted

    def log_text(self, container: str | None = None) -> str:
        name = container or next(iter(self.logs), "")
        return "".join(line.decode(errors="replace") for _, line in self.logs.get(name, []))


@dataclass(frozen=True)
class Request:
    """One request the double answered."""

    method: str
    path: str
    query: dict[str, str]
    status: int
    user_agent: str


class ApiError(Exception):
    """Answer with a ``Status`` object: ``code`` (HTTP status), ``reason`` (``NotFound``, ``Invalid``…), ``message``."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def status(self) -> dict:
        body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": self.message,
                "reason": self.reason, "code": self.code}
        if self.details:
            body["details"] = self.details
        return body


def _not_found(kind: str, name: str) -> ApiError:
    plural = {"Pod": "pods", "Namespace": "namespaces", "Secret": "secrets", "ConfigMap": "configmaps",
              "ServiceAccount": "serviceaccounts", "Event": "events"}[kind]
    return ApiError(404, "NotFound", f'{plural} "{name}" not found', {"name": name, "kind": plural})


def _method_not_allowed() -> ApiError:
    return ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")


def _invalid(kind: str, name: str, causes: list[tuple[str, str]]) -> ApiError:
    """``422 Invalid`` as the API server words it: ``Pod "x" is invalid: [field: message, …]``."""
    text = ", ".join(f"{f}: {m}" for f, m in causes)
    message = f'{kind} "{name}" is invalid: ' + (f"[{text}]" if len(causes) > 1 else text)
    return ApiError(422, "Invalid", message, {
        "name": name, "kind": kind.lower() + "s",
        "causes": [{"reason": "FieldValueInvalid", "message": m, "field": f} for f, m in causes]})


# --- selectors ----------------------------------------------------------------------------------

def _split_requirements(text: str) -> list[str]:
    parts, depth, current = [], 0, []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def label_selector(text: str | None) -> Callable[[Mapping[str, str]], bool]:
    """A ``labelSelector`` (``a=b``, ``a==b``, ``a!=b``, ``a in (x,y)``, ``a notin (x)``, ``a``, ``!a``) as a predicate."""
    checks: list[Callable[[Mapping[str, str]], bool]] = []
    for requirement in _split_requirements(text or ""):
        if m := re.fullmatch(r"(!?)\s*([A-Za-z0-9./_-]+)", requirement):
            negate, key = m.groups()
            checks.append(lambda labels, k=key, n=bool(negate): (k in labels) != n)
        elif m := re.fullmatch(r"([A-Za-z0-9./_-]+)\s*(==|=|!=)\s*([A-Za-z0-9._-]*)", requirement):
            key, op, value = m.groups()
            if op == "!=":
                checks.append(lambda labels, k=key, v=value: labels.get(k) != v)
            else:
                checks.append(lambda labels, k=key, v=value: labels.get(k) == v)
        elif m := re.fullmatch(r"([A-Za-z0-9./_-]+)\s+(in|notin)\s*\(([^)]*)\)", requirement):
            key, op, values = m.groups()
            options = {v.strip() for v in values.split(",")}
            if op == "in":
                checks.append(lambda labels, k=key, o=options: labels.get(k) in o)
            else:
                checks.append(lambda labels, k=key, o=options: labels.get(k) not in o)
        else:
            raise ApiError(400, "BadRequest", f"unable to parse requirement: {requirement!r}")
    return lambda labels: all(check(labels) for check in checks)


def field_selector(kind: str, text: str | None) -> Callable[[Mapping[str, Any]], bool]:
    """A ``fieldSelector`` (``a.b=c``, ``a.b==c``, ``a.b!=c``) over the fields the API server indexes for ``kind``."""
    checks: list[Callable[[Mapping[str, Any]], bool]] = []
    for requirement in _split_requirements(text or ""):
        m = re.fullmatch(r"([A-Za-z.]+)\s*(==|=|!=)\s*(.*)", requirement)
        if not m:
            raise ApiError(400, "BadRequest", f"invalid selector: {requirement!r}; can't understand {requirement!r}")
        path, op, value = m.groups()
        if path not in _FIELDS.get(kind, {"metadata.name", "metadata.namespace"}):
            raise ApiError(400, "BadRequest", f'field label not supported: {path}')

        def get(obj: Mapping[str, Any], p: str = path) -> str:
            for part in p.split("."):
                obj = obj.get(part) if isinstance(obj, Mapping) else None
            if isinstance(obj, Mapping):  # "source" is the component
                obj = obj.get("component")
            return "" if obj is None else str(obj)

        checks.append((lambda o, g=get, v=value: g(o) != v) if op == "!=" else (lambda o, g=get, v=value: g(o) == v))
    return lambda obj: all(check(obj) for check in checks)


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (``null`` deletes)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


def _expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: known names are replaced, ``$$`` is a literal ``$``, the rest stays."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
            continue
        if text.startswith("$(", i) and (end := text.find(")", i + 2)) != -1 and text[i + 2:end] in env:
            out.append(env[text[i + 2:end]])
            i = end + 1
            continue
        out.append(text[i])
        i += 1
    return "".join(out)


class _ConfigError(Exception):
    """A container that cannot be created yet: ``CreateContainerConfigError`` with this message."""


# --- the server ---------------------------------------------------------------------------------

class FakeKubernetes:
    """A thread-based Kubernetes API server on ``127.0.0.1`` whose pods run as local processes.

    ``images``: reference -> :class:`Image` (what can be pulled). ``node``: where pods are scheduled.
    ``token``: the bearer token clients must send (:meth:`kubeconfig` carries it). The delays
    (seconds) pace a pod's startup: unscheduled → scheduled, image pull, ``ErrImagePull`` →
    ``ImagePullBackOff``. Namespace ``default`` (with service account ``default``) exists.
    """

    def __init__(
        self, *, images: Mapping[str, Image] | None = None, node: Node | None = None, host: str = "127.0.0.1",
        port: int = 0, token: str | None = None, schedule_delay: float = 0.2, pull_delay: float = 0.2,
        backoff_delay: float = 0.5,
    ) -> None:
        self.images = {normalize_image(k): v for k, v in (images or {}).items()}
        self.node = node or Node()
        self.token = token or _secrets.token_urlsafe(24)
        self.schedule_delay, self.pull_delay, self.backoff_delay = schedule_delay, pull_delay, backoff_delay
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._objects: dict[tuple[str, str, str], dict] = {}  # (kind, namespace, name) -> object
        self._history: list[tuple[int, str, dict]] = []  # (resourceVersion, ADDED|MODIFIED|DELETED, object)
        self._rv = 1000
        self._records: dict[tuple[str, str], PodRecord] = {}
        self._all_records: list[PodRecord] = []
        self._procs: dict[tuple[str, str, str], subprocess.Popen] = {}
        self._pull_errors: dict[str, str] = {}
        self._scheduling_paused = False
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self.requests: list[Request] = []
        self.add_namespace("default")
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # --- lifecycle
    def start(self) -> FakeKubernetes:
        if self._thread is None:
            self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="fake-kubernetes",
                                            daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Kill every container process still running, end open watches and log streams, stop serving."""
        with self._changed:
            self._stopping = True
            procs = list(self._procs.values())
            self._changed.notify_all()
        for proc in procs:
            _kill_group(proc, signal.SIGKILL)
        for proc in procs:
            proc.wait()
        for thread in list(self._threads):
            thread.join(timeout=10)
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> FakeKubernetes:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        return _handler_class_for(self)

    # --- what tests set up
    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def kubeconfig(self, namespace: str = "default") -> dict:
        """A kubeconfig (as a dict) whose current context reaches this server with its token."""
        return {
            "apiVersion": "v1", "kind": "Config", "current-context": "fake", "preferences": {},
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": self.token}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": namespace}}],
        }

    def write_kubeconfig(self, path: Path, namespace: str = "default") -> Path:
        path.write_text(json.dumps(self.kubeconfig(namespace), indent=2))  # JSON is YAML
        path.chmod(0o600)
        return path

    def add_image(self, reference: str, image: Image) -> None:
        with self._lock:
            self.images[normalize_image(reference)] = image

    def fail_pull(self, reference: str, message: str | None) -> None:
        """Pulling ``reference`` fails with ``message`` (the registry's words, e.g. a rate limit); None: it works again."""
        with self._lock:
            if message is None:
                self._pull_errors.pop(normalize_image(reference), None)
            else:
                self._pull_errors[normalize_image(reference)] = message

    def add_namespace(self, name: str, service_accounts: Iterable[str] = ()) -> None:
        with self._changed:
            self._put("Namespace", "", name, {"metadata": {"name": name}, "spec": {"finalizers": ["kubernetes"]},
                                              "status": {"phase": "Active"}})
            for account in {"default", *service_accounts}:
                self._put("ServiceAccount", name, account, {"metadata": {"name": account, "namespace": name}})

    def add_secret(self, namespace: str, name: str, values: Mapping[str, str]) -> None:
        """An Opaque Secret (as ``kubectl create secret generic --from-literal``)."""
        data = {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}
        with self._changed:
            self._put("Secret", namespace, name, {"metadata": {"name": name, "namespace": namespace},
                                                  "type": "Opaque", "data": data})

    def add_config_map(self, namespace: str, name: str, values: Mapping[str, str]) -> None:
        with self._changed:
            self._put("ConfigMap", namespace, name, {"metadata": {"name": name, "namespace": namespace},
                                                     "data": dict(values)})

    def pause_scheduling(self) -> None:
        """New pods stay ``Pending`` and unscheduled (a busy scheduler) until :meth:`resume_scheduling`."""
        with self._changed:
            self._scheduling_paused = True

    def resume_scheduling(self) -> None:
        with self._changed:
            self._scheduling_paused = False
            self._changed.notify_all()

    # --- what tests look at
    def records(self) -> list[PodRecord]:
        """Every pod ever created, in order, deleted ones included."""
        with self._lock:
            return list(self._all_records)

    def pods(self, namespace: str | None = None) -> list[dict]:
        """The pods that exist now (deep copies)."""
        with self._lock:
            return [copy.deepcopy(o) for (k, ns, _), o in self._objects.items()
                    if k == "Pod" and (namespace is None or ns == namespace)]

    def events(self, namespace: str, pod: str) -> list[dict]:
        with self._lock:
            return [copy.deepcopy(o) for (k, ns, _), o in self._objects.items()
                    if k == "Event" and ns == namespace and o["involvedObject"]["name"] == pod]

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
        """Block until ``predicate()`` is truthy (re-checked on every change); returns its value."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not (result := predicate()):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"not within {timeout} s: {what}")
                self._changed.wait(min(left, 0.2))
            return result

    # --- the object store (call with the lock held)
    def _put(self, kind: str, namespace: str, name: str, obj: dict, event: str | None = None) -> dict:
        key = (kind, namespace, name)
        meta = obj.setdefault("metadata", {})
        existing = self._objects.get(key)
        if existing is None:
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", _rfc3339(_now()))
        self._rv += 1
        meta["resourceVersion"] = str(self._rv)
        obj.setdefault("kind", kind)
        obj.setdefault("apiVersion", "v1")
        self._objects[key] = obj
        self._history.append((self._rv, event or ("ADDED" if existing is None else "MODIFIED"), copy.deepcopy(obj)))
        self._changed.notify_all()
        return obj

    def _remove(self, kind: str, namespace: str, name: str) -> dict | None:
        obj = self._objects.pop((kind, namespace, name), None)
        if obj is not None:
            self._rv += 1
            obj["metadata"]["resourceVersion"] = str(self._rv)
            self._history.append((self._rv, "DELETED", copy.deepcopy(obj)))
            self._changed.notify_all()
        return obj

    def _get(self, kind: str, namespace: str, name: str) -> dict:
        obj = self._objects.get((kind, namespace, name))
        if obj is None:
            raise _not_found(kind, name)
        return obj

    def _require_namespace(self, namespace: str) -> None:
        if ("Namespace", "", namespace) not in self._objects:
            raise _not_found("Namespace", namespace)

    def _event(self, pod: dict, kind: str, reason: str, message: str, *, container: str | None = None,
               component: str = "kubelet") -> None:
        """Record an event about ``pod`` (a repeat of the same one counts up, as the event recorder does)."""
        meta = pod["metadata"]
        for (k, ns, _), event in self._objects.items():
            if (k == "Event" and ns == meta["namespace"] and event["involvedObject"]["uid"] == meta["uid"]
                    and event["reason"] == reason and event["message"] == message):
                event["count"] += 1
                event["lastTimestamp"] = _rfc3339(_now())
                self._put("Event", ns, event["metadata"]["name"], event)
                return
        name = f"{meta['name']}.{_secrets.token_hex(8)}"
        involved = {"kind": "Pod", "namespace": meta["namespace"], "name": meta["name"], "uid": meta["uid"],
                    "apiVersion": "v1", "resourceVersion": meta["resourceVersion"]}
        if container:
            involved["fieldPath"] = f"spec.containers{{{container}}}"
        now = _rfc3339(_now())
        self._put("Event", meta["namespace"], name, {
            "metadata": {"name": name, "namespace": meta["namespace"]}, "involvedObject": involved,
            "reason": reason, "message": message, "source": {"component": component, "host": self.node.name},
            "firstTimestamp": now, "lastTimestamp": now, "count": 1, "type": kind, "eventTime": None,
            "reportingComponent": component, "reportingInstance": self.node.name})

    # --- the API
    def handle(self, method: str, path: str, query: dict[str, str], body: bytes, content_type: str,
               ) -> tuple[int, dict | None, Callable[[], Iterator[bytes]] | None, str]:
        """Answer one request: (status, JSON body | None, stream | None, stream's content type)."""
        if path in ("/version", "/version/"):
            major, minor = K8S_VERSION.split(".")
            return 200, {"major": major, "minor": minor, "gitVersion": f"v{K8S_VERSION}.0-fake",
                         "platform": "linux/amd64"}, None, ""
        if path in ("/healthz", "/readyz", "/livez"):
            return 200, None, None, ""
        if path == "/api/v1/namespaces" and method == "GET":
            with self._lock:
                return 200, self._list("Namespace", "", query), None, ""
        m = re.fullmatch(r"/api/v1/namespaces/([^/]+)(?:/([a-z]+)(?:/([^/]+)(?:/([a-z]+))?)?)?", path)
        if not m:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        namespace, resource, name, sub = m.groups()
        if resource is None:
            if method != "GET":
                raise _method_not_allowed()
            with self._lock:
                return 200, _strip(copy.deepcopy(self._get("Namespace", "", namespace)), keep_kind=True), None, ""
        kind = _RESOURCES.get(resource)
        if kind is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if sub is not None:
            if kind != "Pod" or sub not in ("log", "status", "exec", "attach", "portforward"):
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            if sub in ("exec", "attach", "portforward"):
                raise ApiError(400, "BadRequest", "Upgrade request required")
            if method != "GET":
                raise _method_not_allowed()
            if sub == "log":
                return self._log(namespace, name, query)
            with self._lock:
                return 200, copy.deepcopy(self._get("Pod", namespace, name)), None, ""
        if name is None:
            if method == "GET":
                if _true(query.get("watch")):
                    return 200, None, self._watch(kind, namespace, query), "application/json"
                with self._lock:
                    return 200, self._list(kind, namespace, query), None, ""
            if method == "POST" and kind in _CREATABLE:
                return 201, self._create(kind, namespace, _json_body(body), query), None, ""
            raise _method_not_allowed()
        if method == "GET":
            with self._lock:
                obj = copy.deepcopy(self._get(kind, namespace, name))
            return 200, obj, None, ""
        if method == "DELETE" and kind in ("Pod", "Secret", "ConfigMap"):
            options = _json_body(body) if body.strip() else {}
            grace = query.get("gracePeriodSeconds", options.get("gracePeriodSeconds"))
            return 200, self._delete(kind, namespace, name, None if grace is None else int(grace)), None, ""
        if method == "PATCH" and kind == "Pod":
            return 200, self._patch(namespace, name, body, content_type), None, ""
        raise _method_not_allowed()

    def _list(self, kind: str, namespace: str, query: Mapping[str, str]) -> dict:
        labels = label_selector(query.get("labelSelector"))
        fields = field_selector(kind, query.get("fieldSelector"))
        items = [_strip(copy.deepcopy(o)) for (k, ns, _), o in sorted(self._objects.items())
                 if k == kind and ns == namespace and labels(o["metadata"].get("labels") or {}) and fields(o)]
        return {"kind": f"{kind}List", "apiVersion": "v1", "metadata": {"resourceVersion": str(self._rv)},
                "items": items}

    def _watch(self, kind: str, namespace: str, query: Mapping[str, str]) -> Callable[[], Iterator[bytes]]:
        """``?watch=true``: JSON lines ``{"type": …, "object": …}`` until ``timeoutSeconds`` (or the server stops)."""
        labels = label_selector(query.get("labelSelector"))
        fields = field_selector(kind, query.get("fieldSelector"))
        timeout = float(query.get("timeoutSeconds") or 1800)
        since = query.get("resourceVersion")

        def matches(obj: dict) -> bool:
            ns = obj["metadata"].get("namespace", "")
            return obj.get("kind") == kind and ns == namespace and labels(obj["metadata"].get("labels") or {}) \
                and fields(obj)

        def stream() -> Iterator[bytes]:
            deadline = time.monotonic() + timeout
            with self._lock:
                if since in (None, "", "0"):  # "get state and start at most recent": synthetic ADDED events
                    pending = [("ADDED", copy.deepcopy(o)) for o in self._objects.values() if matches(o)]
                    position = len(self._history)
                else:
                    position = next((i for i, (rv, _, _) in enumerate(self._history) if rv > int(since)),
                                    len(self._history))
                    pending = []
            while True:
                for kind_of_event, obj in pending:
                    yield json.dumps({"type": kind_of_event, "object": obj}).encode() + b"\n"
                with self._changed:
                    while position >= len(self._history) and not self._stopping:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            return
                        self._changed.wait(min(left, 0.5))
                    if self._stopping:
                        return
                    pending = [(t, copy.deepcopy(o)) for _, t, o in self._history[position:] if matches(o)]
                    position = len(self._history)

        return stream

    def _create(self, kind: str, namespace: str, body: dict, query: Mapping[str, str]) -> dict:
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the object provided is unrecognized (must be of type object)")
        if body.get("kind", kind) != kind or body.get("apiVersion", "v1") != "v1":
            raise ApiError(400, "BadRequest", f"the API version in the data ({body.get('apiVersion')}) does not match "
                                              f"the expected API version (v1)")
        meta = body.get("metadata") or {}
        if meta.get("namespace") not in (None, "", namespace):
            raise ApiError(400, "BadRequest", "the namespace of the provided object does not match the namespace "
                                              "sent on the request")
        with self._changed:
            self._require_namespace(namespace)
            name = meta.get("name")
            if not name and meta.get("generateName"):
                name = meta["generateName"] + "".join(_secrets.choice(_GENERATED) for _ in range(5))
            if kind == "Pod":
                return self._create_pod(namespace, name, body)
            if not name:
                raise _invalid(kind, "", [("metadata.name", "Required value: name or generateName is required")])
            if (kind, namespace, name) in self._objects:
                raise ApiError(409, "AlreadyExists", f'{kind.lower()}s "{name}" already exists')
            obj = copy.deepcopy(body)
            obj.setdefault("metadata", {}).update(name=name, namespace=namespace)
            if kind == "Secret" and "stringData" in obj:
                data = obj.setdefault("data", {})
                data.update({k: base64.b64encode(v.encode()).decode() for k, v in obj.pop("stringData").items()})
            return copy.deepcopy(self._put(kind, namespace, name, obj))

    def _create_pod(self, namespace: str, name: str | None, body: dict) -> dict:
        import kubernetes_validate

        shown = name or ""
        if body.get("spec", {}).get("initContainers") or body.get("spec", {}).get("ephemeralContainers"):
            raise ApiError(501, "NotImplemented", "FakeKubernetes does not run init or ephemeral containers")
        try:
            kubernetes_validate.validate({"apiVersion": "v1", "kind": "Pod", **body}, desired_version=K8S_VERSION,
                                         strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(f"[{p}]" if isinstance(p, int) else p for p in exc.path).replace(".[", "[") or "<root>"
            raise _invalid("Pod", shown, [(where, exc.message)]) from None
        causes = _pod_rules(name, body)
        if causes:
            raise _invalid("Pod", shown, causes)
        account = body["spec"].get("serviceAccountName") or body["spec"].get("serviceAccount") or "default"
        if ("ServiceAccount", namespace, account) not in self._objects:
            raise ApiError(403, "Forbidden", f'pods "{name}" is forbidden: error looking up service account '
                                             f'{namespace}/{account}: serviceaccount "{account}" not found')
        if ("Pod", namespace, name) in self._objects:
            raise ApiError(409, "AlreadyExists", f'pods "{name}" already exists',
                           {"name": name, "kind": "pods"})
        pod = _with_defaults(copy.deepcopy(body), name, namespace)
        self._put("Pod", namespace, name, pod)
        record = PodRecord(namespace, name, copy.deepcopy(body), phases=["Pending"])
        self._records[(namespace, name)] = record
        self._all_records.append(record)
        thread = threading.Thread(target=self._run_pod, args=(namespace, name, pod["metadata"]["uid"]),
                                  name=f"pod-{name}", daemon=True)
        self._threads.append(thread)
        thread.start()
        return copy.deepcopy(pod)

    def _patch(self, namespace: str, name: str, body: bytes, content_type: str) -> dict:
        kind = content_type.split(";")[0].strip()
        if kind not in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            raise ApiError(415, "UnsupportedMediaType",
                           f"the body of the request was in an unknown format - accepted media types include: "
                           f"application/json-patch+json, application/merge-patch+json, "
                           f"application/strategic-merge-patch+json, application/apply-patch+yaml (got {kind!r}; "
                           f"FakeKubernetes applies merge patches only)")
        patch = _json_body(body)
        with self._changed:
            pod = self._get("Pod", namespace, name)
            patched = _merge_patch(pod, {k: v for k, v in patch.items() if k != "status"})
            if patched.get("spec") != pod.get("spec"):
                raise _invalid("Pod", name, [("spec", "Forbidden: pod updates may not change fields other than "
                                                      "`spec.containers[*].image`, `spec.activeDeadlineSeconds`, "
                                                      "`spec.tolerations` (FakeKubernetes: metadata only)")])
            causes = _label_rules(patched["metadata"].get("labels") or {}, "metadata.labels")
            if causes:
                raise _invalid("Pod", name, causes)
            pod["metadata"] = patched["metadata"]
            return copy.deepcopy(self._put("Pod", namespace, name, pod))

    def _delete(self, kind: str, namespace: str, name: str, grace: int | None) -> dict:
        with self._changed:
            obj = self._get(kind, namespace, name)
            if kind != "Pod":
                return _strip(copy.deepcopy(self._remove(kind, namespace, name)), keep_kind=True)
            record = self._records.get((namespace, name))
            running = [(key, p) for key, p in self._procs.items() if key[:2] == (namespace, name)]
            if grace is None:
                grace = obj["spec"].get("terminationGracePeriodSeconds", DEFAULT_GRACE_S)
            if not running:
                if record is not None:
                    record.deleted = True
                    record.final = copy.deepcopy(obj)
                return copy.deepcopy(self._remove("Pod", namespace, name))
            meta = obj["metadata"]
            if "deletionTimestamp" not in meta:
                meta["deletionTimestamp"] = _rfc3339(_now() + timedelta(seconds=grace))
                meta["deletionGracePeriodSeconds"] = grace
                for (_, _, container), proc in running:
                    self._event(obj, "Normal", "Killing", f"Stopping container {container}", container=container)
                    _kill_group(proc, signal.SIGTERM if grace > 0 else signal.SIGKILL)
                if grace > 0:
                    timer = threading.Timer(grace, lambda: [_kill_group(p, signal.SIGKILL) for _, p in running])
                    timer.daemon = True
                    timer.start()
                self._put("Pod", namespace, name, obj)
            return copy.deepcopy(obj)

    # --- logs
    def _log(self, namespace: str, name: str, query: Mapping[str, str],
             ) -> tuple[int, dict | None, Callable[[], Iterator[bytes]] | None, str]:
        with self._lock:
            pod = self._get("Pod", namespace, name)
            containers = [c["name"] for c in pod["spec"]["containers"]]
            container = query.get("container")
            if not container:
                if len(containers) > 1:
                    raise ApiError(400, "BadRequest", f"a container name must be specified for pod {name}, choose one "
                                                      f"of: [{' '.join(containers)}]")
                container = containers[0]
            if container not in containers:
                raise ApiError(400, "BadRequest", f"container {container} is not valid for pod {name}")
            if _true(query.get("previous")):
                raise ApiError(400, "BadRequest", f'previous terminated container "{container}" in pod "{name}" '
                                                  f"not found")
            status = _container_status(pod, container)
            state = (status or {}).get("state", {})
            if "waiting" in state or not status:
                reason = state.get("waiting", {}).get("reason", "ContainerCreating")
                why = "trying and failing to pull image" if reason in ("ErrImagePull", "ImagePullBackOff") else reason
                raise ApiError(400, "BadRequest", f'container "{container}" in pod "{name}" is waiting to start: {why}')
            record = self._records[(namespace, name)]
            uid = pod["metadata"]["uid"]
        follow, stamps = _true(query.get("follow")), _true(query.get("timestamps"))
        since: datetime | None = None
        if query.get("sinceSeconds"):
            since = _now() - timedelta(seconds=int(query["sinceSeconds"]))
        elif query.get("sinceTime"):
            since = _parse_time(query["sinceTime"])
        tail = int(query["tailLines"]) if query.get("tailLines") else None
        limit = int(query["limitBytes"]) if query.get("limitBytes") else None

        def render(entries: list[tuple[datetime, bytes]]) -> list[bytes]:
            return [(_rfc3339_nano(t).encode() + b" " if stamps else b"") + line
                    for t, line in entries if since is None or t >= since]

        def stream() -> Iterator[bytes]:
            sent = 0
            with self._lock:
                entries = list(record.logs.get(container, []))
            lines = render(entries)
            if tail is not None:
                lines = lines[-tail:] if tail else []
            position = len(entries)
            budget = limit
            while True:
                for line in lines:
                    if budget is not None:
                        line = line[:budget]
                        budget -= len(line)
                    if line:
                        sent += len(line)
                        yield line
                    if budget is not None and budget <= 0:
                        return
                if not follow:
                    return
                with self._changed:
                    while True:
                        current = self._objects.get(("Pod", namespace, name))
                        more = len(record.logs.get(container, [])) > position
                        done = (current is None or current["metadata"]["uid"] != uid
                                or container in record.exit_codes)
                        if more or done or self._stopping:
                            break
                        self._changed.wait(0.5)
                    entries = list(record.logs.get(container, []))
                    lines = render(entries[position:])
                    position = len(entries)
                    if not lines and (done or self._stopping):
                        return

        return 200, None, stream, "text/plain"

    # --- a pod's life (one thread per pod)
    def _alive(self, namespace: str, name: str, uid: str) -> dict | None:
        pod = self._objects.get(("Pod", namespace, name))
        return pod if pod is not None and pod["metadata"]["uid"] == uid and not self._stopping \
            and "deletionTimestamp" not in pod["metadata"] else None

    def _pause(self, seconds: float, namespace: str, name: str, uid: str) -> dict | None:
        """Wait ``seconds`` (woken by changes); the pod if it still exists and is not being deleted."""
        deadline = time.monotonic() + seconds
        with self._changed:
            while (left := deadline - time.monotonic()) > 0 and self._alive(namespace, name, uid):
                self._changed.wait(min(left, 1.0))
            return self._alive(namespace, name, uid)

    def _set_status(self, namespace: str, name: str, uid: str, change: Callable[[dict], None]) -> dict | None:
        with self._changed:
            pod = self._objects.get(("Pod", namespace, name))
            if pod is None or pod["metadata"]["uid"] != uid:
                return None
            change(pod["status"])
            record = self._records[(namespace, name)]
            if record.phases[-1] != pod["status"]["phase"]:
                record.phases.append(pod["status"]["phase"])
            return self._put("Pod", namespace, name, pod)

    def _run_pod(self, namespace: str, name: str, uid: str) -> None:
        try:
            self._pod_lifecycle(namespace, name, uid)
        finally:
            with self._changed:  # a pod being deleted goes once its processes have ended
                pod = self._objects.get(("Pod", namespace, name))
                if pod is not None and pod["metadata"]["uid"] == uid and "deletionTimestamp" in pod["metadata"]:
                    record = self._records[(namespace, name)]
                    record.deleted, record.final = True, copy.deepcopy(pod)
                    self._remove("Pod", namespace, name)

    def _pod_lifecycle(self, namespace: str, name: str, uid: str) -> None:
        if not self._pause(self.schedule_delay, namespace, name, uid):
            return
        # scheduling
        unschedulable_said = False
        while True:
            with self._changed:
                pod = self._alive(namespace, name, uid)
                if pod is None:
                    return
                if self._scheduling_paused:
                    self._changed.wait(0.2)
                    continue
                why = self._unfit(pod)
                if why is None:
                    break
                if not unschedulable_said:
                    unschedulable_said = True
                    message = f"0/1 nodes are available: 1 {why}. preemption: 0/1 nodes are available: " \
                              f"1 No preemption victims found for incoming pod."
                    self._set_status(namespace, name, uid, lambda s, m=message: s.update(conditions=[
                        _condition("PodScheduled", False, "Unschedulable", m)]))
                    self._event(pod, "Warning", "FailedScheduling", message, component="default-scheduler")
            if not self._pause(1.0, namespace, name, uid):
                return
        with self._changed:
            pod = self._objects[("Pod", namespace, name)]
            pod["spec"]["nodeName"] = self.node.name
            containers = pod["spec"]["containers"]
            self._set_status(namespace, name, uid, lambda s: s.update(
                hostIP="127.0.0.1", hostIPs=[{"ip": "127.0.0.1"}], startTime=_rfc3339(_now()),
                conditions=_pending_conditions(containers),
                containerStatuses=[_waiting(c, "ContainerCreating") for c in containers]))
            self._event(pod, "Normal", "Scheduled", f"Successfully assigned {namespace}/{name} to {self.node.name}",
                        component="default-scheduler")
        # images
        images: dict[str, Image] = {}
        for container in containers:
            image = self._pull(namespace, name, uid, container)
            if image is None:
                return
            images[container["name"]] = image
        # create and start every container
        started: list[tuple[str, subprocess.Popen]] = []
        for container in containers:
            launched = self._launch(namespace, name, uid, container, images[container["name"]])
            if launched is None:
                for _, proc in started:
                    _kill_group(proc, signal.SIGKILL)
                return
            started.append((container["name"], launched))
        for container_name, proc in started:
            code = proc.wait()
            with self._changed:
                self._procs.pop((namespace, name, container_name), None)
            self._terminated(namespace, name, uid, container_name, code)

    def _unfit(self, pod: dict) -> str | None:
        """Why the node cannot take ``pod`` (the scheduler's words), or None."""
        selector = pod["spec"].get("nodeSelector") or {}
        if any(self.node.labels.get(k) != v for k, v in selector.items()):
            return "node(s) didn't match Pod's node affinity/selector"
        used: dict[str, Decimal] = {}
        for (k, _, _), other in self._objects.items():
            if k == "Pod" and other is not pod and other["spec"].get("nodeName") == self.node.name \
                    and other["status"].get("phase") in ("Pending", "Running"):
                for resource, amount in _requests(other).items():
                    used[resource] = used.get(resource, Decimal(0)) + amount
        for resource, amount in _requests(pod).items():
            available = parse_quantity(self.node.allocatable.get(resource, "0")) - used.get(resource, Decimal(0))
            if amount > available:
                return f"Insufficient {resource}"
        return None

    def _pull(self, namespace: str, name: str, uid: str, container: dict) -> Image | None:
        reference = normalize_image(container["image"])
        with self._changed:
            pod = self._alive(namespace, name, uid)
            if pod is None:
                return None
            image = self.images.get(reference)
            failure = self._pull_errors.get(reference)
            if container.get("imagePullPolicy") == "Never" and (image is None or failure):
                message = f'Container image "{container["image"]}" is not present with pull policy of Never'
                self._set_status(namespace, name, uid, lambda s: _set_container(
                    s, _waiting(container, "ErrImageNeverPull", message)))
                self._event(pod, "Warning", "ErrImageNeverPull", message, container=container["name"])
                return None
            self._event(pod, "Normal", "Pulling", f'Pulling image "{container["image"]}"', container=container["name"])
        if not self._pause(self.pull_delay, namespace, name, uid):
            return None
        if image is not None and failure is None:
            with self._changed:
                pod = self._alive(namespace, name, uid)
                if pod is None:
                    return None
                ms = int(self.pull_delay * 1000)
                self._event(pod, "Normal", "Pulled", f'Successfully pulled image "{container["image"]}" in {ms}ms '
                            f"({ms}ms including waiting). Image size: 0 bytes.", container=container["name"])
            return image
        error = failure or (f'rpc error: code = NotFound desc = failed to pull and unpack image "{reference}": failed '
                            f'to resolve reference "{reference}": {reference}: not found')
        with self._changed:
            pod = self._alive(namespace, name, uid)
            if pod is None:
                return None
            self._event(pod, "Warning", "Failed", f'Failed to pull image "{container["image"]}": {error}',
                        container=container["name"])
            self._event(pod, "Warning", "Failed", "Error: ErrImagePull", container=container["name"])
            self._set_status(namespace, name, uid, lambda s: _set_container(s, _waiting(container, "ErrImagePull", error)))
        if not self._pause(self.backoff_delay, namespace, name, uid):
            return None
        with self._changed:
            pod = self._alive(namespace, name, uid)
            if pod is None:
                return None
            message = f'Back-off pulling image "{container["image"]}": ErrImagePull: {error}'
            self._event(pod, "Normal", "BackOff", f'Back-off pulling image "{container["image"]}"',
                        container=container["name"])
            self._event(pod, "Warning", "Failed", "Error: ImagePullBackOff", container=container["name"])
            self._set_status(namespace, name, uid, lambda s: _set_container(
                s, _waiting(container, "ImagePullBackOff", message)))
        self._pause(float("inf"), namespace, name, uid)  # the kubelet keeps backing off until the pod is deleted
        return None

    def _launch(self, namespace: str, name: str, uid: str, container: dict, image: Image) -> subprocess.Popen | None:
        while True:
            with self._changed:
                pod = self._alive(namespace, name, uid)
                if pod is None:
                    return None
                try:
                    env = self._environment(pod, container, image)
                    error = None
                except _ConfigError as exc:
                    error = str(exc)
                if error is None:
                    break
                self._set_status(namespace, name, uid, lambda s, e=error: _set_container(
                    s, _waiting(container, "CreateContainerConfigError", e)))
                self._event(pod, "Warning", "Failed", f"Error: {error}", container=container["name"])
            if not self._pause(1.0, namespace, name, uid):  # the kubelet retries: the Secret may appear
                return None
        command = [_expand(a, env) for a in container.get("command") or []] or list(image.entrypoint)
        args = [_expand(a, env) for a in container.get("args") or []] or (
            list(image.cmd) if not container.get("command") else [])
        argv = [image.host_path(a) for a in command + args]
        cwd = image.host_path(container.get("workingDir") or image.workdir or image.mount)
        record = self._records[(namespace, name)]
        record.argv[container["name"]] = argv
        record.env[container["name"]] = env
        record.logs.setdefault(container["name"], [])
        try:
            proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:  # what runc says when the executable is not there
            message = (f"failed to create containerd task: failed to create shim task: OCI runtime create failed: "
                       f"runc create failed: unable to start container process: exec: {argv[0] if argv else ''!r}: "
                       f"{exc.strerror}")
            self._terminated(namespace, name, uid, container["name"], 128, reason="StartError", message=message)
            return None
        with self._changed:
            self._procs[(namespace, name, container["name"])] = proc
            pod = self._objects.get(("Pod", namespace, name))
            if pod is not None:
                self._event(pod, "Normal", "Created", f"Created container: {container['name']}",
                            container=container["name"])
                self._event(pod, "Normal", "Started", f"Started container {container['name']}",
                            container=container["name"])
            started = _rfc3339(_now())
            container_id = f"containerd://{uuid.uuid4().hex}{uuid.uuid4().hex}"

            def running(status: dict) -> None:
                _set_container(status, {**_status_base(container), "containerID": container_id, "ready": True,
                                        "started": True, "state": {"running": {"startedAt": started}}})
                if all("running" in c["state"] for c in status["containerStatuses"]):
                    status.update(phase="Running", podIP="127.0.0.1", podIPs=[{"ip": "127.0.0.1"}],
                                  conditions=_running_conditions(status["conditions"]))

            self._set_status(namespace, name, uid, running)
        reader = threading.Thread(target=self._read_output, args=(proc, record, container["name"]),
                                  name=f"log-{name}", daemon=True)
        self._threads.append(reader)
        reader.start()
        return proc

    def _environment(self, pod: dict, container: dict, image: Image) -> dict[str, str]:
        """The container process's environment: the image's ENV, then ``envFrom``, then ``env`` (Kubernetes' order)."""
        env = {k: image.host_path(v) for k, v in image.env.items()}
        namespace = pod["metadata"]["namespace"]
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            for ref_kind, kind in (("secretRef", "Secret"), ("configMapRef", "ConfigMap")):
                if ref := source.get(ref_kind):
                    values = self._data(kind, namespace, ref["name"], optional=ref.get("optional", False))
                    env.update({prefix + k: image.host_path(v) for k, v in (values or {}).items()})
        for var in container.get("env") or []:
            if "valueFrom" not in var:
                env[var["name"]] = image.host_path(_expand(var.get("value", ""), env))
                continue
            source = var["valueFrom"]
            if ref := source.get("secretKeyRef") or source.get("configMapKeyRef"):
                kind = "Secret" if "secretKeyRef" in source else "ConfigMap"
                values = self._data(kind, namespace, ref["name"], optional=ref.get("optional", False))
                if values is None:
                    continue
                if ref["key"] not in values:
                    if ref.get("optional"):
                        continue
                    raise _ConfigError(f"couldn't find key {ref['key']} in {kind} {namespace}/{ref['name']}")
                env[var["name"]] = values[ref["key"]]
            elif ref := source.get("fieldRef"):
                env[var["name"]] = _field_value(pod, ref["fieldPath"])
            else:
                raise _ConfigError(f"FakeKubernetes does not resolve {sorted(source)} (env {var['name']})")
        return env

    def _data(self, kind: str, namespace: str, name: str, *, optional: bool) -> dict[str, str] | None:
        obj = self._objects.get((kind, namespace, name))
        if obj is None:
            if optional:
                return None
            raise _ConfigError(f'{kind.lower()} "{name}" not found')
        if kind == "Secret":
            return {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
        return dict(obj.get("data") or {})

    def _read_output(self, proc: subprocess.Popen, record: PodRecord, container: str) -> None:
        """The container's stdout and stderr, as the kubelet keeps them: one timestamped entry per line."""
        assert proc.stdout is not None
        for line in iter(proc.stdout.readline, b""):
            with self._changed:
                record.logs[container].append((_now(), line))
                self._changed.notify_all()
        proc.stdout.close()

    def _terminated(self, namespace: str, name: str, uid: str, container_name: str, code: int, *,
                    reason: str | None = None, message: str | None = None) -> None:
        """Record how a container ended; the pod ends when all its containers have."""
        exit_code = code if code >= 0 else 128 - code  # killed by signal N: 128 + N, as the runtime reports
        record = self._records[(namespace, name)]
        for thread in self._threads:  # the whole log before the status says so
            if thread.name == f"log-{name}" and thread is not threading.current_thread():
                thread.join(timeout=5)
        with self._changed:
            record.exit_codes[container_name] = exit_code
            pod = self._objects.get(("Pod", namespace, name))
            if pod is None or pod["metadata"]["uid"] != uid:
                return
            container = next(c for c in pod["spec"]["containers"] if c["name"] == container_name)
            if message is None and exit_code != 0 and container.get("terminationMessagePolicy") == "FallbackToLogsOnError":
                tail = b"".join(line for _, line in record.logs.get(container_name, [])[-TERMINATION_LOG_LINES:])
                message = tail[-TERMINATION_LOG_BYTES:].decode(errors="replace") or None
            previous = _container_status(pod, container_name) or {}
            terminated = {"exitCode": exit_code, "reason": reason or ("Completed" if exit_code == 0 else "Error"),
                          "startedAt": previous.get("state", {}).get("running", {}).get("startedAt") or _rfc3339(_now()),
                          "finishedAt": _rfc3339(_now())}
            if message:
                terminated["message"] = message
            if previous.get("containerID"):
                terminated["containerID"] = previous["containerID"]

            def ended(status: dict) -> None:
                _set_container(status, {**_status_base(container), **({"containerID": previous["containerID"]}
                                        if previous.get("containerID") else {}),
                                        "ready": False, "started": False, "state": {"terminated": terminated}})
                states = [c["state"] for c in status["containerStatuses"]]
                if all("terminated" in s for s in states):
                    failed = any(s["terminated"]["exitCode"] != 0 for s in states)
                    status["phase"] = "Failed" if failed else "Succeeded"
                    status["conditions"] = _completed_conditions(status["conditions"])

            self._set_status(namespace, name, uid, ended)


# --- pod rules and status pieces ----------------------------------------------------------------

def _true(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1")


def _json_body(body: bytes) -> Any:
    try:
        return json.loads(body or b"null")
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, "BadRequest", f"the body of the request is not valid JSON: {exc}") from None


def _strip(obj: dict | None, *, keep_kind: bool = False) -> dict | None:
    """List items carry no kind / apiVersion, as the API server sends them."""
    if obj is not None and not keep_kind:
        obj.pop("kind", None)
        obj.pop("apiVersion", None)
    return obj


def _label_rules(labels: Mapping[str, Any], where: str) -> list[tuple[str, str]]:
    causes = []
    for key, value in labels.items():
        prefix, _, label = key.rpartition("/")
        if (prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix))) or len(label) > 63 \
                or not _LABEL_NAME.match(label):
            causes.append((where, f"Invalid value: {key!r}: name part must consist of alphanumeric characters, '-', "
                                  f"'_' or '.', and must start and end with an alphanumeric character"))
        if not isinstance(value, str) or len(value) > 63 or (value and not _LABEL_NAME.match(value)):
            causes.append((where, f"Invalid value: {value!r}: a valid label must be an empty string or consist of "
                                  f"alphanumeric characters, '-', '_' or '.', and must start and end with an "
                                  f"alphanumeric character (at most 63 characters)"))
    return causes


def _pod_rules(name: str | None, body: dict) -> list[tuple[str, str]]:
    """Some of the API server's validation beyond the schema, in its words."""
    causes: list[tuple[str, str]] = []
    meta, spec = body.get("metadata") or {}, body["spec"]
    if not name:
        causes.append(("metadata.name", "Required value: name or generateName is required"))
    elif len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        causes.append(("metadata.name", f"Invalid value: {name!r}: a lowercase RFC 1123 subdomain must consist of "
                                        f"lower case alphanumeric characters, '-' or '.'"))
    causes += _label_rules(meta.get("labels") or {}, "metadata.labels")
    if spec.get("restartPolicy", "Always") not in ("Always", "OnFailure", "Never"):
        causes.append(("spec.restartPolicy", f"Unsupported value: {spec['restartPolicy']!r}"))
    seen: set[str] = set()
    for i, container in enumerate(spec.get("containers") or []):
        where = f"spec.containers[{i}]"
        cname = container.get("name", "")
        if not _DNS_LABEL_RE.match(cname) or len(cname) > 63:
            causes.append((f"{where}.name", f"Invalid value: {cname!r}: a lowercase RFC 1123 label"))
        if cname in seen:
            causes.append((f"{where}.name", f"Duplicate value: {cname!r}"))
        seen.add(cname)
        if not container.get("image"):
            causes.append((f"{where}.image", "Required value"))
        if container.get("terminationMessagePolicy", "File") not in ("File", "FallbackToLogsOnError"):
            causes.append((f"{where}.terminationMessagePolicy",
                           f"Unsupported value: {container['terminationMessagePolicy']!r}"))
        for j, var in enumerate(container.get("env") or []):
            if not _ENV_NAME.match(var.get("name", "")):
                causes.append((f"{where}.env[{j}].name", f"Invalid value: {var.get('name')!r}: a valid environment "
                                                         f"variable name must consist of alphabetic characters, "
                                                         f"digits, '_', '-', or '.', and must not start with a digit"))
            if "value" in var and "valueFrom" in var:
                causes.append((f"{where}.env[{j}].valueFrom",
                               "Invalid value: \"\": may not be specified when `value` is not empty"))
        resources = container.get("resources") or {}
        for kind in ("requests", "limits"):
            for resource, amount in (resources.get(kind) or {}).items():
                try:
                    parse_quantity(amount)
                except ValueError as exc:
                    causes.append((f"{where}.resources.{kind}[{resource}]", f"Invalid value: {amount!r}: {exc}"))
        for resource, amount in (resources.get("requests") or {}).items():
            limit = (resources.get("limits") or {}).get(resource)
            try:
                too_much = limit is not None and parse_quantity(amount) > parse_quantity(limit)
            except ValueError:
                continue
            if too_much:
                causes.append((f"{where}.resources.requests", f"Invalid value: {amount!r}: must be less than or "
                                                              f"equal to {resource} limit of {limit}"))
    return causes


def _requests(pod: dict) -> dict[str, Decimal]:
    """What a pod asks of its node (its containers' requests, after defaulting)."""
    total: dict[str, Decimal] = {"pods": Decimal(1)}
    for container in pod["spec"]["containers"]:
        for resource, amount in ((container.get("resources") or {}).get("requests") or {}).items():
            total[resource] = total.get(resource, Decimal(0)) + parse_quantity(amount)
    return total


def _with_defaults(pod: dict, name: str, namespace: str) -> dict:
    """The pod as stored: what API-server defaulting adds, and a fresh Pending status."""
    pod.setdefault("apiVersion", "v1")
    pod.setdefault("kind", "Pod")
    pod["metadata"].update(name=name, namespace=namespace)
    spec = pod["spec"]
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", DEFAULT_GRACE_S)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    spec.setdefault("serviceAccountName", spec.get("serviceAccount") or "default")
    spec.setdefault("serviceAccount", spec["serviceAccountName"])
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("priority", 0)
    guaranteed, best_effort = True, True
    for container in spec["containers"]:
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        tag = normalize_image(container["image"]).rsplit(":", 1)[-1]
        container.setdefault("imagePullPolicy", "Always" if tag == "latest" else "IfNotPresent")
        resources = container.setdefault("resources", {})
        limits = resources.get("limits") or {}
        if limits:  # a limit without a request: the request is the limit
            resources["requests"] = {**limits, **(resources.get("requests") or {})}
        requests = resources.get("requests") or {}
        best_effort = best_effort and not requests and not limits
        guaranteed = guaranteed and all(
            r in limits and parse_quantity(requests.get(r, limits[r])) == parse_quantity(limits[r])
            for r in ("cpu", "memory"))
    qos = "BestEffort" if best_effort else "Guaranteed" if guaranteed else "Burstable"
    pod["status"] = {"phase": "Pending", "qosClass": qos}
    return pod


def _condition(kind: str, ok: bool, reason: str | None = None, message: str | None = None) -> dict:
    condition = {"type": kind, "status": "True" if ok else "False", "lastProbeTime": None,
                 "lastTransitionTime": _rfc3339(_now())}
    if reason:
        condition["reason"] = reason
    if message:
        condition["message"] = message
    return condition


def _pending_conditions(containers: list[dict]) -> list[dict]:
    names = " ".join(c["name"] for c in containers)
    unready = f"containers with unready status: [{names}]"
    return [_condition("PodReadyToStartContainers", True), _condition("Initialized", True),
            _condition("Ready", False, "ContainersNotReady", unready),
            _condition("ContainersReady", False, "ContainersNotReady", unready), _condition("PodScheduled", True)]


def _running_conditions(conditions: list[dict]) -> list[dict]:
    return [_condition(c["type"], True) if c["type"] in ("Ready", "ContainersReady") else c for c in conditions]


def _completed_conditions(conditions: list[dict]) -> list[dict]:
    return [_condition(c["type"], False, "PodCompleted") if c["type"] in ("Ready", "ContainersReady")
            else _condition(c["type"], False) if c["type"] == "PodReadyToStartContainers" else c for c in conditions]


def _status_base(container: dict) -> dict:
    return {"name": container["name"], "image": container["image"],
            "imageID": f"{normalize_image(container['image'])}@sha256:{'0' * 64}", "restartCount": 0,
            "lastState": {}}


def _waiting(container: dict, reason: str, message: str | None = None) -> dict:
    waiting = {"reason": reason, **({"message": message} if message else {})}
    return {**_status_base(container), "imageID": "", "ready": False, "started": False, "state": {"waiting": waiting}}


def _set_container(status: dict, entry: dict) -> None:
    statuses = status.setdefault("containerStatuses", [])
    for i, existing in enumerate(statuses):
        if existing["name"] == entry["name"]:
            statuses[i] = entry
            return
    statuses.append(entry)


def _container_status(pod: dict, container: str) -> dict | None:
    return next((c for c in pod["status"].get("containerStatuses") or [] if c["name"] == container), None)


def _field_value(pod: dict, path: str) -> str:
    if m := re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path):
        return (pod["metadata"].get(m.group(1)) or {}).get(m.group(2), "")
    known = {"metadata.name": pod["metadata"]["name"], "metadata.namespace": pod["metadata"]["namespace"],
             "metadata.uid": pod["metadata"]["uid"], "spec.nodeName": pod["spec"].get("nodeName", ""),
             "spec.serviceAccountName": pod["spec"].get("serviceAccountName", ""),
             "status.hostIP": "127.0.0.1", "status.podIP": "127.0.0.1"}
    if path not in known:
        raise _ConfigError(f"unsupported fieldRef {path}")
    return known[path]


def _kill_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# --- HTTP -----------------------------------------------------------------------------------------

def _handler_class_for(fake: FakeKubernetes) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "FakeKubernetes/1"
        protocol_version = "HTTP/1.1"

        def _handle(self) -> None:
            url = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
            length = int(self.headers.get("Content-Length") or 0)
            status = 500
            try:
                if length > MAX_BODY:
                    self.close_connection = True
                    raise ApiError(413, "RequestEntityTooLarge", "the request is too large")
                body = self.rfile.read(length) if length else b""
                if self.headers.get("Authorization") != f"Bearer {fake.token}" and url.path not in (
                        "/healthz", "/readyz", "/livez"):
                    raise ApiError(401, "Unauthorized", "Unauthorized")
                status, payload, stream, stream_type = fake.handle(
                    self.command, url.path, query, body, self.headers.get("Content-Type", ""))
                if stream is not None:
                    self._stream(status, stream, stream_type)
                else:
                    self._send(status, payload)
            except ApiError as exc:
                status = exc.code
                self._send(exc.code, exc.status())
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
            finally:
                with fake._lock:
                    fake.requests.append(Request(self.command, url.path, query, status,
                                                 self.headers.get("User-Agent", "")))

        def _send(self, status: int, payload: dict | None) -> None:
            data = json.dumps(payload).encode() if payload is not None else b"ok"
            self.send_response(status)
            self.send_header("Content-Type", "application/json" if payload is not None else "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _stream(self, status: int, stream: Callable[[], Iterator[bytes]], content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for piece in stream():
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass

    return Handler


