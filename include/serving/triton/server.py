"""A real NVIDIA Triton Inference Server (CPU, python backend) as a managed child process.

Triton ships inside the ``nvidia-pytriton`` wheel, which pins numpy<2, so it lives in its own
virtualenv (``.venv-triton``, made by ``scripts/setup_triton.sh``; ``MODELOPS_TRITON_VENV``
points elsewhere). The server runs with ``--model-control-mode=explicit``: models load and
unload only through the repository API (:class:`include.serving.triton.client.TritonClient`), so the
deployment DAG decides what serves.

Readiness is per model (``/v2/models/<name>/versions/<v>/ready``); the server's own
``/v2/health/ready`` is not strict by default. With ``--strict-readiness`` Triton 2.51 reports the
whole server unready as soon as a new version *fails* to load, and keeps doing so after the config
drops that version and the previous version serves again (only an unload of the model, i.e. an
outage, or a restart clears it): a readiness probe would then take a healthy server out of
service because a deployment was refused. ``strict_readiness=True`` is there for setups that
want it.

CLI, for ``make up``: ``python -m include.serving.triton.server --repository DIR --http-port 8000``
runs the server in the foreground until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import weakref
from dataclasses import dataclass
from pathlib import Path

from include import settings

log = logging.getLogger(__name__)

STUB_PYTHON = "3.11"
_SETUP_HINT = "run scripts/setup_triton.sh (or point MODELOPS_TRITON_VENV at a prepared virtualenv)"


class TritonServerError(RuntimeError):
    """tritonserver is not installed, did not start, or did not become ready."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class TritonInstall:
    """Where the pieces of a prepared ``.venv-triton`` are."""

    venv: Path
    binary: Path
    backend_directory: Path
    library_path: tuple[Path, ...]

    @classmethod
    def locate(cls, venv: Path | None = None) -> TritonInstall:
        venv = Path(venv or settings.triton_venv()).resolve()
        binaries = sorted(venv.glob("lib/python3*/site-packages/pytriton/tritonserver/bin/tritonserver"))
        if not binaries:
            raise TritonServerError(f"tritonserver not found in {venv}: {_SETUP_HINT}")
        binary = binaries[0]
        site_packages = binary.parents[3]
        backends = venv / "triton-backends"
        if not (backends / "python" / "triton_python_backend_stub").is_file():
            raise TritonServerError(f"python backend (with its {STUB_PYTHON} stub) not found in {backends}: {_SETUP_HINT}")
        libraries = [site_packages / "nvidia_pytriton.libs"]
        if (python_lib := _base_python_lib(venv)) is not None:
            libraries.append(python_lib)
        return cls(venv=venv, binary=binary, backend_directory=backends, library_path=tuple(libraries))

    def environment(self) -> dict[str, str]:
        """The server's environment: the wheel's libraries, the venv first on PATH (the stub's Python)."""
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)  # the stub must import the triton venv's numpy, not the caller's
        env.pop("PYTHONHOME", None)
        inherited = [p for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
        env["LD_LIBRARY_PATH"] = os.pathsep.join([*map(str, self.library_path), *inherited])
        env["PATH"] = os.pathsep.join([str(self.venv / "bin"), env.get("PATH", "")])
        env["VIRTUAL_ENV"] = str(self.venv)
        return env


def _base_python_lib(venv: Path) -> Path | None:
    """The ``lib`` folder of the interpreter the venv was made from (holds ``libpython3.11.so``)."""
    cfg = venv / "pyvenv.cfg"
    if not cfg.is_file():
        return None
    for line in cfg.read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "home":
            lib = Path(value.strip()).parent / "lib"
            return lib if lib.is_dir() else None
    return None


class TritonServer:
    """One ``tritonserver`` process: ``start()``, ``wait_ready()``, ``stop()``; also a context manager.

    The server and the python backend's stub processes share a process group of their own, which
    ``stop()`` terminates (SIGTERM, then SIGKILL): nothing is left behind, even if the caller forgets
    to stop it (a finalizer kills the group when the object is collected or the interpreter exits).
    """

    def __init__(
        self,
        *,
        venv: Path | None = None,
        host: str = "127.0.0.1",
        log_path: Path | None = None,
        exit_timeout_s: int = 10,
        strict_readiness: bool = False,
        inference_log: Path | str | None = None,
    ) -> None:
        self.install = TritonInstall.locate(venv)
        self.inference_log = inference_log  # where the python backend writes; default: the project's log root
        self.host = host
        self.strict_readiness = strict_readiness
        self.server_id = f"modelops-{secrets.token_hex(4)}"  # tells our server from another on the same port
        self.log_path = log_path
        self.exit_timeout_s = exit_timeout_s
        self.http_port: int | None = None
        self.grpc_port: int | None = None
        self.metrics_port: int | None = None
        self.model_repository: Path | None = None
        self._process: subprocess.Popen | None = None
        self._finalizer: weakref.finalize | None = None

    @property
    def url(self) -> str:
        if self.http_port is None:
            raise TritonServerError("the server has not been started")
        return f"http://{self.host}:{self.http_port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def command(self) -> list[str]:
        return [
            str(self.install.binary),
            f"--id={self.server_id}",
            f"--model-repository={self.model_repository}",
            "--model-control-mode=explicit",
            f"--backend-directory={self.install.backend_directory}",
            f"--strict-readiness={str(self.strict_readiness).lower()}",
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.metrics_port}",
            "--allow-gpu-metrics=false",
            f"--exit-timeout-secs={self.exit_timeout_s}",
        ]

    def start(
        self,
        model_repository: Path | str,
        http_port: int | None = None,
        grpc_port: int | None = None,
        metrics_port: int | None = None,
    ) -> TritonServer:
        """Launch the server (ports default to free ones); returns at once, see :meth:`wait_ready`."""
        if self.running():
            raise TritonServerError(f"tritonserver already running (pid {self.pid}) on {self.url}")
        self.model_repository = Path(model_repository).resolve()
        self.model_repository.mkdir(parents=True, exist_ok=True)
        self.http_port = http_port or free_port(self.host)
        self.grpc_port = grpc_port or free_port(self.host)
        self.metrics_port = metrics_port or free_port(self.host)
        if self.log_path is None:
            self.log_path = settings.state_dir() / "logs" / f"triton-{self.http_port}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        from include.monitoring.inference_log import log_root

        env = self.install.environment()
        env["MODELOPS_INFERENCE_LOG"] = str(log_root(self.inference_log))  # model.py logs every row it scores here
        with open(self.log_path, "ab") as log_file:
            self._process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.model_repository,
                start_new_session=True,
            )
        self._finalizer = weakref.finalize(self, _kill_group, self._process)
        log.info("Started tritonserver (pid %s) on %s, repository %s, log %s, inference log %s",
                 self.pid, self.url, self.model_repository, self.log_path, env["MODELOPS_INFERENCE_LOG"])
        return self

    def is_ready(self) -> bool:
        """``/v2/health/ready`` answers 200, and it is this server that answers (its ``--id``)."""
        try:
            with urllib.request.urlopen(f"{self.url}/v2/health/ready", timeout=2) as response:
                if response.status != 200:
                    return False
            with urllib.request.urlopen(f"{self.url}/v2", timeout=2) as response:
                return json.loads(response.read()).get("name") == self.server_id
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def wait_ready(self, timeout: float = 60.0) -> TritonServer:
        """Block until ``/v2/health/ready`` answers 200; fails early, with the log's tail, if the server exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is None:
                raise TritonServerError("the server has not been started")
            if self._process.poll() is not None:
                raise TritonServerError(
                    f"tritonserver exited with code {self._process.returncode} before it was ready; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            if self.is_ready():
                return self
            time.sleep(0.1)
        raise TritonServerError(f"tritonserver on {self.url} not ready after {timeout:.0f}s; log {self.log_path}:\n"
                                f"{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.is_file():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float | None = None) -> int | None:
        """Terminate the server and its stubs (SIGTERM, then SIGKILL after ``timeout``); returns its exit code."""
        process = self._process
        if process is None:
            return None
        timeout = self.exit_timeout_s + 5 if timeout is None else timeout
        if process.poll() is None:
            # The server alone: it unloads its models, so each python backend stub runs finalize (and writes
            # its buffered inference log) before it exits; the group is killed only after that.
            try:
                os.kill(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("tritonserver (pid %s) did not stop in %.0fs: killing it", process.pid, timeout)
        _kill_group(process)
        if self._finalizer is not None:
            self._finalizer.detach()
        log.info("Stopped tritonserver (pid %s), exit code %s", process.pid, process.returncode)
        self._process = None
        return process.returncode

    def __enter__(self) -> TritonServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _kill_group(process: subprocess.Popen) -> None:
    """SIGKILL whatever is left of the server's process group (the server itself, python backend stubs)."""
    _signal_group(process.pid, signal.SIGKILL)
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        log.error("tritonserver (pid %s) survived SIGKILL", process.pid)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m include.serving.triton.server", description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=None, help="model repository (default: MODELOPS_TRITON_REPOSITORY or .modelops/triton/models)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--metrics-port", type=int, default=8002)
    parser.add_argument("--log-file", type=Path, default=None, help="tritonserver's output (default: .modelops/logs/)")
    parser.add_argument("--ready-timeout", type=float, default=120.0)
    parser.add_argument("--strict-readiness", action="store_true", help="server ready only while every model is")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    stopping = False

    def _stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        server = TritonServer(host=args.host, log_path=args.log_file, strict_readiness=args.strict_readiness)
        server.start(args.repository or settings.triton_repository(), args.http_port, args.grpc_port, args.metrics_port)
        with server:
            server.wait_ready(args.ready_timeout)
            log.info("Triton ready on %s (repository %s)", server.url, server.model_repository)
            while not stopping and server.running():
                time.sleep(0.5)
            if not stopping:
                log.error("tritonserver exited unexpectedly; log %s:\n%s", server.log_path, server.log_tail())
                return 1
    except TritonServerError as exc:
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
