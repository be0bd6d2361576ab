"""The batch job's ONNX scorer: a version's ONNX export run with onnxruntime inside Spark's Python workers.

It is the artifact Triton serves online, made by the same code (:func:`include.serving.onnx.convert_to_onnx`)
and checked for parity the same way (:func:`include.serving.onnx.check_export`) before any row is scored.
Compared with ``mlflow.pyfunc.spark_udf`` it skips what costs the most per row and per worker: importing
mlflow, pandas and scikit-learn in every Python worker, mlflow's per-batch schema enforcement, pandas
conversions, and scikit-learn's ``predict_proba`` (onnxruntime's tree ensembles run ~1.4x faster here).

:func:`prepare` runs on the driver: it loads the scikit-learn model, converts and checks it, and returns an
:class:`OnnxScorer` (the ONNX bytes plus the input spec). The rest runs in the workers under
``DataFrame.mapInArrow`` and needs only numpy, pyarrow and onnxruntime there (this module is pickled by value,
so the project need not be installed on a cluster's workers):

* :func:`read_score_and_write` (the default): each task reads its row groups of the input with pyarrow
  (:class:`Reader`), scores them and writes them, so no row crosses between the JVM and Python;
* :func:`score_and_write`: the same for rows Spark read and shipped to the worker;
* :func:`score_batches`: scoring alone.

Both writers write the inference log (``pyarrow.dataset.write_dataset``, hive-partitioned by hour) and the
output (one Parquet file per task) with pyarrow (:class:`Sink`), and yield one row per task.
The onnxruntime session is created once per Python worker and version and kept for the worker's life
(``spark.python.worker.reuse``).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

    from include.config import ModelConfig

log = logging.getLogger(__name__)

# Where the workers keep their sessions: a module in sys.modules outlives the tasks of a reused worker,
# whereas this module's globals are rebuilt with every task (it is pickled by value).
_SESSIONS_MODULE = "_modelops_onnx_sessions"
_NANOS_PER_TICK = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
_HOUR = "hour"  # the log's partition column: written as the folder name, not into the files
_HOUR_NAMES = [f"{hour:02d}" for hour in range(24)]


@dataclass(frozen=True)
class OnnxScorer:
    """What the workers need: the ONNX model and how to feed it; ``key`` identifies the version's export."""

    key: str
    onnx_model: bytes
    inputs: tuple[tuple[str, bool], ...]  # (feature, is_string) in the model's input order
    onnx_output: str
    positive_column: int
    unknown_category: str
    parity: dict[str, float]


def prepare(local_model: str, model_uri: str, config: ModelConfig) -> OnnxScorer:
    """Convert the downloaded model to ONNX and check parity with scikit-learn; raises ExportError if it cannot.

    Parity is checked like the Triton export's (:func:`include.serving.onnx.parity_frame`): on the
    logged input example, and on the same rows with each numeric feature missing and each categorical one
    missing or unseen, with the deployment's tolerance. The workers feed a null category as
    :data:`include.serving.onnx.MISSING_CATEGORY`, the string the export reads as missing.
    """
    import mlflow.sklearn
    from mlflow.models import Model

    from include.serving import onnx

    try:
        model = mlflow.sklearn.load_model(local_model)
    except Exception as exc:  # not an sklearn flavour, or a loader error: the pyfunc path may still work
        raise onnx.ExportError(f"{model_uri}: not loadable as a scikit-learn model: {exc}") from exc
    example = Model.load(local_model).load_input_example(local_model)
    if example is None:
        raise onnx.ExportError(f"{model_uri}: the logged model has no input example to check parity on")
    onnx_model = onnx.convert_to_onnx(model, config)
    parity = onnx.check_export(onnx_model, model, onnx.parity_frame(example, config), config)
    spec = onnx.input_spec(config)
    digest = hashlib.sha256(onnx_model).hexdigest()[:16]
    return OnnxScorer(
        key=f"{model_uri}#{digest}",
        onnx_model=onnx_model,
        inputs=tuple((c["name"], c["type"] in onnx.STRING_TYPES) for c in spec),
        onnx_output=onnx.ONNX_PROBABILITIES,
        positive_column=onnx.positive_column(model, config),
        unknown_category=onnx.MISSING_CATEGORY,  # what _feed puts in place of a null category
        parity=parity,
    )


def pickle_by_value() -> None:
    """Ship this module's code with the scoring function instead of importing it on the workers."""
    import sys

    from pyspark import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])


@dataclass(frozen=True)
class Sink:
    """Where and how a task writes its scored rows, with pyarrow, under names that depend only on the task:

    * the inference log, ``<log_folder>/hour=HH/part-<task>.parquet``: ``request_id``, ``ts``,
      ``model_name``, ``model_version``, the features, the prediction;
    * the output, ``<output_folder>/part-<task>.parquet``: ``<id_column>``, ``<timestamp_column>``,
      the prediction, ``model_name``, ``model_version``.
    """

    log_folder: str
    output_folder: str
    model_name: str
    model_version: str
    features: tuple[str, ...]
    id_column: str
    timestamp_column: str
    row_group_rows: int = 131_072


def score_batches(scorer: OnnxScorer, prediction: str, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Each batch with a ``prediction`` column (the positive class's probability) appended."""
    import pyarrow as pa

    session = _session(scorer)
    for batch in batches:
        if batch.num_rows:
            yield batch.append_column(prediction, pa.array(_predict(session, scorer, batch), type=pa.float64()))


def score_and_write(
    scorer: OnnxScorer, sink: Sink, prediction: str, batches: Iterator[pa.RecordBatch]
) -> Iterator[pa.RecordBatch]:
    """The mapInArrow body: score each batch of ``request_id, ts, <features>``, write it to the inference log
    and to the output, and yield one row, ``rows``: how many rows this task wrote.

    Nothing scored goes back to the JVM: moving rows between the JVM and Python costs more than writing
    them here (columnar, no row conversion), so Spark reads and schedules and the workers write. The log is
    written by ``pyarrow.dataset.write_dataset``, hive-partitioned by the hour of ``ts`` (UTC): one file
    per hour and task, in row groups of ``sink.row_group_rows`` rows. The output is one file per task.
    Every file is written under a temporary dot-name (which readers skip) and renamed once the task's input
    is exhausted; a retried task rewrites the same files. The driver publishes the folders once the Spark
    job has succeeded.
    """
    import pyarrow as pa
    import pyarrow.dataset as ds
    from pyspark import TaskContext

    context = TaskContext.get()
    part = f"part-{context.partitionId() if context is not None else 0:05d}.parquet"
    session = _session(scorer)
    log_names = ["request_id", "ts", "model_name", "model_version", *sink.features, prediction, _HOUR]
    out_names = [sink.id_column, sink.timestamp_column, prediction, "model_name", "model_version"]
    output = _TaskFile(os.path.join(sink.output_folder, part))
    rows = 0

    def scored() -> Iterator[pa.RecordBatch]:
        """The log's batches (with their ``hour``); the output's rows are written on the way."""
        nonlocal rows
        for batch in batches:
            n = batch.num_rows
            if not n:
                continue
            scores = pa.array(_predict(session, scorer, batch), type=pa.float64())
            name = pa.repeat(sink.model_name, n).cast(pa.string())
            version = pa.repeat(sink.model_version, n).cast(pa.string())
            request_id, ts = batch.column("request_id"), batch.column("ts")
            output.write(pa.Table.from_arrays([request_id, ts, scores, name, version], names=out_names),
                         sink.row_group_rows)
            rows += n
            yield pa.RecordBatch.from_arrays(
                [request_id, ts, name, version, *(batch.column(f) for f in sink.features), scores, _hours(ts)],
                names=log_names,
            )

    logged, written = scored(), []
    try:
        first = next(logged, None)
        if first is not None:  # a task without rows of the day writes nothing
            ds.write_dataset(
                _chain(first, logged), sink.log_folder, schema=first.schema, format="parquet",
                partitioning=ds.partitioning(pa.schema([first.schema.field(_HOUR)]), flavor="hive"),
                basename_template=f".{part}.tmp{{i}}",  # {i} counts per folder: one file per hour, always 0
                existing_data_behavior="overwrite_or_ignore",  # a retried task's files replace its earlier try's
                min_rows_per_group=sink.row_group_rows, max_rows_per_group=sink.row_group_rows,
                file_options=ds.ParquetFileFormat().make_write_options(use_dictionary=_repeated(first.schema)),
                use_threads=False,  # Spark runs one task per core
                file_visitor=lambda file: written.append(file.path),
            )
    finally:
        output.close()
    output.publish()
    for path in written:
        os.replace(path, os.path.join(os.path.dirname(path), part))
    yield pa.RecordBatch.from_arrays([pa.array([rows], type=pa.int64())], names=["rows"])



def _hours(ts: pa.Array) -> pa.Array:
    """The hour of each timestamp (UTC) as the log's folder value, ``"00"`` to ``"23"`` (dictionary-encoded)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return pa.DictionaryArray.from_arrays(pc.hour(ts).cast(pa.int8()), pa.array(_HOUR_NAMES))


def _chain(first: pa.RecordBatch, rest: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    yield first
    yield from rest


@dataclass(frozen=True)
class Reader:
    """How a task reads its share of the input with pyarrow: the columns, the day's rows, the types to cast to.

    :meth:`day_filter` keeps the rows whose timestamp falls on the day starting at ``day_start`` (UTC), as
    a pyarrow expression typed for each file's own timestamp column (with or without a time zone: a
    naive timestamp is UTC wall time), applied while decoding. The timestamp becomes ``ts`` (UTC,
    microseconds), the id becomes the string ``request_id``, and each feature is cast to its declared type
    in ``feature_types`` (:data:`include.data.dataset.ARROW_TYPES`), so every file of the input yields the same
    schema whatever its physical types (``int32``, dictionary-encoded text...).
    """

    id_column: str
    timestamp_column: str
    feature_types: pa.Schema
    day_start: datetime  # aware, UTC
    batch_rows: int = 100_000

    def day_filter(self, ts_type: pa.DataType) -> Any:
        """``day_start <= timestamp < day_start + 1 day`` for a timestamp column of ``ts_type``."""
        import pyarrow as pa
        import pyarrow.dataset as ds

        bounds = (self.day_start, self.day_start + timedelta(days=1))
        if not pa.types.is_timestamp(ts_type):
            raise TypeError(f"timestamp column {self.timestamp_column!r} is {ts_type}, not a timestamp")
        lo, hi = (pa.scalar(b if ts_type.tz else b.replace(tzinfo=None), type=ts_type) for b in bounds)
        column = ds.field(self.timestamp_column)
        return (column >= lo) & (column < hi)


def read_score_and_write(
    scorer: OnnxScorer, sink: Sink, reader: Reader, prediction: str, splits: Iterator[pa.RecordBatch]
) -> Iterator[pa.RecordBatch]:
    """The mapInArrow body when the workers read the input themselves: each row of ``splits`` is a list of
    Parquet files (``paths``) and the row groups to read in each (``row_groups``); the rows read go
    through :func:`score_and_write`, whose ``rows`` row this yields.

    Reading here, instead of having Spark read and ship the rows to Python, saves the JVM-to-Python
    transfer, which costs about as much CPU as scoring.
    """
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.fs

    parquet, local = ds.ParquetFileFormat(), pyarrow.fs.LocalFileSystem()
    columns = [reader.id_column, reader.timestamp_column, *reader.feature_types.names]

    def batches() -> Iterator[pa.RecordBatch]:
        for split in splits:
            for paths, groups in zip(split.column("paths").to_pylist(), split.column("row_groups").to_pylist(),
                                     strict=True):
                for path, row_groups in zip(paths, groups, strict=True):
                    fragment = parquet.make_fragment(path, local, row_groups=row_groups)
                    try:
                        day_filter = reader.day_filter(fragment.physical_schema.field(reader.timestamp_column).type)
                        for batch in fragment.to_batches(columns=columns, filter=day_filter,
                                                         batch_size=reader.batch_rows, use_threads=False):
                            if batch.num_rows:
                                yield _normalized(batch, reader)
                    except (OSError, pa.ArrowException) as exc:  # a damaged file, or a value that does not cast
                        raise OSError(f"cannot read {path} (row groups {row_groups}): {exc}") from exc

    yield from score_and_write(scorer, sink, prediction, batches())


def _normalized(batch: pa.RecordBatch, reader: Reader) -> pa.RecordBatch:
    """``request_id`` (string), ``ts`` (UTC microseconds) and the features in their driver-side types."""
    import numpy as np
    import pyarrow as pa

    ts = batch.column(reader.timestamp_column)
    nanos_per_tick = _NANOS_PER_TICK[ts.type.unit] if pa.types.is_timestamp(ts.type) else 1  # int64: nanoseconds
    ticks = ts.cast(pa.int64()).to_numpy(zero_copy_only=False)
    micros = ticks * (nanos_per_tick // 1_000) if nanos_per_tick >= 1_000 else np.floor_divide(ticks, 1_000 // nanos_per_tick)
    columns = [batch.column(reader.id_column).cast(pa.string()), pa.array(micros, type=pa.timestamp("us", tz="UTC"))]
    columns += [batch.column(f.name).cast(f.type) for f in reader.feature_types]
    return pa.RecordBatch.from_arrays(columns, names=["request_id", "ts", *reader.feature_types.names])


class _TaskFile:
    """A task's output file: written under a temporary dot-name (which readers skip), renamed into place by
    :meth:`publish`. Opened on the first write: a task without rows writes no file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._writer: Any = None
        folder, name = os.path.split(path)
        self._temporary = os.path.join(folder, f".{name}.tmp")

    def write(self, table: pa.Table, row_group_rows: int) -> None:
        import pyarrow.parquet as pq

        if self._writer is None:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            self._writer = pq.ParquetWriter(self._temporary, table.schema, use_dictionary=_repeated(table.schema))
        self._writer.write_table(table, row_group_size=row_group_rows)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()

    def publish(self) -> None:
        if self._writer is not None:
            os.replace(self._temporary, self.path)


def _repeated(schema: pa.Schema) -> list[str]:
    """The columns written with dictionary pages: strings that repeat (names, version, categories), not the
    first column (the id) nor measures, which do not compress that way (trying costs ~0.2 CPU-s per million
    rows)."""
    import pyarrow as pa

    return [f.name for f in schema if pa.types.is_string(f.type) and f.name != schema[0].name]


def _predict(session: Any, scorer: OnnxScorer, batch: pa.RecordBatch) -> Any:
    """The positive class's probability for each row of ``batch`` (float64 numpy array)."""
    import numpy as np

    feeds = {name: _feed(batch.column(name), is_string, scorer.unknown_category) for name, is_string in scorer.inputs}
    probabilities = session.run([scorer.onnx_output], feeds)[0]
    return np.ascontiguousarray(probabilities[:, scorer.positive_column], dtype=np.float64)


def _feed(column: pa.Array, is_string: bool, unknown: str) -> Any:
    """One ``[N, 1]`` ONNX input: strings as an object array (a null is ``unknown``, the export's missing
    category), numbers as float64 (a null is NaN, which the export routes like scikit-learn's missing values)."""
    import numpy as np
    import pyarrow.compute as pc

    if is_string:
        values = pc.fill_null(column.cast("string"), unknown) if column.null_count else column.cast("string")
        return values.to_numpy(zero_copy_only=False).astype(object, copy=False).reshape(-1, 1)
    return column.cast("float64").to_numpy(zero_copy_only=False).astype(np.float64, copy=False).reshape(-1, 1)


def _session(scorer: OnnxScorer) -> Any:
    """This worker's onnxruntime session for the scorer's export, created on first use."""
    import sys
    import types

    import onnxruntime as ort

    cache = sys.modules.get(_SESSIONS_MODULE)
    if cache is None:
        cache = sys.modules.setdefault(_SESSIONS_MODULE, types.ModuleType(_SESSIONS_MODULE))
        cache.sessions = {}
    session = cache.sessions.get(scorer.key)
    if session is None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # Spark already runs one task per core
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(scorer.onnx_model, options, providers=["CPUExecutionProvider"])
        cache.sessions = {scorer.key: session}  # one version per worker at a time: a new run's version replaces it
    return session
