"""Real servers on loopback for tests: a free port, a process started in its own group, a readiness wait, a clean stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@contextmanager
def serving(
    argv: Sequence[str], *, env: Mapping[str, str], log: Path, ready_url: str, name: str,
    timeout_s: float, poll_s: float = 0.5,
) -> Iterator[subprocess.Popen]:
    """Run ``argv`` (output to ``log``) until ``GET ready_url`` answers 200, yield it, then stop its process group.

    Fails the test with the log's tail when the process exits early or is not ready within ``timeout_s``.
    """
    with log.open("wb") as out:
        proc = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT, env=dict(env), start_new_session=True)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                pytest.fail(f"{name} exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
            try:
                if httpx.get(ready_url, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{name} not up after {timeout_s} s:\n{log.read_text()[-4000:]}")
            time.sleep(poll_s)
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextmanager
def serving_app(app: Any) -> Iterator[str]:
    """An ASGI ``app`` served by uvicorn in a thread of this process on loopback; yields its base URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                pytest.fail("the in-process server did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


API_SERVER_TIMEOUT_S = 180


@contextmanager
def airflow_api_server(log_dir: Path, env: Mapping[str, str], *, unset: Sequence[str] = ()) -> Iterator[str]:
    """``airflow api-server`` with the project's plugin on a free loopback port, ``env`` over this process's
    environment (``unset``: variables taken out of it); yields its URL, stopped on exit. Log: ``log_dir/api-server.log``.

    Needs the ``airflow_db`` fixture (a migrated metadata database). The server creates runs from the serialized
    DAGs in that database, as in production, so the DAGs are reserialized first.
    """
    import sys

    full_env = {k: v for k, v in {**os.environ, **env}.items() if k not in unset}
    airflow = Path(sys.executable).parent / "airflow"
    subprocess.run([str(airflow), "dags", "reserialize"], check=True, capture_output=True, env=full_env)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with serving([str(airflow), "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                  "--apps", "core"], env=full_env, log=log_dir / "api-server.log",
                 ready_url=f"{url}/modelops/openapi.json", name="airflow api-server", timeout_s=API_SERVER_TIMEOUT_S):
        yield url


def airflow_tokens(url: str, passwords: Mapping[str, str]) -> dict[str, str]:
    """An API token per user (``POST /auth/token``), for ``Authorization: Bearer``."""
    tokens = {}
    for user, password in passwords.items():
        answer = httpx.post(f"{url}/auth/token", json={"username": user, "password": password}, timeout=60)
        assert answer.status_code in (200, 201), answer.text
        tokens[user] = answer.json()["access_token"]
    return tokens
