"""Online serving benchmark: Triton (python backend, ONNX, dynamic batching) against ``mlflow models serve``.

One run, one machine, one client, side by side:

1. (not timed) train the configured model with ``include.train.train`` on generated data into a
   throw-away SQLite MLflow store and register it; export that version into a Triton model
   repository (``include.triton.repository.export_version``);
2. start a real Triton server on free loopback ports (``include.triton.server.TritonServer``) and
   ``mlflow models serve --env-manager local`` on a free loopback port, from the main venv;
3. check that both answer the same probability (within 1e-5) for the same rows, one row per request;
4. for each concurrency level, for each server: ``--warmup`` seconds not recorded, then
   ``--duration`` seconds of single-row HTTP/JSON requests from that many client threads (one
   keep-alive connection each), cycling through the same pre-encoded rows for both servers.

Throughput is completed requests / measured seconds; latency is per request, client side (send to
last byte read). Results go to stdout and, as Markdown, to ``bench/results/online_serving.md``.

    bash scripts/setup_triton.sh
    PYTHONPATH=. .venv/bin/python bench/online_serving.py --concurrency 1,16
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODEL = "credit_approval"
HOST = "127.0.0.1"
RESULTS = ROOT / "bench" / "results" / "online_serving.md"
TOLERANCE = 1e-5
TRITON_DATATYPES = {"int": "INT64", "float": "FP64", "bool": "BOOL", "category": "BYTES", "string": "BYTES"}


@dataclass(frozen=True)
class Target:
    """One server as the client sees it: where to POST, and one pre-encoded body per row."""

    name: str
    port: int
    path: str
    bodies: list[bytes]


@dataclass(frozen=True)
class Result:
    server: str
    concurrency: int
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds


def _config():
    from include.config import load_model_config

    return load_model_config(ROOT / "config" / "models" / f"{MODEL}.yaml")


# --- model ---------------------------------------------------------------------------------------


def register_model(work: Path, config) -> tuple[str, object]:
    """Train like the Triton tests do and register one version; returns (tracking URI, feature rows)."""
    from threadpoolctl import threadpool_limits

    from include import tracking
    from include.datagen import generate_batch
    from include.dataset import write_dataset
    from include.train import features_and_target, holdout_split, train

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


def encode_rows(frame, config) -> tuple[list[bytes], list[bytes]]:
    """The same rows as single-row request bodies: KServe v2 JSON for Triton, ``dataframe_split`` for mlflow."""
    columns = [(c.name, c.type) for c in config.dataset.features]
    triton, mlflow = [], []
    for record in frame.to_dict("records"):
        row = [_python_value(record[name], kind) for name, kind in columns]
        inputs = [{"name": name, "shape": [1, 1], "datatype": TRITON_DATATYPES[kind], "data": [value]}
                  for (name, kind), value in zip(columns, row, strict=True)]
        triton.append(json.dumps({"inputs": inputs}).encode())
        split = {"columns": [name for name, _ in columns], "data": [row]}
        mlflow.append(json.dumps({"dataframe_split": split}).encode())
    return triton, mlflow


# --- servers -------------------------------------------------------------------------------------


def start_triton(work: Path, tracking_uri: str, config):
    """Export version 1 and serve it from a real Triton server; the caller stops it."""
    from mlflow.tracking import MlflowClient

    from include.triton.client import TritonClient
    from include.triton.repository import export_version
    from include.triton.server import TritonServer, free_port

    repo = work / "triton-repo"
    export_version(MlflowClient(tracking_uri, registry_uri=tracking_uri), config.name, "1", config, repo)
    server = TritonServer(log_path=work / "triton.log")
    server.start(repo, http_port=free_port(HOST))
    try:
        server.wait_ready(timeout=120)
        with TritonClient(server.url) as client:
            client.load(config.name)
            client.wait_ready(config.name, timeout=120)
    except BaseException:
        server.stop()
        raise
    return server


def start_mlflow(work: Path, tracking_uri: str, config, workers: int, omp_threads: int) -> tuple[subprocess.Popen, int]:
    """``mlflow models serve --env-manager local`` on a free loopback port, in a process group of its own.

    ``omp_threads`` > 0 sets ``OMP_NUM_THREADS`` for the server: HistGradientBoosting predicts with
    OpenMP threads that spin, which on a busy 2-core machine turns a 10 ms request into a second.
    """
    from include.triton.server import free_port

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


def check_agreement(triton: Target, mlflow: Target, rows: int) -> float:
    """Both servers give the same probability for the first ``rows`` rows; returns the max |difference|."""
    worst = 0.0
    a = http.client.HTTPConnection(HOST, triton.port, timeout=30)
    b = http.client.HTTPConnection(HOST, mlflow.port, timeout=30)
    try:
        for i in range(min(rows, len(triton.bodies))):
            p_triton = _triton_probability(_post(a, triton.path, triton.bodies[i]))
            p_mlflow = _mlflow_probability(_post(b, mlflow.path, mlflow.bodies[i]))
            if abs(p_triton - p_mlflow) > TOLERANCE:
                raise RuntimeError(f"row {i}: Triton answered {p_triton!r}, mlflow {p_mlflow!r} "
                                   f"(|difference| > {TOLERANCE})")
            worst = max(worst, abs(p_triton - p_mlflow))
    finally:
        a.close()
        b.close()
    return worst


def _worker(target: Target, offset: int, stop_at: float, record_from: float, latencies: list[int],
            errors: list[str]) -> None:
    connection = http.client.HTTPConnection(HOST, target.port, timeout=30)
    bodies, n = target.bodies, len(target.bodies)
    i = offset
    try:
        while True:
            start = time.perf_counter_ns()
            if start >= stop_at:
                return
            _post(connection, target.path, bodies[i % n])
            if start >= record_from:
                latencies.append(time.perf_counter_ns() - start)
            i += 1
    except Exception as exc:  # reported by the caller: a failed request invalidates the level
        errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        connection.close()


def run_level(target: Target, concurrency: int, warmup: float, duration: float) -> Result:
    """``concurrency`` threads hammer ``target`` for ``warmup`` + ``duration`` seconds; the latter is measured."""
    start = time.perf_counter_ns()
    record_from = start + int(warmup * 1e9)
    stop_at = record_from + int(duration * 1e9)
    per_thread: list[list[int]] = [[] for _ in range(concurrency)]
    errors: list[str] = []
    threads = [threading.Thread(target=_worker, args=(target, k * 7, stop_at, record_from, per_thread[k], errors),
                                daemon=True) for k in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=warmup + duration + 60)
    if any(thread.is_alive() for thread in threads) or errors:
        raise RuntimeError(f"{target.name} at concurrency {concurrency}: "
                           f"{errors[0] if errors else 'client threads did not finish'}")
    latencies = sorted(x for chunk in per_thread for x in chunk)
    if not latencies:
        raise RuntimeError(f"{target.name} at concurrency {concurrency}: no request completed in {duration}s")
    seconds = (time.perf_counter_ns() - record_from) / 1e9  # in-flight requests at stop_at finish inside it
    return Result(target.name, concurrency, len(latencies), seconds,
                  _percentile(latencies, 50) / 1e6, _percentile(latencies, 99) / 1e6)


def _percentile(sorted_values: list[int], q: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values)) - 1))
    return float(sorted_values[index])


# --- report --------------------------------------------------------------------------------------


def render(results: list[Result], args: argparse.Namespace, max_diff: float, load: tuple[float, ...]) -> str:
    by_key = {(r.server, r.concurrency): r for r in results}
    lines = [
        "# Online serving: Triton vs `mlflow models serve`",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M UTC} on {platform.node()} "
        f"({os.cpu_count()} CPUs, Python {platform.python_version()}), one run, client and servers on the "
        f"same machine. Single-row HTTP/JSON requests on loopback, one keep-alive connection per client thread; "
        f"{args.warmup:g} s warm-up then {args.duration:g} s measured per level per server. "
        f"Model: `{MODEL}` (configured pipeline), version 1 of a throw-away registry. "
        f"Triton: python backend running the ONNX export with onnxruntime, dynamic batching. "
        f"mlflow: `mlflow models serve --env-manager local -w {args.mlflow_workers}`"
        f"{f' with OMP_NUM_THREADS={args.mlflow_omp_threads}' if args.mlflow_omp_threads > 0 else ''}. "
        f"Load average before the run: {' / '.join(f'{x:.1f}' for x in load)} (1 / 5 / 15 min). "
        f"Both servers agreed within {TOLERANCE:g} (max |difference| {max_diff:.2g}) before timing.",
        "",
        "| concurrency | server | requests | req/s | p50 ms | p99 ms |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(f"| {r.concurrency} | {r.server} | {r.requests} | {r.throughput:,.0f} | "
                     f"{r.p50_ms:.2f} | {r.p99_ms:.2f} |")
    lines += ["", "| concurrency | throughput Triton/mlflow | p99 mlflow/Triton |", "|---:|---:|---:|"]
    for level in args.concurrency:
        triton, mlflow = by_key[("triton", level)], by_key[("mlflow", level)]
        lines.append(f"| {level} | {triton.throughput / mlflow.throughput:.1f}x | "
                     f"{mlflow.p99_ms / triton.p99_ms:.1f}x |")
    return "\n".join(lines) + "\n"


def _levels(text: str) -> list[int]:
    levels = [int(x) for x in text.split(",") if x.strip()]
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError(f"--concurrency must be positive integers, e.g. 1,16 (got {text!r})")
    return levels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--concurrency", type=_levels, default=[1, 16], help="comma-separated levels (default 1,16)")
    parser.add_argument("--duration", type=float, default=12.0, help="measured seconds per level per server")
    parser.add_argument("--warmup", type=float, default=2.0, help="unrecorded seconds before each measurement")
    parser.add_argument("--mlflow-workers", type=int, default=1, help="uvicorn workers of mlflow models serve")
    parser.add_argument("--mlflow-omp-threads", type=int, default=1,
                        help="OMP_NUM_THREADS for mlflow models serve (0: leave unset; Triton runs onnxruntime on 1)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="Markdown results file")
    args = parser.parse_args(argv)

    config = _config()
    load = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="bench-online-"))
    triton_server = mlflow_process = None
    try:
        tracking_uri, rows = register_model(work, config)
        triton_bodies, mlflow_bodies = encode_rows(rows, config)
        triton_server = start_triton(work, tracking_uri, config)
        mlflow_process, mlflow_port = start_mlflow(work, tracking_uri, config, args.mlflow_workers, args.mlflow_omp_threads)
        targets = [
            Target("triton", triton_server.http_port, f"/v2/models/{config.name}/infer", triton_bodies),
            Target("mlflow", mlflow_port, "/invocations", mlflow_bodies),
        ]
        max_diff = check_agreement(*targets, rows=50)
        print(f"servers agree on 50 rows (max |difference| {max_diff:.2g})", flush=True)
        results = []
        for level in args.concurrency:
            for target in targets:
                result = run_level(target, level, args.warmup, args.duration)
                print(f"{result.server:>6} c={level:<3} {result.throughput:8.0f} req/s  "
                      f"p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms", flush=True)
                results.append(result)
    finally:
        if mlflow_process is not None:
            stop_process(mlflow_process)
        if triton_server is not None:
            triton_server.stop()
        shutil.rmtree(work, ignore_errors=True)
    report = render(results, args, max_diff, load)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
