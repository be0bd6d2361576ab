"""Batch scoring benchmark: the project's Spark scoring job against a plain Spark read+write of the same rows.

One run, one machine, side by side:

1. (not timed) generate ``--rows`` credit applications dated one day into a Parquet file, train
   the configured model on a small sample and register it in a throw-away MLflow store;
2. the I/O floor, in a fresh process: a SparkSession (the job's own ``spark_session`` defaults)
   reads the file and writes it back as Parquet; cold (session start to stop), then warm (the
   same copy again on a running session);
3. the job as deployed (``include.batch.scoring.score_date`` with its defaults: the version's
   ONNX export under ``mapInArrow``, the workers reading their row groups with pyarrow and writing
   with pyarrow), in a fresh process: cold (it starts and stops its own session), then warm (on a
   running session whose Python workers already ran it);
4. the same job with Spark reading the input and shipping the rows to the Python workers
   (``reader="spark"``), likewise;
5. the same job with ``scorer="spark_udf"`` (``mlflow.pyfunc.spark_udf``, the fallback and the
   baseline), likewise.

Prints rows/s and the share of the floor's speed, and records them in
``bench/results/batch_scoring.md`` (one section per row count and master; a rerun replaces it).
The CPU used by other processes during the cold runs is recorded too: on a shared machine it
tells whether the numbers can be trusted.

    PYTHONPATH=. .venv/bin/python bench/batch_scoring.py --rows 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _common import machine_busy, write_results  # noqa: E402  (bench/ is the script's folder)

MODEL = "credit_approval"
DATE = "2026-01-01"
RESULTS = ROOT / "bench" / "results" / "batch_scoring.md"


def _config():
    from include.config import load_model_config

    return load_model_config(ROOT / "config" / "models" / f"{MODEL}.yaml")


def generate(path: Path, rows: int, row_group_size: int) -> None:
    """``rows`` applications dated ``DATE``, written in chunks so memory stays flat."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from include.demo.datagen import generate_batch

    chunk = 1_000_000
    writer = None
    try:
        for i, start in enumerate(range(0, rows, chunk)):
            df = generate_batch(min(chunk, rows - start), seed=100 + i, start=f"{DATE}T00:00:00Z", hours=24)
            table = pa.Table.from_pandas(df, preserve_index=False)
            writer = writer or pq.ParquetWriter(path, table.schema)
            writer.write_table(table, row_group_size=row_group_size)
    finally:
        if writer is not None:
            writer.close()


def register_model(tracking_uri: str, artifacts: Path) -> str:
    """Train the configured pipeline like ``include.training.train`` does and register it; returns the version."""
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from mlflow.tracking import MlflowClient

    from include.demo.datagen import generate_batch
    from include.training.train import build_estimator, features_and_target, sklearn_types_to_trust

    config = _config()
    x, y = features_and_target(generate_batch(20_000, seed=1), config)
    model = build_estimator(config).fit(x, y)
    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri)
    experiment = client.create_experiment("bench", artifact_location=artifacts.as_uri())
    with mlflow.start_run(experiment_id=experiment) as run:
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(x.head(5), model.predict_proba(x.head(5))),
            input_example=x.head(5),
            pyfunc_predict_fn="predict_proba",
            skops_trusted_types=sklearn_types_to_trust(model),
        )
    client.create_registered_model(MODEL)
    return client.create_model_version(MODEL, source=info.model_uri, run_id=run.info.run_id).version


# --- the measured runs, each in its own process ----------------------------------------------


def run_floor(args: argparse.Namespace) -> dict:
    """Plain read + write, in the same kind of session the job gets; cold, then warm (same JVM)."""
    from include.batch.scoring import spark_session

    def copy(spark) -> None:
        spark.conf.set("spark.sql.legacy.parquet.nanosAsLong", "true")  # pandas' timestamps, as the job reads them
        spark.read.parquet(str(args.input)).write.mode("overwrite").parquet(str(args.work / "floor_out"))

    usage = _Usage()
    started = time.monotonic()
    spark = spark_session(args.master, _spark_conf(args))
    copy(spark)
    spark.stop()
    cold, cold_usage = time.monotonic() - started, usage.read()
    spark = spark_session(args.master, _spark_conf(args))
    try:
        copy(spark)  # warms up the new session
        started = time.monotonic()
        copy(spark)
        warm = time.monotonic() - started
    finally:
        spark.stop()
    return {"cold": cold, "warm": warm, **cold_usage}


def run_job(args: argparse.Namespace) -> dict:
    """``score_date`` with the scorer and reader of ``args._run``: cold (it starts and stops its own session),
    then warm."""
    _, scorer, reader = JOBS[args._run]
    from include.batch.scoring import score_date, spark_session

    config = _config()
    batch = config.batch.model_copy(update={"input_uri": str(args.input), "output_uri": str(args.work / "scored"),
                                            "spark_master": args.master, "spark_conf": _spark_conf(args)})
    config = config.model_copy(update={"batch": batch})
    kwargs = dict(inference_log_root=str(args.work / "inference_log"), scorer=scorer, reader=reader)
    usage = _Usage()
    cold = score_date(config, args.version, DATE, **kwargs)
    cold_usage = usage.read()
    spark = spark_session(args.master, _spark_conf(args))
    try:
        score_date(config, args.version, DATE, **kwargs, spark=spark)  # starts the Python workers of the new session
        warm = score_date(config, args.version, DATE, **kwargs, spark=spark)
    finally:
        spark.stop()
    for run in (cold, warm):
        if (run["scorer"], run["reader"]) != (scorer, reader):
            raise RuntimeError(f"asked for {scorer} + {reader}, the job used {run['scorer']} + {run['reader']}")
    return {"cold": cold["seconds"], "warm": warm["seconds"], "rows_out": cold["rows_out"],
            "model_wait": cold["model_wait_seconds"], **cold_usage}


class _Usage:
    """CPU seconds used by this process tree (JVM and Python workers included) and by everything else.

    The tree is sampled twice a second: Python workers exit when their session stops, and their
    CPU would otherwise be lost (or counted as another process's).
    """

    def __init__(self) -> None:
        self.machine = machine_busy()
        self.start = _tree_cpu(os.getpid())
        self.seen = dict(self.start)
        self.done = threading.Event()
        self.sampler = threading.Thread(target=self._sample, daemon=True)
        self.sampler.start()

    def _sample(self) -> None:
        while not self.done.wait(0.5):
            self.seen.update(_tree_cpu(os.getpid()))

    def read(self) -> dict[str, float]:
        self.done.set()
        self.sampler.join()
        self.seen.update(_tree_cpu(os.getpid()))
        machine = machine_busy() - self.machine
        own = sum(cpu - self.start.get(pid, 0.0) for pid, cpu in self.seen.items())
        return {"cpu_own": own, "cpu_other": max(0.0, machine - own)} if machine else {}


def _tree_cpu(root: int) -> dict[int, float]:
    """CPU seconds (user + system) of ``root`` and each of its live descendants, by pid (Linux)."""
    parents: dict[int, int] = {}
    used: dict[int, float] = {}
    for entry in Path("/proc").iterdir() if Path("/proc/stat").exists() else []:
        try:
            stat = (entry / "stat").read_text() if entry.name.isdigit() else ""
        except OSError:
            continue
        if stat:
            fields = stat[stat.rindex(")") + 2 :].split()
            parents[int(entry.name)] = int(fields[1])
            used[int(entry.name)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return {pid: cpu for pid, cpu in used.items() if _descends(pid, root, parents)}


def _descends(pid: int, root: int, parents: dict[int, int]) -> bool:
    while pid not in (root, 0, 1):
        pid = parents.get(pid, 0)
    return pid == root


def _spark_conf(args: argparse.Namespace) -> dict[str, str]:
    return {"spark.driver.memory": args.driver_memory, **dict(kv.split("=", 1) for kv in args.conf)}


# --- orchestration ---------------------------------------------------------------------------


def _measure(kind: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--_run", kind, *_passthrough(args)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"{kind} run failed with exit code {done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _passthrough(args: argparse.Namespace) -> list[str]:
    out = ["--rows", str(args.rows), "--master", args.master, "--_work", str(args.work)]
    out += ["--driver-memory", args.driver_memory, "--_version", str(args.version)]
    return out + [f"--conf={kv}" for kv in args.conf]


# kind: (label, scorer, reader)
JOBS = {
    "onnx": ("scoring job (default): ONNX scorer, the workers read with pyarrow", "onnx", "pyarrow"),
    "onnx_spark_reader": ("scoring job: ONNX scorer, Spark reads", "onnx", "spark"),
    "spark_udf": ("scoring job: `spark_udf` scorer, Spark reads", "spark_udf", "spark"),
}


def _combine(rounds: list[dict[str, dict]], kind: str) -> dict:
    """Medians over the rounds, and the share of the floor's speed per round (the floor of the same round)."""
    runs = [r[kind] for r in rounds]
    combined = {key: statistics.median(run[key] for run in runs) for key in runs[0] if key != "rows_out"}
    for timing in ("cold", "warm"):
        combined[f"{timing}_shares"] = sorted(r["floor"][timing] / r[kind][timing] for r in rounds)
    return combined


def _share(run: dict, timing: str) -> str:
    """The median share of the floor, with the range when there were several rounds."""
    shares = run[f"{timing}_shares"]
    text = f"{statistics.median(shares):.0%}"
    return text if f"{shares[0]:.0%}" == f"{shares[-1]:.0%}" else f"{text} ({shares[0]:.0%}–{shares[-1]:.0%})"


def _markdown(args: argparse.Namespace, floor: dict, jobs: dict[str, dict]) -> str:
    rows = args.rows
    lines = [
        f"## {rows:,} rows, master `{args.master}`" + (f", {args.repeat} rounds" if args.repeat > 1 else ""),
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} CPUs; one Parquet file "
        f"(row groups of {args.row_group_size:,} rows); model `{MODEL}` ({_config().model.estimator}).",
        "",
        "| run | cold s | cold rows/s | cold vs floor | warm s | warm rows/s | warm vs floor |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    runs = [("I/O floor: Spark read + write", floor)] + [(JOBS[kind][0], run) for kind, run in jobs.items()]
    for name, run in runs:
        lines.append(
            f"| {name} | {run['cold']:.1f} | {rows / run['cold']:,.0f} | {_share(run, 'cold')} "
            f"| {run['warm']:.1f} | {rows / run['warm']:,.0f} | {_share(run, 'warm')} |"
        )
    lines += [
        "",
        "Cold: a fresh process and SparkSession, start to stop (for the job: model download, ONNX conversion and "
        "parity check included). Warm: the same work again on a running session (JVM warmed up; Python workers "
        "with their imports and model already loaded). Each run is its own process, one after the other; "
        f"{args.repeat} round(s) of the floor then each job. Times are medians over the rounds; a share of the floor "
        "is the median of each round's job against that round's floor, with the range over the rounds.",
    ]
    if all("cpu_other" in run for _, run in runs):
        used = "; ".join(f"{kind} {run['cpu_own']:.0f} own / {run['cpu_other']:.0f} other"
                         for kind, run in (("floor", floor), *jobs.items()))
        lines.append(
            f"CPU seconds during the cold runs: {used} (other > a few seconds means a busy machine: rerun)."
        )
    waits = "; ".join(f"{kind} {run['model_wait']:.1f} s" for kind, run in jobs.items() if "model_wait" in run)
    if waits:
        lines.append(f"Cold runs: the started session then waited for the model (download, load, conversion): {waits}.")
    command = f"python bench/batch_scoring.py --rows {rows} --master '{args.master}' --repeat {args.repeat}"
    if args.jobs != ",".join(JOBS):
        command += f" --jobs {args.jobs}"
    lines += ["", f"Command: `{command}" + "".join(f" --conf {c}" for c in args.conf) + "`", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--master", default="local[*]")
    parser.add_argument("--row-group-size", type=int, default=128 * 1024, help="rows per Parquet row group")
    parser.add_argument("--driver-memory", default="4g")
    parser.add_argument("--conf", action="append", default=[], help="extra Spark setting KEY=VALUE (repeatable)")
    parser.add_argument("--scratch", type=Path, help="where to create the scratch folder (default: system temp)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument("--jobs", default=",".join(JOBS), help="jobs to run, comma-separated (default: all)")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of floor + jobs; medians are reported")
    parser.add_argument("--_run", choices=["floor", *JOBS], help=argparse.SUPPRESS)
    parser.add_argument("--_work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--_version", default="1", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.work = args._work or Path(tempfile.mkdtemp(prefix="modelops-bench-", dir=args.scratch))
    args.version = args._version
    args.input = args.work / "input.parquet"
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{args.work / 'mlflow.db'}"

    if args._run:
        result = (run_floor if args._run == "floor" else run_job)(args)
        print(json.dumps(result))
        return

    try:
        started = time.monotonic()
        generate(args.input, args.rows, args.row_group_size)
        args.version = register_model(os.environ["MLFLOW_TRACKING_URI"], args.work / "artifacts")
        print(f"prepared {args.rows:,} rows and model version {args.version} in {time.monotonic() - started:.0f}s")
        kinds = [kind for kind in JOBS if kind in args.jobs.split(",")]
        rounds = []  # each round: the floor, then each job, one after the other (a slow spell hits a round)
        for _ in range(args.repeat):
            rounds.append({kind: _measure(kind, args) for kind in ["floor", *kinds]})
            for kind in kinds:
                if rounds[-1][kind]["rows_out"] != args.rows:
                    raise SystemExit(f"the {kind} job wrote {rounds[-1][kind]['rows_out']} rows, expected {args.rows}")
        floor, jobs = _combine(rounds, "floor"), {kind: _combine(rounds, kind) for kind in kinds}
        for name, run in (("floor", floor), *jobs.items()):
            for kind in ("cold", "warm"):
                print(f"{name:9} {kind}: {run[kind]:6.1f}s {args.rows / run[kind]:12,.0f} rows/s "
                      f"{_share(run, kind)} of the floor")
            if "cpu_own" in run:  # Linux only
                print(f"{name:9} cold CPU seconds: {run['cpu_own']:.0f} own, {run['cpu_other']:.0f} other processes")
        write_results(RESULTS, "# Batch scoring benchmark", _markdown(args, floor, jobs))
        print(f"wrote {RESULTS.relative_to(ROOT)}")
    finally:
        if args.keep:
            print(f"kept {args.work}")
        else:
            shutil.rmtree(args.work, ignore_errors=True)


if __name__ == "__main__":
    main()
