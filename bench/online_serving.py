"""Online serving benchmark: Triton (python backend, ONNX, dynamic batching) against ``mlflow models serve``.

One run, one machine, one client, side by side:

1. (not timed) train the configured model with ``include.training.train.train`` on generated data into a
   throw-away SQLite MLflow store and register it; export that version into a Triton model
   repository (``include.serving.triton.repository.export_version``) twice: as ``<model>`` with the
   configured inference log (``serving.inference_log``, on) and as ``<model>_nolog`` from a copy of the
   config with the log off;
2. start a real Triton server on free loopback ports (``include.serving.triton.server.TritonServer``,
   its inference log in the run's temporary folder) and ``mlflow models serve --env-manager local`` on a
   free loopback port, from the main venv;
3. check that all targets answer the same probability (within 1e-5) for the same rows, one row per request,
   in both of Triton's input forms;
4. for each concurrency level, for each target: ``--warmup`` seconds not recorded, then
   ``--duration`` seconds of single-row HTTP/JSON requests over that many keep-alive connections,
   cycling through the same pre-encoded rows. Targets: ``triton`` (the packed inputs, two tensors per
   request, inference log on as deployed), ``triton-named`` (one tensor per feature, the other form the
   model takes; the same logging model) and ``mlflow`` (``dataframe_split``);
5. the inference log's cost (``--log-rounds``, 0 to skip): for each concurrency level, ``triton`` (log on)
   and ``triton-nolog`` (the same version, same server, log off) after one warm-up each, then
   ``--log-rounds`` rounds of ``--log-duration`` seconds each, alternating which goes first (on, off,
   off, on, ...) so that a drift of the machine's load falls on both. Reported per level: throughput
   (all rounds' requests / their seconds) and p99 (of all rounds' latencies) of each, throughput(on) /
   throughput(off) against >= 0.90, p99(on) - p99(off) against <= 1 ms, the spread of the per-round
   ratios, and each python backend stub's CPU per request (including the log writer's flushes: the
   level ends by waiting ``flush_seconds`` for the last buffered rows);
6. after the server is stopped (each stub writes what it still buffers), the rows in the inference log
   (the Parquet files under the log folder) must equal the rows sent to the logging model (``<model>``)
   in the whole run, warm-ups, agreement checks and ``--clients`` included, each with its own request id;
   the bench fails otherwise.

With ``--clients SECONDS`` it also compares the Python clients a caller of Triton would use, on the same
server and rows: the project's own :class:`include.serving.triton.client.TritonClient` (httpx, binary
tensors) and NVIDIA's ``tritonclient[http]`` (geventhttpclient), each sending the packed inputs with
binary data from a DataFrame in a closed loop on one thread: single-row requests, then 200-row requests.
It reports requests/s and the client's CPU per request (``time.process_time``), and their ratios.
``tritonclient`` must be importable (it is not a project dependency; see the README).

The load generator is one thread driving all connections with non-blocking sockets and pre-built requests
(``LoadGenerator``), so it takes a small share of the cores it shares with the servers; its own CPU
and each server's (its whole process group) are measured over the timed window. Throughput is
completed requests / measured seconds; latency is per request, client side (send to last byte
read). Results go to stdout and, as Markdown, to ``bench/results/online_serving.md``.

    bash scripts/setup_triton.sh
    PYTHONPATH=. .venv/bin/python bench/online_serving.py --concurrency 1,16
    PYTHONPATH=. .venv/bin/python bench/online_serving.py --servers triton --duration 0   # the log on/off part only
    PYTHONPATH=. python bench/online_serving.py --servers triton --clients 10   # a python with tritonclient
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._common import process_group_cpu, write_results  # noqa: E402  (after the path is set)

MODEL = "credit_approval"
HOST = "127.0.0.1"
RESULTS = ROOT / "bench" / "results" / "online_serving.md"
TOLERANCE = 1e-5
SERVERS = ("triton", "triton-named", "mlflow")
LOGGED = ("triton", "triton-named")  # the targets served by <model> (inference log on); triton-nolog is not
NOLOG_SUFFIX = "_nolog"  # the Triton model of the same version with the inference log off
P99_BUDGET_MS = 1.0  # p99(on) - p99(off) at most this
THROUGHPUT_FLOOR = 0.90  # throughput(on) / throughput(off) at least this
CLIENTS = ("project", "tritonclient")
HEADING = "# Online serving"
BATCH_ROWS = 200
TRITON_DATATYPES = {"int": "INT64", "float": "FP64", "bool": "BOOL", "category": "BYTES", "string": "BYTES"}


@dataclass(frozen=True)
class Target:
    """One server as the client sees it: where to POST, one pre-encoded body per row, its process group."""

    name: str
    port: int
    path: str
    bodies: list[bytes]
    pgid: int


@dataclass(frozen=True)
class Result:
    server: str
    concurrency: int
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    server_cpu_s: float
    client_cpu_s: float
    warmup_requests: int = 0  # sent before the measured window (not in ``requests``)

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds

    @property
    def server_us_per_request(self) -> float:
        return self.server_cpu_s / self.requests * 1e6


def _config():
    from include.config import load_model_config

    return load_model_config(ROOT / "config" / "models" / f"{MODEL}.yaml")


# --- model ---------------------------------------------------------------------------------------


def register_model(work: Path, config) -> tuple[str, object]:
    """Train like the Triton tests do and register one version; returns (tracking URI, feature rows)."""
    from threadpoolctl import threadpool_limits

    from include import tracking
    from include.data.dataset import write_dataset
    from include.demo.datagen import generate_batch
    from include.training.train import features_and_target, holdout_split, train

    uri = f"sqlite:///{work / 'mlflow.db'}"
    client = tracking.configure(uri)
    batch = generate_batch(3000, seed=11)
    dataset = str(work / "train.parquet")
    write_dataset(batch, dataset)
    client.create_registered_model(config.name)
    run_id = tracking.upsert_run(client, "bench-online-serving", {"bench": "online_serving"}, "bench")
    with threadpool_limits(1):  # HistGradientBoosting's spinning OpenMP threads crawl on a busy 2-core machine
        client.create_model_version(config.name, train(config, dataset, run_id), run_id=run_id)
    _, holdout = holdout_split(batch, config)
    features, _ = features_and_target(holdout, config)
    return uri, features.head(200).reset_index(drop=True)


def _python_value(value: object, kind: str) -> object:
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)
    if kind == "bool":
        return bool(value)
    return str(value)


def encode_rows(frame, config) -> dict[str, list[bytes]]:
    """The same rows as single-row request bodies: KServe v2 JSON for Triton in both input forms
    (``triton``: the packed inputs; ``triton-named``: one input per feature, as the README's curl
    sends it), ``dataframe_split`` for mlflow."""
    from include.serving.triton.model import CATEGORICAL_INPUT, NUMERIC_INPUT
    from include.serving.triton.repository import packed_columns, triton_inputs

    columns = [(c.name, c.type) for c in config.dataset.features]
    packed_layout = packed_columns(triton_inputs(config))
    numeric, categorical = packed_layout[NUMERIC_INPUT], packed_layout[CATEGORICAL_INPUT]
    bodies: dict[str, list[bytes]] = {"triton": [], "triton-named": [], "mlflow": []}
    for record in frame.to_dict("records"):
        row = {name: _python_value(record[name], kind) for name, kind in columns}
        packed = [{"name": NUMERIC_INPUT, "shape": [1, len(numeric)], "datatype": "FP64",
                   "data": [float(row[name]) for name in numeric]},
                  {"name": CATEGORICAL_INPUT, "shape": [1, len(categorical)], "datatype": "BYTES",
                   "data": [row[name] for name in categorical]}]
        bodies["triton"].append(json.dumps({"inputs": packed}).encode())
        named = [{"name": name, "shape": [1, 1], "datatype": TRITON_DATATYPES[kind], "data": [row[name]]}
                 for name, kind in columns]
        bodies["triton-named"].append(json.dumps({"inputs": named}).encode())
        split = {"columns": [name for name, _ in columns], "data": [[row[name] for name, _ in columns]]}
        bodies["mlflow"].append(json.dumps({"dataframe_split": split}).encode())
    return bodies


# --- servers -------------------------------------------------------------------------------------


def nolog_config(config):
    """A copy of ``config`` with ``serving.inference_log.enabled`` False (the rest unchanged)."""
    settings = config.serving.inference_log.model_copy(update={"enabled": False})
    return config.model_copy(update={"serving": config.serving.model_copy(update={"inference_log": settings})})


def start_triton(work: Path, tracking_uri: str, config, log_dir: Path):
    """Export version 1 twice (``<model>``: the configured inference log, on; ``<model>_nolog``: off) and serve
    both from one real Triton server whose inference log goes to ``log_dir``; the caller stops it."""
    from mlflow.tracking import MlflowClient

    from include.serving.triton.client import TritonClient
    from include.serving.triton.repository import export_version
    from include.serving.triton.server import TritonServer, free_port

    if not config.serving.inference_log.enabled:
        raise RuntimeError(f"{config.name}: serving.inference_log.enabled is false; the bench compares it on and off")
    repo = work / "triton-repo"
    registry = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    export_version(registry, config.name, "1", config, repo)
    export_version(registry, config.name, "1", nolog_config(config), repo, triton_model=config.name + NOLOG_SUFFIX)
    server = TritonServer(log_path=work / "triton.log", inference_log=log_dir)
    server.start(repo, http_port=free_port(HOST))
    try:
        server.wait_ready(timeout=120)
        with TritonClient(server.url) as client:
            for name in (config.name, config.name + NOLOG_SUFFIX):
                client.load(name)
                client.wait_ready(name, timeout=120)
    except BaseException:
        server.stop()
        raise
    return server


def start_mlflow(work: Path, tracking_uri: str, config, workers: int, omp_threads: int) -> tuple[subprocess.Popen, int]:
    """``mlflow models serve --env-manager local`` on a free loopback port, in a process group of its own.

    ``omp_threads`` > 0 sets ``OMP_NUM_THREADS`` for the server: HistGradientBoosting predicts with
    OpenMP threads that spin, which on a busy 2-core machine turns a 10 ms request into a second.
    """
    from include.serving.triton.server import free_port

    port = free_port(HOST)
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    command = [str(mlflow_bin), "models", "serve", "-m", f"models:/{config.name}/1", "--env-manager", "local",
               "-h", HOST, "-p", str(port), "-w", str(workers)]
    # mlflow execs ``uvicorn`` from PATH: the main venv's bin goes first, as if it were activated.
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "MLFLOW_REGISTRY_URI": tracking_uri,
           "PATH": f"{mlflow_bin.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    if omp_threads > 0:
        env["OMP_NUM_THREADS"] = str(omp_threads)
    with open(work / "mlflow-serve.log", "ab") as log_file:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                   env=env, start_new_session=True)
    try:
        _wait_http(process, port, "/ping", work / "mlflow-serve.log", timeout=180)
    except BaseException:
        stop_process(process)
        raise
    return process, port


def _wait_http(process: subprocess.Popen, port: int, path: str, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mlflow models serve exited with code {process.returncode}; log {log_path}:\n"
                               f"{_tail(log_path)}")
        connection = http.client.HTTPConnection(HOST, port, timeout=2)
        try:
            connection.request("GET", path)
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            connection.close()
        time.sleep(0.25)
    raise RuntimeError(f"mlflow models serve not ready on port {port} after {timeout:.0f}s; log {log_path}:\n"
                       f"{_tail(log_path)}")


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.is_file() else ""


def stop_process(process: subprocess.Popen, timeout: float = 15) -> None:
    """SIGTERM the process group, SIGKILL it after ``timeout``."""
    if process.poll() is None:
        os.killpg(process.pid, 15)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait(timeout)


# --- client --------------------------------------------------------------------------------------


def _post(connection: http.client.HTTPConnection, path: str, body: bytes) -> bytes:
    connection.request("POST", path, body, {"Content-Type": "application/json"})
    response = connection.getresponse()
    data = response.read()
    if response.status != 200:
        raise RuntimeError(f"POST {path} answered {response.status}: {data[:300]!r}")
    return data


def _triton_probability(data: bytes) -> float:
    return float(json.loads(data)["outputs"][0]["data"][0])


def _mlflow_probability(data: bytes) -> float:
    return float(json.loads(data)["predictions"][0][1])  # predict_proba columns follow classes_ = [0, 1]


def check_agreement(targets: list[Target], rows: int) -> float:
    """Every target gives the same probability as the first for the first ``rows`` rows; returns the max |difference|."""
    worst = 0.0
    connections = [http.client.HTTPConnection(HOST, t.port, timeout=30) for t in targets]
    try:
        for i in range(min(rows, len(targets[0].bodies))):
            answers = [(_mlflow_probability if t.name == "mlflow" else _triton_probability)(_post(c, t.path, t.bodies[i]))
                       for t, c in zip(targets, connections, strict=True)]
            for target, answer in zip(targets[1:], answers[1:], strict=True):
                if abs(answer - answers[0]) > TOLERANCE:
                    raise RuntimeError(f"row {i}: {targets[0].name} answered {answers[0]!r}, {target.name} {answer!r} "
                                       f"(|difference| > {TOLERANCE})")
                worst = max(worst, abs(answer - answers[0]))
    finally:
        for connection in connections:
            connection.close()
    return worst


class LoadGenerator:
    """``concurrency`` keep-alive HTTP/1.1 connections driven by one thread with non-blocking sockets.

    Each connection has one request in flight: when its response is complete (headers, then
    ``Content-Length`` bytes) the next pre-built request goes out. No per-request parsing beyond
    that, no thread switches: the client costs little of the CPU the servers need.
    """

    def __init__(self, target: Target) -> None:
        head = f"POST {target.path} HTTP/1.1\r\nHost: {HOST}:{target.port}\r\nContent-Type: application/json\r\n"
        self.target = target
        self.requests = [f"{head}Content-Length: {len(b)}\r\n\r\n".encode() + b for b in target.bodies]

    def run(self, concurrency: int, seconds: float) -> list[int]:
        """Latencies (ns) of the requests sent within ``seconds``; the ones in flight at the end finish first."""
        selector = selectors.DefaultSelector()
        stop_at = time.perf_counter_ns() + int(seconds * 1e9)
        latencies: list[int] = []
        try:
            for k in range(concurrency):
                sock = socket.create_connection((HOST, self.target.port), timeout=30)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setblocking(False)
                selector.register(sock, selectors.EVENT_READ, data=self._send(sock, k * 7))
            deadline = time.monotonic() + seconds + 60
            while selector.get_map():
                events = selector.select(timeout=max(0.0, deadline - time.monotonic()))
                if not events:
                    raise RuntimeError(f"{self.target.name}: no response within 60 s of the end")
                for key, _ in events:
                    state = key.data
                    if not self._receive(key.fileobj, state):
                        continue
                    now = time.perf_counter_ns()
                    latencies.append(now - state["sent"])
                    if now >= stop_at:
                        selector.unregister(key.fileobj)
                        key.fileobj.close()
                    else:
                        selector.modify(key.fileobj, selectors.EVENT_READ, data=self._send(key.fileobj, state["row"] + 1))
        finally:
            for key in list(selector.get_map().values()):
                key.fileobj.close()
            selector.close()
        return latencies

    def _send(self, sock: socket.socket, row: int) -> dict:
        state = {"row": row, "sent": time.perf_counter_ns(), "buffer": bytearray(), "length": None}
        sock.sendall(self.requests[row % len(self.requests)])  # ~500 bytes: fits the socket buffer
        return state

    def _receive(self, sock: socket.socket, state: dict) -> bool:
        """Read what arrived; True once the whole response is in (a non-200 answer raises)."""
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError(f"{self.target.name} closed the connection")
        buffer = state["buffer"]
        buffer += chunk
        if state["length"] is None:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return False
            headers = bytes(buffer[:end]).lower()
            at = headers.find(b"\r\ncontent-length:")
            if at < 0:
                raise RuntimeError(f"{self.target.name} answered without Content-Length: {bytes(buffer[:300])!r}")
            line_end = headers.find(b"\r\n", at + 2)
            state["length"] = end + 4 + int(headers[at + 17 : line_end if line_end >= 0 else len(headers)])
            if not buffer.startswith(b"HTTP/1.1 200 "):
                raise RuntimeError(f"{self.target.name} answered {bytes(buffer[:300])!r}")
        return len(buffer) >= state["length"]


def run_level(target: Target, concurrency: int, warmup: float, duration: float) -> Result:
    """Drive ``target`` for ``warmup`` seconds (not recorded), then ``duration`` seconds measured: latencies,
    and the CPU seconds the server's process group and this client used meanwhile."""
    generator = LoadGenerator(target)
    warmed = len(generator.run(concurrency, warmup)) if warmup > 0 else 0
    result, _ = measure(generator, concurrency, duration)
    return replace(result, warmup_requests=warmed)


def measure(generator: LoadGenerator, concurrency: int, duration: float) -> tuple[Result, list[int]]:
    """One measured window of ``duration`` seconds: its result and its latencies (ns, sorted)."""
    target = generator.target
    server_before, client_before, start = process_group_cpu(target.pgid), time.process_time(), time.perf_counter_ns()
    latencies = sorted(generator.run(concurrency, duration))
    seconds = (time.perf_counter_ns() - start) / 1e9  # in-flight requests at the end finish inside it
    server_cpu, client_cpu = process_group_cpu(target.pgid) - server_before, time.process_time() - client_before
    if not latencies:
        raise RuntimeError(f"{target.name} at concurrency {concurrency}: no request completed in {duration}s")
    return Result(target.name, concurrency, len(latencies), seconds, _percentile(latencies, 50) / 1e6,
                  _percentile(latencies, 99) / 1e6, server_cpu, client_cpu), latencies


def _percentile(sorted_values: list[int], q: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values)) - 1))
    return float(sorted_values[index])


# --- the inference log: on vs off ------------------------------------------------------------------


@dataclass(frozen=True)
class LogLevel:
    """One concurrency level of the log comparison: each target over all its rounds, and per round pair."""

    concurrency: int
    on: Result  # ``triton``: all rounds together (requests and seconds summed, p50/p99 of all latencies)
    off: Result  # ``triton-nolog``, likewise
    round_ratios: list[float]  # throughput(on) / throughput(off) of each round
    round_p99_deltas_ms: list[float]  # p99(on) - p99(off) of each round
    stub_cpu: dict[str, tuple[float, float]]  # target -> its stub's (main thread, other threads) CPU seconds

    @property
    def ratio(self) -> float:
        return self.on.throughput / self.off.throughput

    @property
    def p99_delta_ms(self) -> float:
        return self.on.p99_ms - self.off.p99_ms

    def stub_us_per_request(self, target: str) -> tuple[float, float]:
        """(main thread, other threads) CPU-µs of ``target``'s stub per request it got (warm-up included)."""
        result = self.on if target == self.on.server else self.off
        sent = result.requests + result.warmup_requests
        main, other = self.stub_cpu[target]
        return main / sent * 1e6, other / sent * 1e6


def stub_cpu(pgid: int, marker: str) -> tuple[float, float]:
    """CPU seconds of the python backend stubs in process group ``pgid`` whose command line contains ``marker``
    (a model's folder): (their main threads, their other threads, exited ones included). Linux ``/proc``;
    raises RuntimeError when no such process is found."""
    tick = os.sysconf("SC_CLK_TCK")
    main = other = found = 0
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if marker not in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                continue
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) != pgid:
                continue
            thread = (proc / "task" / proc.name / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        total, first = int(fields[11]) + int(fields[12]), int(thread[11]) + int(thread[12])
        main, other, found = main + first, other + total - first, found + 1
    if not found:
        raise RuntimeError(f"no python backend stub of {marker!r} in process group {pgid}")
    return main / tick, other / tick


def _spread(values: list[float], spec: str) -> str:
    """``median (min .. max)`` of ``values``, each formatted with ``spec``."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    median = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    return f"{median:{spec}} ({ordered[0]:{spec}} .. {ordered[-1]:{spec}})"


def _merged(results: list[Result], latencies: list[list[int]], warmed: int) -> Result:
    merged = sorted(x for run in latencies for x in run)
    return Result(results[0].server, results[0].concurrency, sum(r.requests for r in results),
                  sum(r.seconds for r in results), _percentile(merged, 50) / 1e6, _percentile(merged, 99) / 1e6,
                  sum(r.server_cpu_s for r in results), sum(r.client_cpu_s for r in results), warmed)


def compare_logging(on: Target, off: Target, markers: dict[str, str], levels: list[int], rounds: int,
                    duration: float, warmup: float, flush_seconds: float) -> list[LogLevel]:
    """Per level: one warm-up each, then ``rounds`` rounds of ``duration`` s per target, alternating the order
    (on, off / off, on / ...); then ``flush_seconds`` (+0.5 s) idle so that the log writer's last flush of
    the level falls inside its stub CPU. ``markers``: target -> a string only its stub's command line holds."""
    out = []
    for level in levels:
        generators = {t.name: LoadGenerator(t) for t in (on, off)}
        before = {name: stub_cpu(on.pgid, marker) for name, marker in markers.items()}
        warmed = {name: len(g.run(level, warmup)) if warmup > 0 else 0 for name, g in generators.items()}
        runs: dict[str, list[tuple[Result, list[int]]]] = {on.name: [], off.name: []}
        for r in range(rounds):
            for target in (on, off) if r % 2 == 0 else (off, on):
                runs[target.name].append(measure(generators[target.name], level, duration))
        time.sleep(flush_seconds + 0.5)
        after = {name: stub_cpu(on.pgid, marker) for name, marker in markers.items()}
        aggregated = {name: _merged([r for r, _ in got], [lat for _, lat in got], warmed[name])
                      for name, got in runs.items()}
        pairs = list(zip(runs[on.name], runs[off.name], strict=True))
        result = LogLevel(
            level, aggregated[on.name], aggregated[off.name],
            [a.throughput / b.throughput for (a, _), (b, _) in pairs],
            [a.p99_ms - b.p99_ms for (a, _), (b, _) in pairs],
            {name: (after[name][0] - before[name][0], after[name][1] - before[name][1]) for name in markers})
        for name in (on.name, off.name):
            r = aggregated[name]
            main, other = result.stub_us_per_request(name)
            print(f"{name:>12} c={level:<3} {r.throughput:8.0f} req/s  p50 {r.p50_ms:7.2f} ms  p99 {r.p99_ms:7.2f} ms  "
                  f"server {r.server_us_per_request:6.0f} CPU-µs/request  stub {main:5.0f} + {other:4.0f} CPU-µs/request "
                  f"({rounds} rounds)", flush=True)
        print(f"{'log on/off':>12} c={level:<3} throughput {result.ratio:.3f} (rounds "
              f"{_spread(result.round_ratios, '.3f')})  p99 {result.p99_delta_ms:+.2f} ms "
              f"(rounds {_spread(result.round_p99_deltas_ms, '+.2f')})", flush=True)
        out.append(result)
    return out


@dataclass(frozen=True)
class LoggedRows:
    """What the inference log holds after the server stopped."""

    rows: int
    files: int
    distinct_ids: int
    roles: dict[str, int]
    versions: list[str]


def read_log(log_dir: Path) -> LoggedRows:
    """The Parquet files under ``log_dir`` (every partition), read back with pyarrow."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    files = sorted(p for p in log_dir.rglob("*.parquet") if not p.name.startswith("."))
    if not files:
        return LoggedRows(0, 0, 0, {}, [])
    tables = [pq.read_table(f, columns=["request_id", "model_version", "role"]) for f in files]
    ids = [t.column("request_id") for t in tables]
    roles: dict[str, int] = {}
    for t in tables:
        for item in pc.value_counts(t.column("role")).to_pylist():
            roles[item["values"]] = roles.get(item["values"], 0) + item["counts"]
    distinct = len({x for column in ids for x in column.to_pylist()})
    versions = sorted({v for t in tables for v in t.column("model_version").to_pylist()})
    return LoggedRows(sum(t.num_rows for t in tables), len(files), distinct, roles, versions)


# --- Python clients --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientResult:
    client: str
    rows_per_request: int
    requests: int
    seconds: float
    cpu_s: float

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_us_per_request(self) -> float:
        return self.cpu_s / self.requests * 1e6


def _project_client(url: str, config):
    """``frame -> probabilities`` through the project's client (its first call reads the model's layout)."""
    from include.serving.triton.client import TritonClient

    client = TritonClient(url)
    return lambda frame: client.infer(config.name, frame), client.close


def _nvidia_client(url: str, config):
    """``frame -> probabilities`` through ``tritonclient.http``: the same packed inputs, binary data both ways."""
    import numpy as np
    import tritonclient.http as httpclient

    from include.serving.triton.model import CATEGORICAL_INPUT, NUMERIC_INPUT
    from include.serving.triton.repository import OUTPUT_NAME, packed_columns, triton_inputs

    packed = packed_columns(triton_inputs(config))
    client = httpclient.InferenceServerClient(url.split("://", 1)[-1])
    outputs = [httpclient.InferRequestedOutput(OUTPUT_NAME, binary_data=True)]

    def infer(frame):
        numeric = np.ascontiguousarray(frame[packed[NUMERIC_INPUT]].to_numpy(dtype=np.float64))
        text = frame[packed[CATEGORICAL_INPUT]].to_numpy(dtype=object)
        inputs = [httpclient.InferInput(NUMERIC_INPUT, list(numeric.shape), "FP64"),
                  httpclient.InferInput(CATEGORICAL_INPUT, list(text.shape), "BYTES")]
        inputs[0].set_data_from_numpy(numeric, binary_data=True)
        inputs[1].set_data_from_numpy(text, binary_data=True)
        return client.infer(config.name, inputs, outputs=outputs).as_numpy(OUTPUT_NAME).reshape(-1)

    return infer, client.close


def _drive(infer, frames: list, seconds: float) -> tuple[int, float, float]:
    """Call ``infer`` on ``frames`` in turn for ``seconds``: (calls, wall seconds, CPU seconds of this process)."""
    calls, cpu, start = 0, time.process_time(), time.perf_counter()
    stop_at = start + seconds
    while True:
        infer(frames[calls % len(frames)])
        calls += 1
        if time.perf_counter() >= stop_at:
            break
    return calls, time.perf_counter() - start, time.process_time() - cpu


def compare_clients(url: str, config, rows, seconds: float, warmup: float) -> tuple[list[ClientResult], float, int]:
    """Both clients against the server at ``url``, single rows then :data:`BATCH_ROWS`-row requests; they must
    answer alike first. Returns the results, the max |difference| between their answers and the rows sent in all
    (warm-ups included: the model logs each)."""
    import numpy as np

    clients = {"project": _project_client(url, config), "tritonclient": _nvidia_client(url, config)}
    try:
        single = [rows.iloc[[i]] for i in range(len(rows))]
        batches = [rows.head(BATCH_ROWS)]
        answers = {name: np.concatenate([infer(f) for f in single[:50]]) for name, (infer, _) in clients.items()}
        sent = sum(len(a) for a in answers.values())
        worst = float(np.abs(answers["project"] - answers["tritonclient"]).max())
        if worst > 1e-12:
            raise RuntimeError(f"the clients answer differently for the same rows: max |difference| {worst:.3g}")
        results = []
        for frames in (single, batches):
            for name, (infer, _) in clients.items():
                warm_calls = _drive(infer, frames, warmup)[0]
                calls, wall, cpu = _drive(infer, frames, seconds)
                sent += (warm_calls + calls) * len(frames[0])
                result = ClientResult(name, len(frames[0]), calls, wall, cpu)
                print(f"{name:>12} {result.rows_per_request:>4} rows/request {result.throughput:8.0f} req/s  "
                      f"client {result.cpu_us_per_request:7.0f} CPU-µs/request", flush=True)
                results.append(result)
    finally:
        for _, close in clients.values():
            close()
    return results, worst, sent


def render_clients(results: list[ClientResult], seconds: float, worst: float, load: tuple[float, ...]) -> str:
    """The clients' Markdown section: the measurements, then tritonclient / project ratios."""
    from importlib.metadata import version

    by_key = {(r.client, r.rows_per_request): r for r in results}
    lines = [
        "## Python clients: the project's TritonClient vs tritonclient[http]",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M UTC} on {platform.node()} ({os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}), one run. One real Triton server serving the model exported as above; each client "
        f"sends the same rows as packed inputs with binary data from a pandas DataFrame, in a closed loop on one thread "
        f"({seconds:g} s measured per row after a warm-up). `project`: include.serving.triton.client "
        f"(httpx {version('httpx')}), which also checks each column's values against its input's datatype; "
        f"`tritonclient`: tritonclient.http {version('tritonclient')} (geventhttpclient), no such checks. "
        f"Client CPU is this process's (`time.process_time`) per request. Load average before the run: "
        f"{' / '.join(f'{x:.1f}' for x in load)}. The two answered alike (max |difference| {worst:.2g}).",
        "",
        "| rows / request | client | requests | req/s | client CPU-µs / request |",
        "|---:|---|---:|---:|---:|",
    ]
    for r in results:
        lines.append(f"| {r.rows_per_request} | {r.client} | {r.requests} | {r.throughput:,.0f} | "
                     f"{r.cpu_us_per_request:,.0f} |")
    lines += ["", "| rows / request | req/s tritonclient / project | client CPU per request tritonclient / project |",
              "|---:|---:|---:|"]
    for size in sorted({r.rows_per_request for r in results}):
        ours, theirs = by_key[("project", size)], by_key[("tritonclient", size)]
        lines.append(f"| {size} | {theirs.throughput / ours.throughput:.2f}x | "
                     f"{theirs.cpu_us_per_request / ours.cpu_us_per_request:.2f}x |")
    return "\n".join(lines) + "\n"


# --- report --------------------------------------------------------------------------------------


def render(results: list[Result], args: argparse.Namespace, max_diff: float, load: tuple[float, ...]) -> str:
    by_key = {(r.server, r.concurrency): r for r in results}
    lines = [
        "## Servers: Triton vs `mlflow models serve`",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M UTC} on {platform.node()} "
        f"({os.cpu_count()} CPUs, Python {platform.python_version()}), one run, client and servers on the "
        f"same machine. Single-row HTTP/JSON requests on loopback over N keep-alive connections, driven by one "
        f"client thread with non-blocking sockets; {args.warmup:g} s warm-up then {args.duration:g} s measured "
        f"per level per server. Model: `{MODEL}` (configured pipeline), version 1 of a throw-away registry. "
        f"Triton: python backend running the ONNX export with onnxruntime, dynamic batching, the inference log on "
        f"(as deployed: every row written as Parquet by the backend); `triton` sends the "
        f"packed inputs (two tensors), `triton-named` one tensor per feature (nine). "
        f"mlflow: `mlflow models serve --env-manager local -w {args.mlflow_workers}`"
        f"{f' with OMP_NUM_THREADS={args.mlflow_omp_threads}' if args.mlflow_omp_threads > 0 else ''}. "
        f"Load average before the run: {' / '.join(f'{x:.1f}' for x in load)} (1 / 5 / 15 min). "
        f"The targets agreed within {TOLERANCE:g} (max |difference| {max_diff:.2g}) before timing. "
        f"Server CPU is the server's whole process group (Triton: tritonserver and the python backend stub) over "
        f"the measured seconds; client CPU is the load generator's.",
        "",
        "| concurrency | server | requests | req/s | p50 ms | p99 ms | server CPU-µs / request | client cores |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(f"| {r.concurrency} | {r.server} | {r.requests} | {r.throughput:,.0f} | "
                     f"{r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.server_us_per_request:,.0f} | "
                     f"{r.client_cpu_s / r.seconds:.2f} |")
    pairs = [(a, b) for a, b in (("triton", "mlflow"), ("triton", "triton-named")) if a in args.servers and b in args.servers]
    if pairs:
        lines += ["", "| concurrency | " + " | ".join(f"throughput {a}/{b} | p99 {b}/{a}" for a, b in pairs) + " |",
                  "|---:|" + "---:|---:|" * len(pairs)]
        for level in args.concurrency:
            cells = []
            for a, b in pairs:
                first, second = by_key[(a, level)], by_key[(b, level)]
                cells += [f"{first.throughput / second.throughput:.1f}x", f"{second.p99_ms / first.p99_ms:.1f}x"]
            lines.append(f"| {level} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def render_logging(levels: list[LogLevel], args: argparse.Namespace, config, logged: LoggedRows, sent: int,
                   load: tuple[float, ...]) -> str:
    """The inference log's Markdown section: each target per level, the on/off ratios, the rows logged."""
    settings = config.serving.inference_log
    lines = [
        "## Triton: inference log on vs off",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M UTC} on {platform.node()} ({os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}), one run, client and server on the same machine. One Triton server serves "
        f"version 1 of `{MODEL}` twice: `{MODEL}` with the configured inference log "
        f"(`serving.inference_log`: on, flush_rows {settings.flush_rows}, flush_seconds {settings.flush_seconds:g}; "
        f"every row is written as Parquet by the python backend's writer thread) and `{MODEL}{NOLOG_SUFFIX}`, the same "
        f"export with the log off. Single-row HTTP/JSON requests (packed inputs) as above; per level one "
        f"{args.warmup:g} s warm-up each, then {args.log_rounds} rounds of {args.log_duration:g} s per model, "
        f"alternating which goes first (on, off / off, on / ...), then {settings.flush_seconds + 0.5:g} s idle for "
        f"the writer's last flush. req/s: all rounds' requests / their seconds; p50/p99: of all rounds' latencies "
        f"(client side). Server CPU: the whole tritonserver process group over the measured seconds (the other "
        f"model's idle stub and a flush that falls in the other model's round included); stub CPU: the model's own "
        f"python backend stub from the level's first warm-up to the end of the idle wait, per request it got, split "
        f"into its main thread (`execute`) and its other threads (the log writer; with the log off, the stub's own "
        f"helpers). Load average before the run: {' / '.join(f'{x:.1f}' for x in load)} (1 / 5 / 15 min).",
        "",
        "| concurrency | model | inference log | requests | req/s | p50 ms | p99 ms | server CPU-µs / request | "
        "stub main thread CPU-µs / request | stub other threads CPU-µs / request |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for level in levels:
        for result, state, model in ((level.on, "on", MODEL), (level.off, "off", MODEL + NOLOG_SUFFIX)):
            main, other = level.stub_us_per_request(result.server)
            lines.append(f"| {level.concurrency} | `{model}` | {state} | {result.requests} | {result.throughput:,.0f} | "
                         f"{result.p50_ms:.2f} | {result.p99_ms:.2f} | {result.server_us_per_request:,.0f} | "
                         f"{main:,.0f} | {other:,.0f} |")
    lines += ["", f"| concurrency | throughput on / off (target >= {THROUGHPUT_FLOOR:.2f}) | per round: median "
                  f"(min .. max) | p99 on - off, ms (target <= {P99_BUDGET_MS:g}) | per round: median (min .. max) | "
                  f"stub CPU-µs / request on - off | targets met |",
              "|---:|---:|---:|---:|---:|---:|---|"]
    for level in levels:
        met = level.ratio >= THROUGHPUT_FLOOR and level.p99_delta_ms <= P99_BUDGET_MS
        extra = sum(level.stub_us_per_request(level.on.server)) - sum(level.stub_us_per_request(level.off.server))
        lines.append(f"| {level.concurrency} | {level.ratio:.3f} | {_spread(level.round_ratios, '.3f')} | "
                     f"{level.p99_delta_ms:+.2f} | {_spread(level.round_p99_deltas_ms, '+.2f')} | {extra:+,.0f} | "
                     f"{'yes' if met else 'no'} |")
    roles = ", ".join(f"{role} {count}" for role, count in sorted(logged.roles.items()))
    lines += ["", f"Rows in the inference log after the server stopped: **{logged.rows:,}** in {logged.files} Parquet "
                  f"file(s) ({logged.distinct_ids:,} distinct request ids; roles: {roles}; versions: "
                  f"{', '.join(logged.versions)}), equal to the rows sent to `{MODEL}` during the whole run "
                  f"({sent:,}: warm-ups, agreement checks, the servers' table and the rounds above"
                  f"{', the clients' if args.clients > 0 else ''}); `{MODEL}{NOLOG_SUFFIX}` logged none."]
    return "\n".join(lines) + "\n"


def _levels(text: str) -> list[int]:
    levels = [int(x) for x in text.split(",") if x.strip()]
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError(f"--concurrency must be positive integers, e.g. 1,16 (got {text!r})")
    return levels


def _servers(text: str) -> list[str]:
    servers = [x.strip() for x in text.split(",") if x.strip()]
    unknown = sorted(set(servers) - set(SERVERS))
    if not servers or unknown:
        raise argparse.ArgumentTypeError(f"--servers takes some of {', '.join(SERVERS)} (got {text!r})")
    return [s for s in SERVERS if s in servers]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--concurrency", type=_levels, default=[1, 16], help="comma-separated levels (default 1,16)")
    parser.add_argument("--servers", type=_servers, default=list(SERVERS),
                        help=f"comma-separated targets (default {','.join(SERVERS)})")
    parser.add_argument("--duration", type=float, default=12.0,
                        help="measured seconds per level per server (0: no server measurement, e.g. with --clients)")
    parser.add_argument("--warmup", type=float, default=2.0, help="unrecorded seconds before each measurement")
    parser.add_argument("--mlflow-workers", type=int, default=1, help="uvicorn workers of mlflow models serve")
    parser.add_argument("--mlflow-omp-threads", type=int, default=1,
                        help="OMP_NUM_THREADS for mlflow models serve (0: leave unset; Triton runs onnxruntime on 1)")
    parser.add_argument("--clients", type=float, default=0.0, metavar="SECONDS",
                        help="also compare the project's Triton client with tritonclient[http] for SECONDS per row "
                             "(0: skip; needs tritonclient importable)")
    parser.add_argument("--log-rounds", type=int, default=10,
                        help="rounds of the inference log on/off comparison per level (0: skip it)")
    parser.add_argument("--log-duration", type=float, default=3.0,
                        help="measured seconds per round per model of the inference log comparison")
    parser.add_argument("--output", type=Path, default=RESULTS, help="Markdown results file")
    args = parser.parse_args(argv)

    config = _config()
    load = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="bench-online-"))
    log_dir = work / "inference-log"
    triton_server = mlflow_process = None
    log_levels: list[LogLevel] = []
    client_rows = 0
    try:
        tracking_uri, rows = register_model(work, config)
        bodies = encode_rows(rows, config)
        triton_server = start_triton(work, tracking_uri, config, log_dir)
        triton_path = f"/v2/models/{config.name}/infer"
        targets = [Target(name, triton_server.http_port, triton_path, bodies[name], triton_server.pid)
                   for name in ("triton", "triton-named")]
        nolog = Target("triton-nolog", triton_server.http_port, f"/v2/models/{config.name}{NOLOG_SUFFIX}/infer",
                       bodies["triton"], triton_server.pid)
        targets.insert(1, nolog)
        if "mlflow" in args.servers:
            mlflow_process, mlflow_port = start_mlflow(work, tracking_uri, config, args.mlflow_workers,
                                                       args.mlflow_omp_threads)
            targets.append(Target("mlflow", mlflow_port, "/invocations", bodies["mlflow"], mlflow_process.pid))
        max_diff = check_agreement(targets, rows=50)
        checked = min(50, len(rows))
        print(f"{', '.join(t.name for t in targets)} agree on {checked} rows (max |difference| {max_diff:.2g})",
              flush=True)
        results = []
        for level in args.concurrency if args.duration > 0 else ():
            for target in (t for t in targets if t.name in args.servers):
                result = run_level(target, level, args.warmup, args.duration)
                print(f"{result.server:>12} c={level:<3} {result.throughput:8.0f} req/s  p50 {result.p50_ms:7.2f} ms  "
                      f"p99 {result.p99_ms:7.2f} ms  server {result.server_us_per_request:6.0f} CPU-µs/request  "
                      f"client {result.client_cpu_s / result.seconds:.2f} cores", flush=True)
                results.append(result)
        if args.log_rounds > 0:
            repo = triton_server.model_repository
            markers = {"triton": f"{repo / config.name}/", nolog.name: f"{repo / (config.name + NOLOG_SUFFIX)}/"}
            log_levels = compare_logging(targets[0], nolog, markers, args.concurrency, args.log_rounds,
                                         args.log_duration, args.warmup, config.serving.inference_log.flush_seconds)
        if args.clients > 0:
            client_results, client_worst, client_rows = compare_clients(triton_server.url, config, rows, args.clients,
                                                                        args.warmup)
        triton_server.stop()  # each stub's finalize writes the rows it still buffers
        logged = read_log(log_dir)
    finally:
        if mlflow_process is not None:
            stop_process(mlflow_process)
        if triton_server is not None:
            triton_server.stop()
        shutil.rmtree(work, ignore_errors=True)
    sent = (checked * sum(t.name in LOGGED for t in targets) + client_rows
            + sum(r.requests + r.warmup_requests for r in results if r.server in LOGGED)
            + sum(level.on.requests + level.on.warmup_requests for level in log_levels))
    print(f"inference log: {logged.rows} rows in {logged.files} file(s), {logged.distinct_ids} distinct request ids, "
          f"roles {logged.roles}; rows sent to {config.name}: {sent}", flush=True)
    if logged.rows != sent or logged.distinct_ids != sent:
        raise RuntimeError(f"the inference log holds {logged.rows} rows ({logged.distinct_ids} distinct request ids) "
                           f"but {sent} rows were sent to {config.name} (and none should come from "
                           f"{config.name}{NOLOG_SUFFIX})")
    sections = [render(results, args, max_diff, load)] if results else []
    if log_levels:
        sections.append(render_logging(log_levels, args, config, logged, sent, load))
    if args.clients > 0:
        sections.append(render_clients(client_results, args.clients, client_worst, load))
    for section in sections:
        write_results(args.output, HEADING, section)
        print(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
