"""Batch scoring with Spark: one date's rows scored by one fixed model version, written idempotently.

:func:`score_date` reads the input (a Parquet file or folder), keeps the rows whose event
timestamp falls on ``date`` (UTC), scores them and writes

* the scored rows to ``<output_uri>/date=<date>/`` with the columns ``<id_column>`` (string),
  ``<timestamp_column>``, ``prediction`` (positive-class probability), ``model_name`` and
  ``model_version``. Features are not repeated here: they are in the input and in the log;
  copying them would double what the job writes.
* the same predictions, with their features, to the inference log
  (``<log>/model=<name>/source=batch/date=<date>/hour=HH/``, see :mod:`include.monitoring.inference_log`),
  where hourly monitoring reads them.

Two scorers (``scorer=``):

* ``onnx`` (the default when the version converts and the output is a local or mounted folder): the
  version's ONNX export, the artifact Triton serves, converted and parity-checked on the driver and run
  with onnxruntime in ``mapInArrow`` (:mod:`include.batch.worker`). One pass, with Spark scheduling the
  tasks: each task reads its share of the input, scores it and writes it to the log and to the output
  with pyarrow, into staging folders that replace the date's folders once the job has succeeded and
  the row counts agree.
* ``spark_udf`` (the fallback for a version that does not convert): ``mlflow.pyfunc.spark_udf``;
  Spark writes the log with a dynamic partition overwrite, and the output is then derived from the
  log's partitions of that date (a columnar read of five narrow columns).

Who reads the input for the ONNX scorer (``reader=``): by default (``pyarrow``, for a local or
mounted input) the driver reads the Parquet footers, drops the row groups whose timestamp statistics
rule the date out, and splits the rest into tasks like Spark's reader would (at least the default
parallelism, at most ``spark.sql.files.maxPartitionBytes`` each); each task reads its row groups with
pyarrow. With ``spark`` (and for an input with a scheme such as ``s3a://``) Spark reads the input and
ships the rows to the Python workers. Both give the same rows; the pyarrow reader skips the
JVM-to-Python transfer, which costs about as much CPU as the model, and Spark's row-wise Parquet
writer is not used at all (``bench/batch_scoring.py`` measures each).

Both are idempotent: a run replaces its date's output and log partitions and nothing else, so
re-running a date replaces that date and leaves every other date alone; hour partitions of the
date that a re-run no longer produces are removed. Because a run owns exactly the rows of its date,
runs for different dates never touch each other's hours. Row counts are collected while writing
(``DataFrame.observe``; the written files' metadata), with no extra pass. A run owns its date: runs of one
model and date must not overlap (the DAG serialises them).

The inference log root is a local folder (``inference_log_root``, else the
:func:`include.monitoring.inference_log.log_root` default), like the readers of the log expect. With the ONNX
scorer the Python workers write the log and the output, so on a cluster both must be folders they share
with the driver (a mount of the object store, NFS); an ``output_uri`` with a scheme such as ``s3a://``
is written by Spark, with the ``spark_udf`` scorer.

The caller pins the model version: ``version`` is a version number, never an alias such as
``@champion``. The DAG resolves ``@champion`` to a version once, at the start of its run, so a
promotion in the middle of a run cannot mix two models. Everything else (the features, the id and
timestamp columns, the input and output, the Spark master and configuration) comes from the model's
configuration, so the same job runs on ``local[*]`` (embedded default), ``spark://``, ``k8s://`` or YARN.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from datetime import date as Date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from include.config import resolve_uri
from include.files import replace_dir
from include.monitoring import inference_log

if TYPE_CHECKING:
    import pyarrow as pa
    from mlflow.models import Model
    from pyspark.sql import Column, DataFrame, SparkSession

    from include.batch import worker
    from include.batch.worker import OnnxScorer, Sink
    from include.config import ModelConfig

log = logging.getLogger(__name__)

PREDICTION = inference_log.PREDICTION
APP_NAME = "modelops-batch-scoring"

# Defaults for sessions this module creates; the caller's spark_conf wins.
DEFAULT_SPARK_CONF: dict[str, str] = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    # Python workers outlive their task, so mlflow and scikit-learn are imported once per worker.
    "spark.python.worker.reuse": "true",
    # Big Arrow batches: mlflow's schema enforcement and the pipeline's pandas work cost per batch
    # (10k, Spark's default, measured ~10% slower end to end).
    "spark.sql.execution.arrow.maxRecordsPerBatch": "100000",
    # Spark splits the input by bytes per core, capped by this: with a high cap each core gets
    # about one task, and each task loads the model once.
    "spark.sql.files.maxPartitionBytes": "1g",
}
# Applied to any session for the duration of a job (and restored after), because results depend on them.
JOB_SQL_CONF: dict[str, str] = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    # pandas writes TIMESTAMP(NANOS), which Spark otherwise refuses to read; it comes back as a long.
    "spark.sql.legacy.parquet.nanosAsLong": "true",
}

SCORERS = ("auto", "onnx", "spark_udf")
ONNX, SPARK_UDF = "onnx", "spark_udf"
READERS = ("auto", "pyarrow", "spark")
PYARROW, SPARK = "pyarrow", "spark"

_DAY_MICROS = 86_400_000_000


def spark_session(master: str = "local[*]", conf: Mapping[str, str] | None = None) -> SparkSession:
    """A SparkSession on ``master`` with :data:`DEFAULT_SPARK_CONF` overlaid by ``conf``; Spark and py4j log at WARN.

    On a local master the Python workers run this interpreter, so they see the same packages:
    ``PYSPARK_PYTHON`` (which PySpark reads) is set to it unless it is already set. On a cluster the
    executors' interpreter is ``spark.pyspark.python`` from ``conf`` when given (as with spark-submit; a
    driver started from Python otherwise reads only ``PYSPARK_PYTHON``, default ``python3``).
    """
    from pyspark.sql import SparkSession

    settings = {**DEFAULT_SPARK_CONF, **(conf or {})}
    if master.startswith("local"):
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.master(master).appName(APP_NAME)
    for key, value in settings.items():
        builder = builder.config(key, str(value))
    python = settings.get("spark.pyspark.python")
    before = os.environ.get("PYSPARK_PYTHON")
    if python:  # read once, when the SparkContext starts; put back after so it does not leak to later sessions
        os.environ["PYSPARK_PYTHON"] = str(python)
    try:
        spark = builder.getOrCreate()
    finally:
        if python and before is None:
            os.environ.pop("PYSPARK_PYTHON", None)
        elif python:
            os.environ["PYSPARK_PYTHON"] = before
    spark.sparkContext.setLogLevel("WARN")
    logging.getLogger("py4j").setLevel(logging.WARNING)  # its INFO lines narrate every gateway call
    return spark


def score_date(
    config: ModelConfig,
    version: str | int,
    date: str,
    *,
    inference_log_root: str | None = None,
    spark: SparkSession | None = None,
    scorer: str = "auto",
    reader: str = "auto",
) -> dict[str, Any]:
    """Score the rows of the model's ``batch.input_uri`` dated ``date`` (UTC) with one version; safe to re-run.

    ``config`` is the model's configuration: its name, features, id and timestamp columns, and its
    ``batch`` section (``input_uri``, ``output_uri``, ``spark_master``, ``spark_conf``; URIs resolved with
    :func:`include.config.resolve_uri`). ``version`` is the registered version to score with,
    ``models:/<name>/<version>``: the caller resolves an alias to a version once, before the run, and the
    job never reads an alias. ``date`` is ``YYYY-MM-DD``. Rows of other dates in the input are not scored
    (their count is returned as ``rows_other_dates``). A ``spark`` session, when given, is used and left
    running; otherwise one is created on ``batch.spark_master`` with ``batch.spark_conf`` and stopped at the end.
    ``inference_log_root`` is the inference log's folder (default: :func:`include.monitoring.inference_log.log_root`).

    ``reader`` picks who reads the input for the ONNX scorer: ``"pyarrow"`` (the workers; a local or
    mounted input only), ``"spark"``, or ``"auto"`` (default: pyarrow where the input is local).
    ``scorer`` picks how rows are scored: ``"onnx"`` runs the version's ONNX export (see
    :mod:`include.batch.worker`), ``"spark_udf"`` runs ``mlflow.pyfunc.spark_udf``, and ``"auto"``
    (default) uses ONNX when the version converts with parity and ``output_uri`` is a local or mounted
    folder, else falls back to ``spark_udf`` with a warning.

    Returns ``rows_in`` (rows of the date), ``rows_out`` (rows written), ``rows_other_dates``,
    ``hours`` (hour partitions written to the log), ``seconds`` (wall time, session start
    included), ``model_wait_seconds`` (how long the session waited for the model to be downloaded
    and converted), ``scorer`` (``"onnx"`` or ``"spark_udf"``), ``reader`` (``"pyarrow"`` or
    ``"spark"``), ``model_uri``, ``output_uri`` and ``inference_log_uri`` (the date's folders).

    Raises ValueError, before any work, for a version that is not a number, a bad date, scorer or reader,
    a model without a ``batch`` section, or a scorer or reader that cannot reach the input or output.
    """
    day = _parse_date(date)
    version = _check_version(version)
    batch = config.batch
    if batch is None:
        raise ValueError(f"model {config.name!r} has no batch: section to score with")
    if scorer not in SCORERS:
        raise ValueError(f"scorer {scorer!r}: expected one of {', '.join(SCORERS)}")
    if reader not in READERS:
        raise ValueError(f"reader {reader!r}: expected one of {', '.join(READERS)}")
    input_uri, output_uri = resolve_uri(batch.input_uri), resolve_uri(batch.output_uri).rstrip("/")
    if reader == PYARROW and _local_folder(input_uri) is None:
        raise ValueError(f"reader 'pyarrow': input_uri {input_uri!r} is not a local or mounted path (use reader='spark')")
    if scorer != SPARK_UDF and _local_folder(output_uri) is None:
        if scorer == ONNX:
            raise ValueError(
                f"scorer 'onnx': output_uri {output_uri!r} is not a local or mounted folder, which the ONNX "
                "scorer's workers write to (use scorer='spark_udf' to have Spark write it)"
            )
        log.warning("output_uri %s is not a local or mounted folder: scoring with spark_udf", output_uri)
        scorer = SPARK_UDF
    job = _Job(config, version, input_uri, output_uri, _log_uri(config.name, inference_log_root), day)
    started = time.monotonic()
    session = spark
    with tempfile.TemporaryDirectory(prefix="modelops-model-") as scratch:
        try:
            # Fetching the model, importing mlflow and converting to ONNX overlap the JVM's start-up.
            with ThreadPoolExecutor(max_workers=1) as pool:
                download = pool.submit(_prepare_model, job, scratch, scorer)
                session = session or spark_session(batch.spark_master, batch.spark_conf)
                session_ready = time.monotonic()
                local_model, onnx = download.result()
            model_wait = time.monotonic() - session_ready
            log.info("Spark session ready after %.1fs, the model %.1fs later", session_ready - started, model_wait)
            with _sql_conf(session, JOB_SQL_CONF):
                stats = _score(
                    session, job, local_model=local_model, onnx=onnx,
                    reader=SPARK if reader == SPARK or _local_folder(input_uri) is None else PYARROW,
                )
        finally:
            if spark is None and session is not None:
                session.stop()
    stats["seconds"] = round(time.monotonic() - started, 3)
    stats["model_wait_seconds"] = round(model_wait, 3)
    log.info(
        "scored %d rows of %s with %s (scorer %s) in %.1fs (%d hour partitions in the inference log)",
        stats["rows_out"],
        date,
        job.model_uri,
        stats["scorer"],
        stats["seconds"],
        stats["hours"],
    )
    return stats


@dataclass(frozen=True)
class _Job:
    """One run: the input it reads, the version it scores with, the day, and where it writes (output, log)."""

    config: ModelConfig
    version: str
    input_uri: str
    output_uri: str
    log_uri: str
    day: Date

    @property
    def model_name(self) -> str:
        return self.config.name

    @property
    def model_uri(self) -> str:
        return f"models:/{self.config.name}/{self.version}"

    @property
    def features(self) -> list[str]:
        return list(self.config.dataset.feature_names)

    @property
    def id_column(self) -> str:
        return self.config.dataset.id_column

    @property
    def timestamp_column(self) -> str:
        return self.config.dataset.timestamp_column


def _score(
    spark: SparkSession, job: _Job, *, local_model: str, onnx: OnnxScorer | None, reader: str
) -> dict[str, Any]:
    """Score ``job`` with ``onnx`` (None: ``spark_udf`` on ``local_model``), the input read by ``reader``;
    returns the counts and where they went (see :func:`score_date`)."""
    from functools import partial

    from pyspark.sql import Observation
    from pyspark.sql import functions as F

    from include.batch import worker

    day, input_uri = job.day, job.input_uri
    if onnx is not None and reader == PYARROW:
        plan = _plan_reads(spark, job)
        splits = spark.createDataFrame(spark.sparkContext.parallelize(plan.splits, max(len(plan.splits), 1)),
                                       "paths array<string>, row_groups array<array<int>>")
        rows_out, rows_logged, hours = _score_onnx(
            lambda sink: splits.mapInArrow(
                partial(worker.read_score_and_write, onnx, sink, plan.reader, PREDICTION), "rows long"),
            None, job,
        )
        rows_in, rows_total = rows_out, plan.rows
    else:
        raw = spark.read.parquet(input_uri)
        _check_columns(raw.columns, job)
        if onnx is not None:
            for name in _numeric_inputs(onnx):
                _check_numeric(name, raw.schema[name].dataType, input_uri)
        start = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 1_000_000
        in_day = F.unix_micros("ts").between(start, start + _DAY_MICROS - 1)
        seen = Observation("input")
        rows = raw.select(
            F.col(job.id_column).cast("string").alias("request_id"),
            _as_timestamp(raw, job.timestamp_column).alias("ts"),
            *job.features,
        ).observe(seen, F.count(F.lit(1)).alias("rows"), F.sum(in_day.cast("long")).alias("rows_in_day"))
        rows = rows.where(in_day)
        if onnx is not None:
            rows_out, rows_logged, hours = _score_onnx(
                lambda sink: rows.mapInArrow(partial(worker.score_and_write, onnx, sink, PREDICTION), "rows long"),
                lambda: int(seen.get["rows_in_day"] or 0), job,
            )
        else:
            rows_out, rows_logged, hours = _score_spark_udf(spark, rows, local_model, job)
        rows_in, rows_total = int(seen.get["rows_in_day"] or 0), int(seen.get["rows"])
    if rows_out != rows_in or rows_logged != rows_in:
        raise RuntimeError(f"row counts disagree for {day}: {rows_in} rows in, {rows_logged} logged, {rows_out} written")
    return {
        "rows_in": rows_in,
        "rows_out": rows_out,
        "rows_other_dates": rows_total - rows_in,
        "hours": len(hours),
        "scorer": ONNX if onnx is not None else SPARK_UDF,
        "reader": reader if onnx is not None else SPARK,
        "model_uri": job.model_uri,
        "output_uri": f"{job.output_uri}/date={day.isoformat()}",
        "inference_log_uri": f"{job.log_uri}/date={day.isoformat()}",
    }


def _score_onnx(
    tasks: Callable[[Sink], DataFrame], rows_in: Callable[[], int] | None, job: _Job
) -> tuple[int, int, list[str]]:
    """Run the ONNX tasks (``tasks(sink)``: one ``rows`` row per task) and publish what they wrote.

    The tasks write the log and the output to staging folders beside the date's partitions
    (``_staging-*``, which readers of the partitioned folders skip); those replace the date's folders only
    after the Spark job has succeeded and the row counts agree: what the tasks reported, what the staged
    files hold and, where Spark read the input, the date's rows it saw (``rows_in``). Returns rows
    written, rows logged and the hours logged.
    """
    import shutil
    import uuid

    from include.batch import worker

    worker.pickle_by_value()
    day, log_uri = job.day, job.log_uri
    partition = f"date={day.isoformat()}"
    staging = f"_staging-{uuid.uuid4().hex}"
    output_root = _local_folder(job.output_uri)
    log_staged, out_staged = Path(log_uri) / staging / partition, output_root / staging / partition
    sink = worker.Sink(str(log_staged), str(out_staged), job.model_name, job.version,
                       tuple(job.features), job.id_column, job.timestamp_column)
    try:
        reported = sum(task["rows"] for task in tasks(sink).collect())
        expected = reported if rows_in is None else rows_in()
        log_files = sorted(log_staged.glob("hour=*/*.parquet"))
        rows_logged = sum(_parquet_rows(f) for f in log_files)
        rows_out = sum(_parquet_rows(f) for f in out_staged.glob("*.parquet"))
        if not expected == reported == rows_logged == rows_out:
            raise RuntimeError(f"row counts disagree for {day}, nothing published: {expected} rows in, the tasks "
                               f"scored {reported}, {rows_logged} staged in the log, {rows_out} in the output")
        if out_staged.exists():
            (out_staged / "_SUCCESS").touch()
        replace_dir(log_staged, Path(log_uri) / partition)
        replace_dir(out_staged, output_root / partition)
    finally:
        shutil.rmtree(Path(log_uri) / staging, ignore_errors=True)
        shutil.rmtree(output_root / staging, ignore_errors=True)
    return rows_out, rows_logged, sorted({f.parent.name.removeprefix("hour=") for f in log_files})


@dataclass(frozen=True)
class _ReadPlan:
    """What the workers read: ``splits`` (one per task: files and their row groups), how, and the input's rows."""

    splits: list[tuple[list[str], list[list[int]]]]
    reader: worker.Reader
    rows: int


def _plan_reads(spark: SparkSession, job: _Job) -> _ReadPlan:
    """Check the input's schema and split the row groups that may hold the day's rows into tasks.

    The input is read with the model's declared column types (``dataset.column_types``):
    a Parquet file or a folder of them, names starting with ``_`` or ``.`` skipped, zero-row files
    skipped, and a file whose columns or types disagree refused with its name
    (:func:`include.data.dataset.inspect_dataset`). Row groups whose timestamp statistics
    rule the day out are not read. As with Spark's reader there are at least as many tasks as the
    default parallelism, and none reads more than ``spark.sql.files.maxPartitionBytes``; each task
    reads a contiguous run of row groups.
    """
    import math

    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.fs

    from include.batch import worker
    from include.data.dataset import ARROW_TYPES, inspect_dataset

    day, timestamp_column, input_uri = job.day, job.timestamp_column, job.input_uri
    column_types = job.config.dataset.column_types
    # The input as the model's config declares it: zero-row files skipped, a file whose columns or types
    # disagree refused by name, undeclared columns not read (:mod:`include.data.dataset`).
    declared = {c: column_types[c] for c in (job.id_column, timestamp_column, *job.features)}
    input_plan = inspect_dataset(input_uri, declared, extra="ignore")
    if input_plan.partition_keys and set(input_plan.partition_keys) & set(declared):
        raise ValueError(f"input {input_uri}: partition folders {list(input_plan.partition_keys)} hold declared "
                         "columns, which the pyarrow reader does not read: use reader='spark'")
    feature_types = pa.schema([pa.field(f, ARROW_TYPES[declared[f]]) for f in job.features])
    reader = worker.Reader(job.id_column, timestamp_column, feature_types, datetime(day.year, day.month, day.day, tzinfo=UTC))

    parquet, local = ds.ParquetFileFormat(), pyarrow.fs.LocalFileSystem()
    pieces = []  # (path, row group, rows, bytes) of the row groups that may hold rows of the day
    for file in input_plan.files:
        fragment = parquet.make_fragment(str(file.path), local)
        day_filter = reader.day_filter(fragment.physical_schema.field(timestamp_column).type)
        for piece in fragment.split_by_row_group(day_filter):
            for group in piece.row_groups:
                pieces.append((piece.path, group.id, group.num_rows, group.total_byte_size))
    max_bytes = spark._jsparkSession.sessionState().conf().filesMaxPartitionBytes()
    tasks = min(len(pieces), max(spark.sparkContext.defaultParallelism,
                                 math.ceil(sum(p[3] for p in pieces) / max_bytes)))
    splits: list[tuple[list[str], list[list[int]]]] = []
    per_task, taken = sum(p[2] for p in pieces) / max(tasks, 1), 0
    for path, group, rows, _ in pieces:
        if not splits or (taken >= per_task * len(splits) and len(splits) < tasks):
            splits.append(([], []))
        paths, groups = splits[-1]
        if not paths or paths[-1] != path:
            paths.append(path)
            groups.append([])
        groups[-1].append(group)
        taken += rows
    return _ReadPlan(splits, reader, input_plan.rows)


def _check_columns(available: Sequence[str], job: _Job) -> None:
    missing = [c for c in [job.id_column, job.timestamp_column, *job.features] if c not in available]
    if missing:
        raise ValueError(f"input {job.input_uri} is missing column(s): {', '.join(missing)}")


def _plain(kind: pa.DataType) -> pa.DataType:
    """The type a feature is logged with: dictionary-encoded (pandas categoricals) and large strings as strings."""
    import pyarrow as pa

    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return pa.string() if pa.types.is_large_string(kind) else kind


def _numeric_inputs(onnx: OnnxScorer) -> list[str]:
    return [name for name, is_string in onnx.inputs if not is_string]


def _check_numeric(name: str, kind: Any, input_uri: str) -> None:
    """Refuse, before any work, a numeric feature the input holds as text (the ONNX inputs are float64).

    ``kind`` is a Spark or a pyarrow type."""
    import pyarrow as pa
    from pyspark.sql.types import BooleanType, NumericType

    if isinstance(kind, pa.DataType):
        numeric = pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind) \
            or pa.types.is_decimal(kind)
        shown = str(kind)
    else:
        numeric, shown = isinstance(kind, NumericType | BooleanType), kind.simpleString()
    if not numeric:
        raise ValueError(f"input {input_uri}: feature {name!r} is {shown}, the model expects a number")


def _local_folder(uri: str) -> Path | None:
    """``uri`` as a local path when it is one (a plain path or ``file:``), else None (``s3a://``, ``hdfs://``…)."""
    from urllib.parse import unquote, urlparse

    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if not parsed.scheme or len(parsed.scheme) == 1:  # no scheme (or a Windows drive letter)
        return Path(uri)
    return None


def _parquet_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


def _score_spark_udf(
    spark: SparkSession, rows: DataFrame, local_model: str, job: _Job
) -> tuple[int, int, list[str]]:
    """Score with ``mlflow.pyfunc.spark_udf``, write the log (Spark), then derive the output from the log."""
    from pyspark.sql import Observation
    from pyspark.sql import functions as F

    day, log_uri = job.day, job.log_uri
    prediction = _positive_class(spark, local_model, job.model_uri, job.features)
    scored = rows.select(
        "request_id",
        "ts",
        F.lit(job.model_name).alias("model_name"),
        F.lit(job.version).alias("model_version"),
        *job.features,
        prediction.alias(PREDICTION),
        F.lit(day.isoformat()).alias("date"),
        F.lpad(F.hour("ts").cast("string"), 2, "0").alias("hour"),
    )
    logged = Observation("logged")
    scored = scored.observe(logged, F.count(F.lit(1)).alias("rows"), F.collect_set("hour").alias("hours"))
    _overwrite_partitions(scored, log_uri, ["date", "hour"])
    hours = sorted(logged.get["hours"] or [])
    day_log_uri = f"{log_uri}/date={day.isoformat()}"
    _remove_partitions(spark, day_log_uri, "hour", keep=set(hours))
    rows_out = _write_output(spark, day_log_uri, job, bool(hours))
    return rows_out, int(logged.get["rows"]), hours


def _prepare_model(job: _Job, scratch: str, scorer: str) -> tuple[str, OnnxScorer | None]:
    """Copy the version's artifacts to ``scratch`` on the driver and, unless ``scorer`` says otherwise,
    convert it to ONNX; returns the local folder and the ONNX scorer (None: score with spark_udf)."""
    import mlflow.artifacts

    model_uri = job.model_uri
    local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=scratch)
    if scorer == SPARK_UDF:
        import mlflow.pyfunc  # noqa: F401  (imported here so the import overlaps the session start)

        return local, None
    from include.batch import worker
    from include.serving.onnx import ExportError

    try:
        onnx = worker.prepare(local, model_uri, job.config)
    except ExportError as exc:
        if scorer == ONNX:
            raise
        log.warning("%s has no usable ONNX export (%s): scoring with mlflow.pyfunc.spark_udf", model_uri, exc)
        return local, None
    log.info("%s: ONNX export ready, parity max |diff| %.3g on %d rows", model_uri, onnx.parity["max_abs_diff"],
             onnx.parity["rows"])
    return local, onnx


def _positive_class(spark: SparkSession, local_model: str, model_uri: str, features: list[str]) -> Column:
    """The model's probability for class 1, via ``mlflow.pyfunc.spark_udf`` in this Python environment.

    The pyfunc returns ``predict_proba``'s two columns. ``result_type="double"`` makes the UDF
    return the leftmost one, P(class 0), as a plain float column; P(class 1) is one minus it
    (equal to ``predict_proba[:, 1]`` to within a rounding of 1.0). Asking for
    ``array<double>`` instead would make mlflow build a Python list per row, which measured
    about 1.3 s of CPU per million rows.
    """
    import mlflow.pyfunc
    from pyspark.sql import functions as F

    predict = mlflow.pyfunc.spark_udf(spark, local_model, result_type="double", env_manager="local")
    _check_binary_output(predict.metadata, model_uri)
    return F.lit(1.0) - predict(F.struct(*features))


def _check_binary_output(metadata: Model, model_uri: str) -> None:
    """Refuse models whose logged output is not two class probabilities per row."""
    schema = metadata.get_output_schema()
    shapes = [tuple(spec.shape) for spec in schema.inputs if hasattr(spec, "shape")] if schema else []
    if shapes and shapes[0][-1:] != (2,):
        raise ValueError(f"{model_uri}: expected predict_proba output with 2 columns, the signature says {shapes[0]}")


def _write_output(spark: SparkSession, day_log_uri: str, job: _Job, has_rows: bool) -> int:
    """Derive the date's output partition from the rows just logged; returns the rows written."""
    from pyspark.sql import Observation
    from pyspark.sql import functions as F

    day = job.day.isoformat()
    if not has_rows:
        _remove_partitions(spark, job.output_uri, "date", keep=set(), only={day})
        return 0
    written = Observation("output")
    out = spark.read.parquet(day_log_uri).select(
        F.col("request_id").alias(job.id_column),
        F.col("ts").alias(job.timestamp_column),
        PREDICTION,
        "model_name",
        "model_version",
        F.lit(day).alias("date"),
    )
    _overwrite_partitions(out.observe(written, F.count(F.lit(1)).alias("rows")), job.output_uri, ["date"])
    return int(written.get["rows"])


def _overwrite_partitions(df: DataFrame, uri: str, partition_by: list[str]) -> None:
    """Write ``df`` replacing only the partitions it contains (dynamic partition overwrite)."""
    df.write.mode("overwrite").option("partitionOverwriteMode", "dynamic").partitionBy(*partition_by).parquet(uri)


def _remove_partitions(
    spark: SparkSession, uri: str, key: str, *, keep: set[str], only: set[str] | None = None
) -> None:
    """Delete ``<uri>/<key>=<value>`` folders whose value is not in ``keep`` (restricted to ``only``)."""
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    fs = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    if not fs.exists(path):
        return
    for status in fs.listStatus(path):
        name = status.getPath().getName()
        value = name.removeprefix(f"{key}=")
        if status.isDirectory() and name.startswith(f"{key}=") and value not in keep:
            if only is None or value in only:
                log.info("removing stale partition %s", status.getPath().toString())
                fs.delete(status.getPath(), True)


def _as_timestamp(df: DataFrame, column: str) -> Column:
    """``column`` as a Spark timestamp; a long is nanoseconds since the epoch (pandas' Parquet timestamps)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import LongType, TimestampNTZType, TimestampType

    kind = df.schema[column].dataType
    if isinstance(kind, TimestampType):
        return F.col(column)
    if isinstance(kind, TimestampNTZType):
        return F.col(column).cast("timestamp")  # taken as UTC: the job runs with a UTC session time zone
    if isinstance(kind, LongType):
        quoted = f"`{column.replace('`', '``')}`"
        return F.expr(f"timestamp_micros(({quoted} - pmod({quoted}, 1000)) div 1000)")
    raise ValueError(f"timestamp column {column!r} has type {kind.simpleString()}; expected a timestamp")


@contextmanager
def _sql_conf(spark: SparkSession, settings: Mapping[str, str]) -> Iterator[None]:
    """Set runtime SQL settings for the duration of the block, then put the previous values back."""
    previous = {key: spark.conf.get(key, None) for key in settings}
    for key, value in settings.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


def _log_uri(model_name: str, root: str | None) -> str:
    """Where this model's batch predictions go: ``<root>/model=<name>/source=batch``."""
    return str(inference_log.source_path(model_name, "batch", root))


def _parse_date(value: str) -> Date:
    try:
        return Date.fromisoformat(value)
    except (TypeError, ValueError):
        raise ValueError(f"date {value!r} is not a YYYY-MM-DD date") from None


def _check_version(version: str | int) -> str:
    """``version`` as the registry's version string; a version is a positive number, never an alias."""
    text = str(version).strip()
    if not text.isascii() or not text.isdigit() or int(text) < 1:
        raise ValueError(
            f"version {version!r}: expected a registered version number "
            "(resolve an alias such as @champion to its version before scoring)"
        )
    return str(int(text))
