"""``make up-prod``: the production stack of ``docker-compose.yaml`` on loopback, without containers.

Every part runs as its own process from the project's virtualenvs, as in production:

- Airflow 3 with its metadata on PostgreSQL and the ``CeleryExecutor`` on Redis: ``api-server``,
  ``scheduler``, ``dag-processor``, ``triggerer`` and one ``celery worker``;
- an MLflow tracking server on PostgreSQL with its artifacts in S3 (``--artifacts-destination s3://…``),
  S3 being moto's standalone server on loopback (the compose file uses MinIO; both speak S3);
- Triton (``.venv-triton``, ``make triton``) on the model repository the deployment DAG exports into.

PostgreSQL and Redis must already run (``--postgres``, ``--redis``): they are used, never started,
restarted or reconfigured; the script creates only its own three databases (``<prefix>_airflow``,
``<prefix>_mlflow``, ``<prefix>_ledger``: the audit ledger) and, in its S3 server, the buckets (MLflow's
artifacts, the retirement archive). Everything else lives in the state folder
(default ``.modelops/prod``, apart from the embedded stack's ``.modelops``): ``stack.json`` (what
was started, with which ports), ``secrets.json``, ``passwords.json`` (the Airflow UI's admin
password), ``logs/<part>.log``, ``run/<part>.pid``, the data, Triton's repository, the inference log.

The Airflow processes get the variables that ``docker-compose.yaml`` gives its Airflow services,
with loopback addresses (:func:`airflow_env`), and the MLflow server those of its ``mlflow``
service (:func:`mlflow_env`, :func:`mlflow_server_args`); ``tests/prod/test_compose_env.py`` keeps
the two from drifting apart. The few variables a host needs and an image does not (where the
project is, ports, sizing for a small machine) are :data:`HOST_ONLY`.

Usage::

    python scripts/prod_stack.py start [--state DIR] [--airflow-port 8180] [--env KEY=VALUE …]
    python scripts/prod_stack.py stop [--state DIR] [--purge]     # --purge drops the databases and the state
    python scripts/prod_stack.py env [--state DIR] [--json]       # the Airflow processes' environment
    python scripts/prod_stack.py pools                            # alias pools in the Airflow of the environment

``start`` waits until every part answers (or fails with the log's tail), then prints where each UI
is. ``stop`` ends every process it started (SIGTERM, then SIGKILL), everything left in their sessions
(Airflow's task processes have process groups of their own) and any process they started that left
its session (it inherited ``PROD_STACK_STATE``, which names the stack).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
DEFAULT_STATE = ROOT / ".modelops" / "prod"
ARTIFACT_BUCKET = "mlflow-artifacts"  # as docker-compose.yaml's minio-buckets service creates them
ARCHIVE_BUCKET = "modelops-archive"
DATABASES = ("airflow", "mlflow", "ledger")  # <prefix>_<name> in --postgres: Airflow, MLflow, the audit ledger
ADMIN = "admin"
# The compose file's MinIO credentials, as dummy keys for the S3 double (it accepts any).
S3_ACCESS_KEY = "modelops"
S3_SECRET_KEY = "modelops-secret"

STARTUP_TIMEOUT_S = 240
# Set in the environment of every process the script starts (and so inherited by what those start): which stack.
MARKER = "PROD_STACK_STATE"
# Variables the processes here get that docker-compose.yaml's services do not set, and why: where the
# project is (the image bakes it in), the ports (compose maps container ports), the sizing (2 cores).
HOST_ONLY: dict[str, str] = {
    "AIRFLOW_HOME": "the stack's Airflow home in the state folder (the image's /opt/airflow)",
    "AIRFLOW__CORE__DAGS_FOLDER": "the project's dags/ (the image copies it into its Airflow home)",
    "AIRFLOW__CORE__PLUGINS_FOLDER": "the project's plugins/ (idem)",
    "PYTHONPATH": "the project root and plugins/, for include imports (the Dockerfile sets it)",
    "MODELOPS_HOME": "the state folder (the image's default)",
    "MLFLOW_TRACKING_URI": "the tracking server, for the project's tools run from a shell (the tasks use "
                           "AIRFLOW_CONN_MLFLOW_DEFAULT)",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "off: MLflow's progress bar writes to stderr, which task logs show as errors",
    "GX_ANALYTICS_ENABLED": "off: Great Expectations would call home (no network here)",
    "AIRFLOW__API__HOST": "loopback only (compose publishes the container's port)",
    "AIRFLOW__API__PORT": "the API server's port on this host",
    "AIRFLOW__API__BASE_URL": "links in the UI and alerts point at this host's port",
    "AIRFLOW__API__WORKERS": "one API worker on a small machine",
    "AIRFLOW__CORE__PARALLELISM": "sized for a small machine",
    "AIRFLOW__CELERY__WORKER_CONCURRENCY": "sized for a small machine",
    "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "Airflow's default (paused) unless --unpaused",
}


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@dataclass
class Stack:
    """What one stack is: its state folder, the services it uses, its ports; saved as ``stack.json``."""

    state: str
    host: str = "127.0.0.1"
    postgres: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    redis: str = "redis://127.0.0.1:6379/0"
    db_prefix: str = "modelops"
    airflow_port: int = 8180
    mlflow_port: int = 5100
    s3_port: int = 9100
    triton_port: int = 8100
    triton_grpc_port: int = 8101
    triton_metrics_port: int = 8102
    parallelism: int = 4
    worker_concurrency: int = 2
    unpaused: bool = False
    with_triton: bool = True
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def dir(self) -> Path:
        return Path(self.state)

    @property
    def airflow_home(self) -> Path:
        return self.dir / "airflow"

    @property
    def airflow_url(self) -> str:
        return f"http://{self.host}:{self.airflow_port}"

    @property
    def mlflow_url(self) -> str:
        return f"http://{self.host}:{self.mlflow_port}"

    @property
    def s3_url(self) -> str:
        return f"http://{self.host}:{self.s3_port}"

    @property
    def triton_url(self) -> str:
        return f"http://{self.host}:{self.triton_port}"

    def database(self, which: str) -> str:
        """The name of this stack's ``which`` (``airflow`` or ``mlflow``) database."""
        return f"{self.db_prefix}_{which}"

    def database_url(self, which: str, driver: str = "postgresql+psycopg2") -> str:
        """``--postgres`` with this stack's ``which`` database and the given scheme."""
        parts = urlsplit(self.postgres)
        return urlunsplit((driver, parts.netloc, f"/{self.database(which)}", parts.query, ""))

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "stack.json").write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, state: Path) -> Stack:
        """The stack started in ``state``; ``FileNotFoundError`` when none was."""
        return cls(**json.loads((state / "stack.json").read_text()))


def _secrets(stack: Stack) -> dict[str, str]:
    """The stack's generated secrets (JWT signing key, drift webhook secret), made once and kept."""
    path = stack.dir / "secrets.json"
    if path.is_file():
        return json.loads(path.read_text())
    values = {"jwt_secret": secrets.token_urlsafe(32), "webhook_secret": secrets.token_urlsafe(32)}
    stack.dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(values))
    path.chmod(0o600)
    return values


def admin_password(stack: Stack) -> str:
    """The Airflow UI's ``admin`` password (``passwords.json`` in the state folder), made once."""
    path = stack.dir / "passwords.json"
    if not path.is_file():
        stack.dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({ADMIN: secrets.token_urlsafe(12)}))
        path.chmod(0o600)
    return json.loads(path.read_text())[ADMIN]


def webhook_secret(stack: Stack) -> str:
    """The drift webhook's shared secret (the password of ``modelops_drift_webhook``)."""
    return _secrets(stack)["webhook_secret"]


def s3_env(stack: Stack) -> dict[str, str]:
    """The S3 variables compose gives MLflow and the Airflow services, pointing at the S3 server here."""
    return {"MLFLOW_S3_ENDPOINT_URL": stack.s3_url, "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY}


def airflow_env(stack: Stack) -> dict[str, str]:
    """Every variable the stack's Airflow processes get on top of the caller's environment.

    The names of docker-compose.yaml's ``x-airflow`` environment, with this host's addresses, plus
    :data:`HOST_ONLY`, plus ``--env`` overrides (which win).
    """
    secret = _secrets(stack)
    env = {
        # as docker-compose.yaml's x-airflow environment
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(stack.dir / "passwords.json"),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{stack.airflow_url}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": secret["jwt_secret"],
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": stack.database_url("airflow"),
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + stack.database_url("airflow"),
        "AIRFLOW__CELERY__BROKER_URL": stack.redis,
        "AIRFLOW_CONN_MLFLOW_DEFAULT": json.dumps({"conn_type": "http", "host": stack.host, "port": stack.mlflow_port,
                                                   "extra": {"ui_url": stack.mlflow_url}}),
        "AIRFLOW_CONN_MODELOPS_DRIFT_WEBHOOK": json.dumps({"conn_type": "generic", "password": secret["webhook_secret"]}),
        **s3_env(stack),
        "MODELOPS_TRAINING_BACKEND": "local",
        "MODELOPS_DATA_DIR": str(stack.dir / "data"),
        "MODELOPS_TRITON_URL": stack.triton_url,
        "MODELOPS_TRITON_REPOSITORY": str(stack.dir / "triton" / "models"),
        # Triton writes it (every request it serves), the monitoring DAG reads it: one folder for both
        "MODELOPS_INFERENCE_LOG": str(stack.dir / "inference_log"),
        "MODELOPS_LEDGER_URL": stack.database_url("ledger"),
        "MODELOPS_ARCHIVE_URI": f"s3://{ARCHIVE_BUCKET}/models",
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps({
            "conn_type": "aws", "login": S3_ACCESS_KEY, "password": S3_SECRET_KEY,
            "extra": {"endpoint_url": stack.s3_url, "region_name": "us-east-1"}}),
        # this host only (HOST_ONLY says why)
        "AIRFLOW_HOME": str(stack.airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins")]),
        "MODELOPS_HOME": str(stack.dir),
        "MLFLOW_TRACKING_URI": stack.mlflow_url,
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "GX_ANALYTICS_ENABLED": "false",
        "AIRFLOW__API__HOST": stack.host,
        "AIRFLOW__API__PORT": str(stack.airflow_port),
        "AIRFLOW__API__BASE_URL": stack.airflow_url,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__CORE__PARALLELISM": str(stack.parallelism),
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(stack.worker_concurrency),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False" if stack.unpaused else "True",
    }
    return {**env, **stack.extra_env}


def mlflow_env(stack: Stack) -> dict[str, str]:
    """The MLflow server's variables: docker-compose.yaml's ``mlflow`` service's, plus no job runner."""
    # MLflow 3's job runner starts a pool of huey consumers per server: not needed here, heavy on 2 cores.
    return {**s3_env(stack), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def mlflow_server_args(stack: Stack) -> list[str]:
    """``mlflow server`` arguments: compose's (PostgreSQL store, proxied S3 artifacts) on loopback, one worker."""
    return ["--host", stack.host, "--port", str(stack.mlflow_port),
            "--backend-store-uri", stack.database_url("mlflow"),
            "--artifacts-destination", f"s3://{ARTIFACT_BUCKET}", "--serve-artifacts", "--workers", "1"]


# --- processes -----------------------------------------------------------------------------------


def _pid_file(stack: Stack, name: str) -> Path:
    return stack.dir / "run" / f"{name}.pid"


def _log(stack: Stack, name: str) -> Path:
    return stack.dir / "logs" / f"{name}.log"


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.is_file() else "(no log)"


def spawn(stack: Stack, name: str, argv: list[str], env: Mapping[str, str]) -> int:
    """Start ``argv`` as ``name`` in a process group of its own, output to ``logs/<name>.log``; its pid."""
    _log(stack, name).parent.mkdir(parents=True, exist_ok=True)
    _pid_file(stack, name).parent.mkdir(parents=True, exist_ok=True)
    with _log(stack, name).open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, **env, MARKER: str(stack.dir)}, cwd=ROOT, start_new_session=True)
    _pid_file(stack, name).write_text(str(proc.pid))
    return proc.pid


def pid(stack: Stack, name: str) -> int | None:
    """The pid of the stack's ``name`` process while it runs, else None."""
    path = _pid_file(stack, name)
    if not path.is_file():
        return None
    value = int(path.read_text())
    with contextlib.suppress(ChildProcessError):  # reap our own child that exited
        os.waitpid(value, os.WNOHANG)
    try:
        os.kill(value, 0)
    except ProcessLookupError:
        return None
    with contextlib.suppress(OSError):  # a zombie is not running
        if Path(f"/proc/{value}/stat").read_text().split(") ")[1].startswith("Z"):
            return None
    return value


def _group_alive(pgid: int) -> bool:
    with contextlib.suppress(ChildProcessError):  # reap our own child, else its zombie keeps the group "alive"
        os.waitpid(pgid, os.WNOHANG)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_processes(stack: Stack, names, *, sig: int = signal.SIGTERM, timeout_s: float = 30) -> list[str]:
    """End the process groups of the stack's ``names`` together (``sig``, then SIGKILL for any group still
    there after ``timeout_s``); the names that had a process."""
    groups = {}
    for name in names:
        path = _pid_file(stack, name)
        if path.is_file():
            groups[name] = int(path.read_text())
            with contextlib.suppress(ProcessLookupError):
                os.killpg(groups[name], sig)
    deadline = time.monotonic() + timeout_s
    while any(_group_alive(g) for g in groups.values()) and time.monotonic() < deadline:
        time.sleep(0.2)
    for name, pgid in groups.items():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        for member in session_members(pgid):  # e.g. a task process in a process group of its own
            with contextlib.suppress(ProcessLookupError):
                os.kill(member, signal.SIGKILL)
        _pid_file(stack, name).unlink(missing_ok=True)
    return list(groups)


def session_members(sid: int) -> list[int]:
    """The processes in session ``sid``: a part started by :func:`spawn` leads its own session, and everything it
    starts stays in it, including processes in process groups of their own (Airflow's task processes)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def kill_part(stack: Stack, name: str) -> list[int]:
    """SIGKILL every process of the part ``name``, as a crash of its host would: its session, not only its
    process group (a task process has a group of its own). The pids killed."""
    path = _pid_file(stack, name)
    if not path.is_file():
        return []
    members = session_members(int(path.read_text()))
    for member in members:
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(int(path.read_text()), os.WNOHANG)
    path.unlink(missing_ok=True)
    return members


def stop_process(stack: Stack, name: str, *, sig: int = signal.SIGTERM, timeout_s: float = 30) -> bool:
    """End the process group of the stack's ``name`` (``sig``, then SIGKILL after ``timeout_s``); whether one ran."""
    return bool(stop_processes(stack, [name], sig=sig, timeout_s=timeout_s))


def _ancestors() -> set[int]:
    """This process and its ancestors (never to be swept, whatever their environment)."""
    found, current = set(), os.getpid()
    while current > 1 and current not in found:
        found.add(current)
        try:
            current = int(Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            break
    return found


def stray_processes(stack: Stack) -> list[int]:
    """Processes that this stack's parts started and that left their session (a server that made a session of
    its own): they inherited :data:`MARKER` naming the stack's state folder, which only :func:`spawn` sets
    (``env`` does not print it, so a shell a user set up with it is never one). Never this process or its
    ancestors."""
    marker = f"{MARKER}={stack.dir}".encode()
    mine, found = _ancestors(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in mine:
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


# --- readiness -----------------------------------------------------------------------------------


def _get(url: str, timeout: float = 3) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:  # noqa: S310 - loopback URLs built here
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_until(stack: Stack, name: str, ready, timeout_s: float, what: str) -> None:
    """Poll ``ready()`` until it is true; ``RuntimeError`` with the log's tail when ``name`` exits or time is up."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if ready():
                return
        except (OSError, ValueError):
            pass
        for part in [name, *(p for p in SERVICES if p != name and _pid_file(stack, p).is_file())]:
            if pid(stack, part) is None:
                raise RuntimeError(f"{part} exited while waiting for {name} to be {what}; {_log(stack, part)}:\n"
                                   f"{_tail(_log(stack, part))}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name}: not {what} after {timeout_s:.0f} s; {_log(stack, name)}:\n"
                               f"{_tail(_log(stack, name))}")
        time.sleep(0.5)


def _http_ok(url: str) -> bool:
    return _get(url)[0] == 200


def airflow_health(stack: Stack) -> dict:
    """``/api/v2/monitor/health``: the metadata DB's, scheduler's, triggerer's and DAG processor's status."""
    status, body = _get(f"{stack.airflow_url}/api/v2/monitor/health")
    return json.loads(body) if status == 200 else {}


def _log_size(stack: Stack, name: str) -> int:
    log = _log(stack, name)
    return log.stat().st_size if log.is_file() else 0


def _log_has(stack: Stack, name: str, text: bytes, offset: int) -> bool:
    log = _log(stack, name)
    if not log.is_file():
        return False
    with log.open("rb") as f:
        f.seek(offset)
        return text in f.read()


def _beats_since(stack: Stack, component: str, since: datetime) -> bool:
    """The component is healthy with a heartbeat after ``since`` (so it is the process started then)."""
    info = airflow_health(stack).get(component) or {}
    beat = info.get(f"latest_{component}_heartbeat")
    return info.get("status") == "healthy" and beat is not None and datetime.fromisoformat(beat) > since


def wait_ready(stack: Stack, name: str, *, since: datetime, log_offset: int = 0,
               timeout_s: float = STARTUP_TIMEOUT_S) -> None:
    """Wait until the part ``name``, started at ``since`` (UTC) with its log at ``log_offset``, answers.

    The servers answer their health URL; the scheduler, triggerer and DAG processor report a heartbeat
    after ``since`` in the API server's health; the Celery worker logs that it is ready.
    """
    checks = {
        "s3": lambda: _http_ok(f"{stack.s3_url}/moto-api/"),
        "mlflow": lambda: _http_ok(f"{stack.mlflow_url}/health"),
        "triton": lambda: _http_ok(f"{stack.triton_url}/v2/health/live"),
        "api-server": lambda: _http_ok(f"{stack.airflow_url}/api/v2/monitor/health"),
        "scheduler": lambda: _beats_since(stack, "scheduler", since),
        "triggerer": lambda: _beats_since(stack, "triggerer", since),
        "dag-processor": lambda: _beats_since(stack, "dag_processor", since),
        "celery-worker": lambda: _log_has(stack, "celery-worker", b" ready.", log_offset),
    }
    wait_until(stack, name, checks[name], timeout_s, "ready")


def restart_part(stack: Stack, name: str, timeout_s: float = STARTUP_TIMEOUT_S) -> int:
    """Start the Airflow part ``name`` again (whatever is left of the old one is SIGKILLed first), wait
    until it is ready; its pid. For the kill tests and for an operator replacing a crashed part."""
    stop_process(stack, name, sig=signal.SIGKILL, timeout_s=5)
    offset, since = _log_size(stack, name), datetime.now(UTC)
    started = start_airflow_part(stack, name)
    wait_ready(stack, name, since=since, log_offset=offset, timeout_s=timeout_s)
    return started


# --- set-up --------------------------------------------------------------------------------------


def check_services(stack: Stack) -> None:
    """PostgreSQL and Redis answer; ``RuntimeError`` naming the one that does not (this script starts neither)."""
    for name, url in (("PostgreSQL", stack.postgres), ("Redis", stack.redis)):
        parts = urlsplit(url)
        try:
            socket.create_connection((parts.hostname, parts.port or {"redis": 6379}.get(parts.scheme, 5432)),
                                     timeout=5).close()
        except OSError as exc:
            raise RuntimeError(f"{name} does not answer at {url} ({exc}): start it first; this script uses it, "
                               "it does not start it") from None


def create_databases(stack: Stack) -> list[str]:
    """Create the stack's databases that do not exist yet in ``--postgres``; the names created."""
    import psycopg2

    created = []
    with contextlib.closing(psycopg2.connect(stack.postgres)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            for which in DATABASES:
                name = stack.database(which)
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{name}"')
                    created.append(name)
    return created


def drop_databases(stack: Stack) -> None:
    """Drop the stack's databases (``stop --purge``), ending what is still connected to them."""
    import psycopg2

    with contextlib.closing(psycopg2.connect(stack.postgres)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            for which in DATABASES:
                cur.execute(f'DROP DATABASE IF EXISTS "{stack.database(which)}" WITH (FORCE)')


def s3_client(stack: Stack):
    """A boto3 S3 client for the stack's S3 server."""
    import boto3

    return boto3.client("s3", endpoint_url=stack.s3_url, region_name="us-east-1",
                        aws_access_key_id=S3_ACCESS_KEY, aws_secret_access_key=S3_SECRET_KEY)


def _recording(stack: Stack) -> Path:
    return stack.dir / "s3" / "recording.jsonl"


def start_s3(stack: Stack) -> None:
    """moto's S3 server, its earlier contents replayed from the state folder, and the buckets.

    moto keeps objects in memory; its recorder appends every request to ``s3/recording.jsonl``, which
    the next start replays, so the artifacts outlive a ``stop`` (not a ``stop --purge``).
    """
    recording = _recording(stack)
    recording.parent.mkdir(parents=True, exist_ok=True)
    spawn(stack, "s3", [str(VENV_BIN / "moto_server"), "-H", stack.host, "-p", str(stack.s3_port)],
          {"MOTO_ENABLE_RECORDING": "True", "MOTO_RECORDER_FILEPATH": str(recording)})
    wait_until(stack, "s3", lambda: _http_ok(f"{stack.s3_url}/moto-api/"), 60, "answering")
    if recording.is_file() and recording.stat().st_size:
        replay = urllib.request.Request(f"{stack.s3_url}/moto-api/recorder/replay-recording", method="POST")
        urllib.request.urlopen(replay, timeout=300).close()  # noqa: S310 - loopback
    urllib.request.urlopen(urllib.request.Request(  # noqa: S310 - loopback
        f"{stack.s3_url}/moto-api/recorder/start-recording", method="POST"), timeout=30).close()
    client = s3_client(stack)
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    for bucket in (ARTIFACT_BUCKET, ARCHIVE_BUCKET):
        if bucket not in existing:
            client.create_bucket(Bucket=bucket)


def _airflow(stack: Stack, *args: str, timeout_s: float = 300) -> subprocess.CompletedProcess:
    """``airflow <args>`` with the stack's environment; ``RuntimeError`` with its output when it fails."""
    done = subprocess.run([str(VENV_BIN / "airflow"), *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **airflow_env(stack)}, timeout=timeout_s)
    if done.returncode != 0:
        raise RuntimeError(f"airflow {' '.join(args)} failed ({done.returncode}):\n{(done.stdout + done.stderr)[-4000:]}")
    return done


def alias_pools() -> dict[str, dict]:
    """One single-slot pool per configured model, for its alias moves (:func:`include.dag_ids.alias_pool`)."""
    sys.path[:0] = [p for p in (str(ROOT), str(ROOT / "plugins")) if p not in sys.path]
    from include.config import model_configs
    from include.dag_ids import alias_pool

    return {alias_pool(name): {"slots": 1, "include_deferred": False,
                               "description": f"Alias moves of {name}: promotion, rollback, automatic rollback, one "
                                              "at a time (MLflow's alias moves are last-writer-wins)"}
            for name in model_configs()}


def create_pools(env: Mapping[str, str] | None = None, work: Path | None = None) -> list[str]:
    """``airflow pools import`` the alias pools into the Airflow that ``env`` (default: this process's) names."""
    pools = alias_pools()
    work = work or Path(os.environ.get("TMPDIR", "/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    path = work / f"modelops-pools-{os.getpid()}.json"
    path.write_text(json.dumps(pools))
    try:
        done = subprocess.run([str(VENV_BIN / "airflow"), "pools", "import", str(path)], capture_output=True,
                              text=True, cwd=ROOT, env={**os.environ, **(env or {})}, timeout=300)
    finally:
        path.unlink(missing_ok=True)
    if done.returncode != 0:
        raise RuntimeError(f"airflow pools import failed ({done.returncode}):\n{(done.stdout + done.stderr)[-4000:]}")
    return sorted(pools)


def start_airflow_part(stack: Stack, name: str) -> int:
    """Start one Airflow part (``scheduler``, ``celery-worker``…) of a stack whose servers run; its pid.

    For restarts (``tests/prod`` kills and restarts parts); :func:`start` starts them all.
    """
    env = airflow_env(stack)
    airflow = str(VENV_BIN / "airflow")
    if name == "celery-worker":
        # The worker serves the queue the tasks are sent to: Airflow's default queue unless --env sets another
        # (stacks sharing one Redis keep apart that way).
        queue = env.get("AIRFLOW__OPERATORS__DEFAULT_QUEUE", "default")
        argv = [airflow, "celery", "worker", "--skip-serve-logs", "--without-gossip", "--without-mingle",
                "--concurrency", str(stack.worker_concurrency), "--queues", queue,
                "--celery-hostname", f"{stack.db_prefix}@%h"]
    elif name == "api-server":
        argv = [airflow, "api-server", "--host", stack.host, "--port", str(stack.airflow_port), "--workers", "1"]
    elif name in ("scheduler", "triggerer"):
        argv = [airflow, name, "--skip-serve-logs"]
    elif name == "dag-processor":
        argv = [airflow, name]
    else:
        raise ValueError(f"not an Airflow part: {name!r} (one of {', '.join(AIRFLOW_PARTS)})")
    return spawn(stack, name, argv, env)


def demo_data(stack: Stack) -> Path:
    """The demo training data at the model's default ``dataset.uri`` (made once, as ``make up`` does)."""
    data = stack.dir / "data" / "credit_approval" / "train.parquet"
    if not data.exists():
        subprocess.run([sys.executable, "-m", "include.demo.datagen", str(data), "--rows", "20000", "--seed", "1"],
                       check=True, cwd=ROOT, env={**os.environ, **airflow_env(stack)}, capture_output=True)
    return data


# --- a client for the stack's Airflow ------------------------------------------------------------

TERMINAL_STATES = frozenset({"success", "failed"})


class AirflowClient:
    """Airflow's REST API (``/api/v2``) on the stack's API server, as a user calls it: a JWT from the simple
    auth manager's ``POST /auth/token``. For the tests in ``tests/prod`` and the bench; each method raises
    ``RuntimeError`` with the answer's text when Airflow answers with an error status."""

    def __init__(self, url: str, password: str, *, username: str = ADMIN) -> None:
        import httpx

        self.url = url
        self._http = httpx.Client(base_url=url, timeout=60)
        answer = self._http.post("/auth/token", json={"username": username, "password": password})
        if answer.status_code not in (200, 201):
            raise RuntimeError(f"POST /auth/token: {answer.status_code} {answer.text}")
        self._http.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"

    @classmethod
    def of(cls, stack: Stack) -> AirflowClient:
        return cls(stack.airflow_url, admin_password(stack))

    def call(self, method: str, path: str, **kwargs) -> dict:
        answer = self._http.request(method, f"/api/v2{path}", **kwargs)
        if answer.status_code >= 400:
            raise RuntimeError(f"{method} /api/v2{path}: {answer.status_code} {answer.text}")
        return answer.json() if answer.content else {}

    def set_paused(self, dag_id: str, paused: bool) -> None:
        self.call("PATCH", f"/dags/{dag_id}", json={"is_paused": paused})

    def trigger(self, dag_id: str, conf: dict | None = None) -> dict:
        """A manual run of ``dag_id`` with ``conf`` and no logical date: the run as the API returns it."""
        return self.call("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf or {}})

    def run(self, dag_id: str, run_id: str) -> dict:
        return self.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}")

    def runs(self, dag_id: str) -> list[dict]:
        """Every run of ``dag_id``, oldest first."""
        return self.call("GET", f"/dags/{dag_id}/dagRuns", params={"order_by": "run_after", "limit": 100})["dag_runs"]

    def task_instances(self, dag_id: str, run_id: str) -> dict[str, dict]:
        """The run's task instances by task id (state, try_number, start_date, end_date, pool…)."""
        tis = self.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
        return {ti["task_id"]: ti for ti in tis}

    def wait_run(self, dag_id: str, run_id: str, timeout_s: float, poll_s: float = 2) -> dict:
        """Poll until the run is ``success`` or ``failed``; ``TimeoutError`` with its task states otherwise."""
        deadline = time.monotonic() + timeout_s
        while True:
            run = self.run(dag_id, run_id)
            if run["state"] in TERMINAL_STATES:
                return run
            if time.monotonic() > deadline:
                states = {t: ti["state"] for t, ti in self.task_instances(dag_id, run_id).items()}
                raise TimeoutError(f"{dag_id} run {run_id} still {run['state']} after {timeout_s:.0f} s: {states}")
            time.sleep(poll_s)

    def wait_new_run(self, dag_id: str, known: set[str], timeout_s: float, poll_s: float = 2) -> dict:
        """The first run of ``dag_id`` whose id is not in ``known``, once it exists (not waiting for it to end)."""
        deadline = time.monotonic() + timeout_s
        while True:
            fresh = [r for r in self.runs(dag_id) if r["dag_run_id"] not in known]
            if fresh:
                return fresh[0]
            if time.monotonic() > deadline:
                raise TimeoutError(f"no new run of {dag_id} after {timeout_s:.0f} s")
            time.sleep(poll_s)

    def pool(self, name: str) -> dict:
        return self.call("GET", f"/pools/{name}")

    def set_pool_slots(self, name: str, slots: int) -> None:
        pool = self.pool(name)
        self.call("PATCH", f"/pools/{name}", params={"update_mask": "slots"},
                  json={"pool": name, "slots": slots, "include_deferred": pool["include_deferred"]})


# --- commands ------------------------------------------------------------------------------------

SERVICES = ("s3", "mlflow", "triton", "api-server", "scheduler", "dag-processor", "triggerer", "celery-worker")
AIRFLOW_PARTS = ("api-server", "scheduler", "dag-processor", "triggerer", "celery-worker")


def start(stack: Stack, *, out=sys.stdout) -> None:
    """Start every part of the stack and wait until each answers; on failure, stop what was started."""
    def say(text: str) -> None:
        print(text, file=out, flush=True)

    running = [name for name in SERVICES if pid(stack, name)]
    if running:
        raise RuntimeError(f"the stack in {stack.dir} already runs ({', '.join(running)}): stop it first")
    check_services(stack)
    stack.save()
    admin_password(stack)
    env = airflow_env(stack)
    t0 = time.monotonic()
    try:
        if created := create_databases(stack):
            say(f"created databases {', '.join(created)} in {urlsplit(stack.postgres).netloc}")
        start_s3(stack)
        _airflow(stack, "db", "migrate")
        say(f"pools: {', '.join(create_pools(env, stack.dir))}")
        demo_data(stack)
        (stack.dir / "triton" / "models").mkdir(parents=True, exist_ok=True)
        since = datetime.now(UTC)
        offsets = {name: _log_size(stack, name) for name in SERVICES}
        spawn(stack, "mlflow", [str(VENV_BIN / "mlflow"), "server", *mlflow_server_args(stack)], mlflow_env(stack))
        if stack.with_triton:
            spawn(stack, "triton", [sys.executable, "-m", "include.serving.triton.server",
                                    "--repository", env["MODELOPS_TRITON_REPOSITORY"], "--host", stack.host,
                                    "--http-port", str(stack.triton_port), "--grpc-port", str(stack.triton_grpc_port),
                                    "--metrics-port", str(stack.triton_metrics_port),
                                    "--log-file", str(_log(stack, "tritonserver"))], env)
        for name in AIRFLOW_PARTS:
            start_airflow_part(stack, name)
        for name in ("mlflow", *AIRFLOW_PARTS, *(["triton"] if stack.with_triton else [])):
            wait_ready(stack, name, since=since, log_offset=offsets.get(name, 0))
    except BaseException:
        stop(stack)
        raise
    say(f"production stack up in {time.monotonic() - t0:.0f} s (state: {stack.dir})")
    say(f"Airflow UI: {stack.airflow_url}  (user {ADMIN}, password in {stack.dir / 'passwords.json'})")
    say(f"MLflow UI:  {stack.mlflow_url}   artifacts: s3://{ARTIFACT_BUCKET} on {stack.s3_url}")
    if stack.with_triton:
        say(f"Triton:     {stack.triton_url}")
    say(f"logs: {stack.dir / 'logs'}/   environment: python scripts/prod_stack.py env --state {stack.dir}")


def stop(stack: Stack, *, purge: bool = False) -> list[str]:
    """Stop every part (Airflow first, then its servers) and whatever they left behind; the parts stopped.

    With ``purge``, also drop the stack's databases and remove its state folder.
    """
    airflow = [name for name in reversed(SERVICES) if name in AIRFLOW_PARTS]
    stopped = stop_processes(stack, airflow) + stop_processes(stack, [n for n in SERVICES if n not in AIRFLOW_PARTS])
    for _ in range(3):
        strays = stray_processes(stack)
        if not strays:
            break
        for value in strays:
            with contextlib.suppress(ProcessLookupError):
                os.kill(value, signal.SIGKILL)
        time.sleep(0.5)
    if purge:
        drop_databases(stack)
        shutil.rmtree(stack.dir, ignore_errors=True)
    return stopped


def _stack_from(args: argparse.Namespace) -> Stack:
    state = Path(args.state).resolve()
    try:
        return Stack.load(state)
    except FileNotFoundError:
        raise SystemExit(f"no stack was started in {state} (no stack.json)") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/prod_stack.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    begin = sub.add_parser("start", help="start the stack and wait until every part answers")
    end = sub.add_parser("stop", help="stop every process of the stack")
    show = sub.add_parser("env", help="print the environment of the stack's Airflow processes")
    sub.add_parser("pools", help="create the alias pools in the Airflow the environment names")
    for command in (begin, end, show):
        command.add_argument("--state", default=str(DEFAULT_STATE), help="the stack's state folder (default %(default)s)")
    defaults = Stack(state="")
    for name in ("postgres", "redis", "db_prefix", "host"):
        begin.add_argument(f"--{name.replace('_', '-')}", default=getattr(defaults, name))
    for name in ("airflow_port", "mlflow_port", "s3_port", "triton_port", "triton_grpc_port", "triton_metrics_port",
                 "parallelism", "worker_concurrency"):
        begin.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name))
    begin.add_argument("--free-ports", action="store_true", help="pick free ports instead of the defaults")
    begin.add_argument("--unpaused", action="store_true", help="new DAGs start active (production default: paused)")
    begin.add_argument("--no-triton", dest="with_triton", action="store_false", help="do not start Triton")
    begin.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                       help="an extra variable for the Airflow processes (repeatable)")
    end.add_argument("--purge", action="store_true", help="also drop the databases and remove the state folder")
    show.add_argument("--json", action="store_true", help="JSON: the environment, the URLs and the secrets")
    args = parser.parse_args(argv)

    if args.command == "pools":
        print("\n".join(create_pools()))
        return 0
    if args.command == "start":
        values = {k: v for k, v in vars(args).items() if k in Stack.__dataclass_fields__ and k != "state"}
        values["extra_env"] = dict(item.split("=", 1) for item in args.env)
        if args.free_ports:
            for name in ("airflow_port", "mlflow_port", "s3_port", "triton_port", "triton_grpc_port",
                         "triton_metrics_port"):
                values[name] = _free_port(args.host)
        try:
            start(Stack(state=str(Path(args.state).resolve()), **values))
        except RuntimeError as exc:
            print(f"prod_stack: {exc}", file=sys.stderr)
            return 1
        return 0
    if args.command == "stop" and not (Path(args.state) / "stack.json").is_file():
        print(f"stopped: nothing (no stack was started in {Path(args.state).resolve()})")
        return 0
    stack = _stack_from(args)
    if args.command == "stop":
        stopped = stop(stack, purge=args.purge)
        print(f"stopped: {', '.join(stopped) or 'nothing was running'}" + (" (purged)" if args.purge else ""))
        return 0
    env = airflow_env(stack)
    if args.json:
        print(json.dumps({"env": env, "mlflow_env": mlflow_env(stack), "mlflow_args": mlflow_server_args(stack),
                          "urls": {"airflow": stack.airflow_url, "mlflow": stack.mlflow_url, "s3": stack.s3_url,
                                   "triton": stack.triton_url},
                          "admin_password": admin_password(stack), "webhook_secret": webhook_secret(stack),
                          "stack": asdict(stack)}, indent=2))
    else:
        import shlex

        print("\n".join(f"export {k}={shlex.quote(v)}" for k, v in env.items()))
    return 0


def running(stack: Stack) -> Iterator[str]:
    """The names of the stack's parts whose process runs."""
    return (name for name in SERVICES if pid(stack, name))


if __name__ == "__main__":
    sys.exit(main())
