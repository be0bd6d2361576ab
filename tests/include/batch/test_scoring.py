"""Tests for include.batch.scoring: a Spark job on ``local[2]`` against a real MLflow registry.

One Spark session and one registered model version for the module, used as a scenario: score a
day, re-run it, score the next day, then re-run the first day from changed input. The scenario runs
the default scorer (the version's ONNX export); the ``spark_udf`` scorer is checked against it on
the same rows, and a second version that does not convert to ONNX checks the fallback.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from include.config import ModelConfig, load_model_config
from include.data.dataset import write_dataset
from include.demo.datagen import generate_batch
from include.monitoring.inference_log import read_range
from include.serving.onnx import PARITY_TOLERANCE
from tests.include.batch.conftest import register_version

pytestmark = pytest.mark.filterwarnings("ignore:Hint. Inferred schema contains integer:UserWarning")
ROOT = Path(__file__).resolve().parents[3]
CFG = load_model_config(ROOT / "config" / "models" / "credit_approval.yaml")
MODEL = CFG.name
ID, TS = CFG.dataset.id_column, CFG.dataset.timestamp_column
DAY1, DAY2 = "2026-03-01", "2026-03-02"


@pytest.fixture(scope="module")
def unconvertible(registry) -> str:
    """Version 2: the same preprocessing ahead of a DummyClassifier, which skl2onnx cannot convert."""
    from sklearn.base import clone
    from sklearn.dummy import DummyClassifier
    from sklearn.pipeline import Pipeline

    x, y = registry["x"], registry["y"]
    model = Pipeline([(registry["model"].steps[0][0], clone(registry["model"].steps[0][1])),
                      ("model", DummyClassifier(strategy="prior"))]).fit(x, y)
    return register_version(registry["client"], model, x)


@pytest.fixture(scope="module")
def spark():
    from include.batch.scoring import spark_session

    session = spark_session("local[2]")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Day 1 as pandas writes it (nanosecond timestamps), spilling 6 hours into day 2; day 2 as microseconds."""
    tmp = tmp_path_factory.mktemp("scoring")
    day1 = generate_batch(5000, seed=11, start=f"{DAY1}T00:00:00Z", hours=30)
    day2 = generate_batch(3000, seed=12, start=f"{DAY2}T00:00:00Z", hours=24)
    write_dataset(day1, str(tmp / "day1.parquet"))
    pq.write_table(pa.Table.from_pandas(day2, preserve_index=False), tmp / "day2.parquet", coerce_timestamps="us")
    return {"tmp": tmp, "day1": day1, "day2": day2, "out": tmp / "scored", "log": tmp / "inference_log"}


def _config(input_uri: str, output_uri: str) -> ModelConfig:
    """The model's configuration with its batch section pointed at ``input_uri`` and ``output_uri``."""
    return CFG.model_copy(update={"batch": CFG.batch.model_copy(update={"input_uri": input_uri,
                                                                         "output_uri": output_uri})})


def _score(spark, registry, data, date: str, input_name: str, *, version: str | None = None, **options) -> dict:
    from include.batch.scoring import score_date

    config = _config(str(data["tmp"] / input_name), str(data["out"]))
    return score_date(config, version or registry["version"], date, inference_log_root=str(data["log"]), spark=spark,
                      **options)


def _of_day(df: pd.DataFrame, date: str) -> pd.DataFrame:
    return df[df[TS].dt.strftime("%Y-%m-%d") == date]


def _output(data, date: str) -> pd.DataFrame:
    return pd.read_parquet(data["out"] / f"date={date}")


def _logged(data, date: str) -> pd.DataFrame:
    start = pd.Timestamp(date, tz="UTC")
    return read_range(MODEL, start, start + pd.Timedelta(days=1), root=data["log"], source="batch")


def _snapshot(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def first_day(spark, registry, data) -> dict:
    return _score(spark, registry, data, DAY1, "day1.parquet")


def test_every_row_of_the_date_is_scored_once_with_the_fixed_version(registry, data, first_day) -> None:
    expected = _of_day(data["day1"], DAY1)
    assert first_day["rows_in"] == first_day["rows_out"] == len(expected)
    assert first_day["rows_other_dates"] == len(data["day1"]) - len(expected) > 0
    assert first_day["hours"] == 24
    assert first_day["scorer"] == "onnx" and first_day["reader"] == "pyarrow"

    out = _output(data, DAY1)
    assert list(out.columns) == [ID, TS, "prediction", "model_name", "model_version"]
    assert len(out) == len(expected) and out[ID].is_unique
    assert set(out[ID]) == set(expected[ID])
    assert set(out["model_version"]) == {str(registry["version"])} and set(out["model_name"]) == {MODEL}
    assert (data["out"] / f"date={DAY1}" / "_SUCCESS").exists()


def test_predictions_equal_the_sklearn_models_predict_proba(registry, data, first_day) -> None:
    expected = _of_day(data["day1"], DAY1)
    want = pd.Series(registry["model"].predict_proba(expected[CFG.dataset.feature_names])[:, 1], index=expected[ID])
    out = _output(data, DAY1).set_index(ID)
    # The ONNX export's probabilities are float32 inside the tree ensemble: equal within the deployment's tolerance.
    np.testing.assert_allclose(
        out["prediction"].to_numpy(), want.loc[out.index].to_numpy(), rtol=0, atol=PARITY_TOLERANCE
    )
    assert (out[TS] == expected.set_index(ID).loc[out.index, TS].dt.as_unit("us")).all()


def test_the_spark_udf_scorer_agrees_with_the_onnx_scorer_on_the_same_rows(spark, registry, data, first_day) -> None:
    onnx = _output(data, DAY1).set_index(ID)
    other = {"out": data["tmp"] / "scored_udf", "log": data["tmp"] / "log_udf"}

    result = _score(spark, registry, {**data, **other}, DAY1, "day1.parquet", scorer="spark_udf")

    assert result["scorer"] == "spark_udf" and result["rows_out"] == first_day["rows_out"]
    udf = _output(other, DAY1).set_index(ID).loc[onnx.index]
    assert (udf.drop(columns="prediction") == onnx.drop(columns="prediction")).all().all()
    np.testing.assert_allclose(onnx["prediction"].to_numpy(), udf["prediction"].to_numpy(), rtol=0,
                               atol=PARITY_TOLERANCE)
    expected = _of_day(data["day1"], DAY1).set_index(ID).loc[onnx.index]
    want = registry["model"].predict_proba(expected[CFG.dataset.feature_names])[:, 1]
    np.testing.assert_allclose(udf["prediction"].to_numpy(), want, rtol=0, atol=1e-9)  # the pyfunc: sklearn's own


def test_sparks_reader_and_the_workers_pyarrow_reader_write_the_same_rows(spark, registry, data, first_day) -> None:
    other = {"out": data["tmp"] / "scored_spark_reader", "log": data["tmp"] / "log_spark_reader"}

    result = _score(spark, registry, {**data, **other}, DAY1, "day1.parquet", reader="spark")

    assert result["reader"] == "spark" and result["scorer"] == "onnx"
    assert {k: v for k, v in result.items() if k in ("rows_in", "rows_out", "rows_other_dates", "hours")} == {
        k: v for k, v in first_day.items() if k in ("rows_in", "rows_out", "rows_other_dates", "hours")}
    by_id = [_output(d, DAY1).sort_values(ID).reset_index(drop=True) for d in (data, other)]
    pd.testing.assert_frame_equal(*by_id)
    logs = [_logged(d, DAY1).sort_values("request_id").reset_index(drop=True) for d in (data, other)]
    pd.testing.assert_frame_equal(*logs)


def test_the_pyarrow_reader_skips_row_groups_of_other_days_and_splits_the_rest(spark, tmp_path: Path) -> None:
    from include.batch.scoring import _Job, _plan_reads

    days = [generate_batch(1000, seed=20 + i, start=f"2026-03-0{i + 1}T00:00:00Z", hours=24) for i in range(3)]
    table = pa.Table.from_pandas(pd.concat(days, ignore_index=True).sort_values(TS), preserve_index=False)
    pq.write_table(table, tmp_path / "three_days.parquet", row_group_size=250)  # 4 row groups per day
    job = _Job(CFG, "1", str(tmp_path / "three_days.parquet"), str(tmp_path / "out"), str(tmp_path / "log"),
               pd.Timestamp(DAY2).date())
    plan = _plan_reads(spark, job)

    assert plan.rows == 3000
    read = sorted(group for _, groups in plan.splits for per_file in groups for group in per_file)
    assert read == [4, 5, 6, 7]  # day 2's row groups; the statistics rule out days 1 and 3
    assert len(plan.splits) == spark.sparkContext.defaultParallelism


def test_a_version_without_an_onnx_export_falls_back_to_spark_udf(spark, registry, unconvertible, data) -> None:
    from include.serving.onnx import ExportError

    other = {"out": data["tmp"] / "scored_dummy", "log": data["tmp"] / "log_dummy"}
    result = _score(spark, registry, {**data, **other}, DAY2, "day2.parquet", version=unconvertible)

    assert result["scorer"] == "spark_udf" and result["rows_out"] == len(data["day2"])
    out = _output(other, DAY2)
    assert set(out["model_version"]) == {str(unconvertible)}
    np.testing.assert_allclose(out["prediction"].to_numpy(), registry["y"].mean(), rtol=0, atol=1e-9)
    with pytest.raises(ExportError, match="skl2onnx cannot convert"):
        _score(spark, registry, {**data, **other}, DAY2, "day2.parquet", scorer="onnx", version=unconvertible)


def test_the_inference_log_holds_the_batch_rows_with_their_features(data, first_day) -> None:
    logged = _logged(data, DAY1)
    out = _output(data, DAY1).set_index(ID)
    assert len(logged) == len(out) and logged["request_id"].is_unique
    assert set(logged["source"]) == {"batch"}
    logged = logged.set_index("request_id").loc[out.index]
    assert (logged["prediction"] == out["prediction"]).all()
    assert (logged["ts"] == out[TS]).all()  # the event time, so re-runs land in the same hours
    source = data["day1"].set_index(ID).loc[out.index]
    for feature in CFG.dataset.feature_names:
        assert (logged[feature].to_numpy() == source[feature].to_numpy()).all(), feature
    assert logged["credit_score"].dtype == np.int64 and logged["region"].dtype == object
    hours = sorted(p.name for p in (Path(first_day["inference_log_uri"])).iterdir())
    assert hours == [f"hour={h:02d}" for h in range(24)]


def test_rerunning_a_date_replaces_it_without_duplicates(spark, registry, data, first_day) -> None:
    again = _score(spark, registry, data, DAY1, "day1.parquet")

    assert again["rows_out"] == first_day["rows_out"]
    out = _output(data, DAY1)
    assert len(out) == first_day["rows_out"] and out[ID].is_unique
    logged = _logged(data, DAY1)
    assert len(logged) == first_day["rows_out"] and logged["request_id"].is_unique


def test_a_second_date_adds_a_partition_without_touching_the_first(spark, registry, data, first_day) -> None:
    before_out, before_log = _snapshot(data["out"] / f"date={DAY1}"), _snapshot(Path(first_day["inference_log_uri"]))

    second = _score(spark, registry, data, DAY2, "day2.parquet")

    assert second["rows_in"] == second["rows_out"] == len(data["day2"]) and second["rows_other_dates"] == 0
    assert sorted(p.name for p in data["out"].iterdir() if p.is_dir()) == [f"date={DAY1}", f"date={DAY2}"]
    assert _snapshot(data["out"] / f"date={DAY1}") == before_out
    assert _snapshot(Path(first_day["inference_log_uri"])) == before_log
    assert len(_logged(data, DAY2)) == len(data["day2"])
    assert len(_logged(data, DAY1)) == first_day["rows_out"]


def test_rerunning_from_changed_input_drops_the_hours_it_no_longer_has(spark, registry, data, first_day) -> None:
    morning = data["day1"][data["day1"][TS] < pd.Timestamp(f"{DAY1}T12:00:00Z")]
    write_dataset(morning, str(data["tmp"] / "day1_morning.parquet"))

    result = _score(spark, registry, data, DAY1, "day1_morning.parquet")

    assert result["rows_out"] == len(morning) and result["hours"] == 12
    assert set(_output(data, DAY1)[ID]) == set(morning[ID])
    logged = _logged(data, DAY1)
    assert set(logged["request_id"]) == set(morning[ID])
    assert sorted(p.name for p in Path(result["inference_log_uri"]).iterdir()) == [f"hour={h:02d}" for h in range(12)]
    assert len(_logged(data, DAY2)) == len(data["day2"])


def test_a_date_without_rows_clears_that_date(spark, registry, data) -> None:
    empty = data["day1"].iloc[:0]
    write_dataset(empty, str(data["tmp"] / "empty.parquet"))
    assert (data["out"] / f"date={DAY2}").exists()

    result = _score(spark, registry, data, DAY2, "empty.parquet")

    assert result["rows_in"] == result["rows_out"] == 0
    assert not (data["out"] / f"date={DAY2}").exists()
    assert _logged(data, DAY2).empty


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"version": "@champion"}, "resolve an alias"),
        ({"version": "champion"}, "resolve an alias"),
        ({"version": "0"}, "expected a registered version number"),
        ({"date": "2026-13-01"}, "not a YYYY-MM-DD date"),
        ({"config": CFG.model_copy(update={"batch": None})}, "has no batch: section"),
        ({"scorer": "pickle"}, "expected one of auto, onnx, spark_udf"),
        ({"scorer": "onnx", "output_uri": "s3a://bucket/predictions"}, "not a local or mounted"),
        ({"reader": "arrow"}, "expected one of auto, pyarrow, spark"),
        ({"reader": "pyarrow", "input_uri": "s3a://bucket/applications"}, "not a local or mounted"),
    ],
)
def test_bad_arguments_fail_before_any_work(changes: dict, message: str, tmp_path: Path) -> None:
    from include.batch.scoring import score_date

    uris = {"input_uri": str(tmp_path / "in.parquet"), "output_uri": str(tmp_path / "out")}
    uris.update({key: changes.pop(key) for key in list(changes) if key in uris})
    args = {"config": _config(**uris), "version": "1", "date": DAY1, **changes}
    with pytest.raises(ValueError, match=message):
        score_date(**args)
    assert not (tmp_path / "out").exists()


def test_a_version_given_as_a_number_is_scored_and_written_as_the_registrys_string(spark, registry, data) -> None:
    other = {"out": data["tmp"] / "scored_int_version", "log": data["tmp"] / "log_int_version"}

    result = _score(spark, registry, {**data, **other}, DAY2, "day2.parquet", version=int(registry["version"]))

    assert result["model_uri"] == f"models:/{MODEL}/{registry['version']}"
    assert set(_output(other, DAY2)["model_version"]) == {str(registry["version"])}
    assert set(_logged(other, DAY2)["model_version"]) == {str(registry["version"])}


@pytest.mark.parametrize(("reader", "scorer"), [("pyarrow", "onnx"), ("spark", "onnx"), ("spark", "spark_udf")])
def test_a_missing_column_is_named(spark, registry, data, reader: str, scorer: str) -> None:
    write_dataset(data["day2"].drop(columns=["region"]), str(data["tmp"] / "no_region.parquet"))
    with pytest.raises(ValueError, match="missing.*column.*region"):
        _score(spark, registry, data, DAY2, "no_region.parquet", reader=reader, scorer=scorer)


def test_a_numeric_feature_stored_as_text_is_named_before_any_work(spark, registry, data) -> None:
    before = _snapshot(data["out"])
    text_age = data["day2"].assign(age=data["day2"]["age"].astype(str))
    write_dataset(text_age, str(data["tmp"] / "text_age.parquet"))

    with pytest.raises(ValueError, match=r"text_age\.parquet: column 'age' is text \(string\), declared int"):
        _score(spark, registry, data, DAY2, "text_age.parquet")

    assert _snapshot(data["out"]) == before


def test_a_folder_whose_first_file_has_no_rows_and_whose_files_differ_in_time_zone_is_scored(
    spark, registry, data
) -> None:
    """pandas writes an empty frame's text columns with the null type; pyarrow's schema inference then failed."""
    folder = data["tmp"] / "empty_first"
    folder.mkdir()
    day2 = data["day2"]
    day2.iloc[:0].to_parquet(folder / "a-empty.parquet", index=False)
    half = len(day2) // 2
    day2.iloc[:half].to_parquet(folder / "b-aware.parquet", index=False)
    day2.iloc[half:].assign(**{TS: day2[TS].iloc[half:].dt.tz_localize(None)}).to_parquet(
        folder / "c-naive.parquet", index=False)  # naive: UTC wall time

    stats = _score(spark, registry, data, DAY2, folder.name, reader="pyarrow")

    assert (stats["rows_in"], stats["rows_out"], stats["rows_other_dates"]) == (len(day2), len(day2), 0)
    assert sorted(_output(data, DAY2)[ID]) == sorted(day2[ID])


@pytest.mark.parametrize("reader", ["pyarrow", "spark"])
def test_a_run_that_fails_midway_publishes_nothing(spark, registry, data, first_day, reader: str) -> None:
    """A file whose pages are damaged fails its task, maybe after another task wrote: nothing of theirs lands."""
    folder = data["tmp"] / f"damaged_{reader}"
    folder.mkdir()
    good = pq.read_table(data["tmp"] / "day1.parquet")
    pq.write_table(good, folder / "a.parquet", row_group_size=1000)
    pq.write_table(good, folder / "b.parquet", row_group_size=1000)
    raw = bytearray((folder / "b.parquet").read_bytes())
    footer = int.from_bytes(raw[-8:-4], "little") + 8
    raw[4:-footer] = bytes(len(raw) - 4 - footer)  # the pages zeroed, the footer intact
    (folder / "b.parquet").write_bytes(bytes(raw))
    before_out, before_log = _snapshot(data["out"]), _snapshot(data["log"])

    spark.conf.set("spark.sql.files.openCostInBytes", str(1 << 30))  # Spark's reader: one task per file
    try:
        with pytest.raises(Exception, match="b.parquet"):
            _score(spark, registry, data, DAY1, folder.name, reader=reader)
    finally:
        spark.conf.unset("spark.sql.files.openCostInBytes")

    assert _snapshot(data["out"]) == before_out and _snapshot(data["log"]) == before_log
    assert not [p for p in [*data["out"].rglob("*"), *data["log"].rglob("*")] if "_staging-" in p.name]


def test_an_unknown_version_fails_clearly(spark, registry, data) -> None:
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException, match="99"):
        _score(spark, registry, data, DAY2, "day2.parquet", version="99")


def test_the_onnx_scorer_treats_nulls_like_sklearn_and_keeps_one_session_per_worker(registry, tmp_path: Path) -> None:
    import mlflow.artifacts

    from include.batch import worker

    local = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{MODEL}/{registry['version']}", dst_path=str(tmp_path))
    scorer = worker.prepare(local, f"models:/{MODEL}/{registry['version']}", CFG)
    assert scorer.parity["max_abs_diff"] <= PARITY_TOLERANCE
    frame = generate_batch(200, seed=3)[CFG.dataset.feature_names]
    frame.loc[::7, "region"] = None  # unseen by the one-hot encoder: ignored, like an unknown category
    frame["debt_to_income"] = frame["debt_to_income"].mask(frame.index % 5 == 0)  # NaN: the trees' missing branch
    batches = pa.Table.from_pandas(frame, preserve_index=False).to_batches(max_chunksize=64)

    scored = pa.Table.from_batches(list(worker.score_batches(scorer, "prediction", iter(batches))))

    assert scored.column_names == [*CFG.dataset.feature_names, "prediction"] and scored.num_rows == len(frame)
    want = registry["model"].predict_proba(frame)[:, 1]
    np.testing.assert_allclose(scored.column("prediction").to_numpy(), want, rtol=0, atol=PARITY_TOLERANCE)
    assert worker._session(scorer) is worker._session(scorer)


@pytest.fixture(scope="module")
def onnx_scorer(registry, tmp_path_factory: pytest.TempPathFactory):
    """Version 1's ONNX export, as the driver prepares it for the workers."""
    import mlflow.artifacts

    from include.batch import worker

    uri = f"models:/{MODEL}/{registry['version']}"
    local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(tmp_path_factory.mktemp("model")))
    return worker.prepare(local, uri, CFG)


def _task_batches(rows: pd.DataFrame, size: int) -> list[pa.RecordBatch]:
    """``rows`` as a task receives them: ``request_id``, ``ts`` (UTC microseconds), the features."""
    table = pa.table({"request_id": pa.array(rows[ID].astype(str)),
                      "ts": pa.array(rows[TS].dt.as_unit("us"), type=pa.timestamp("us", tz="UTC")),
                      **{f: pa.Table.from_pandas(rows[[f]], preserve_index=False).column(f)
                         for f in CFG.dataset.feature_names}})
    return table.to_batches(max_chunksize=size)


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_a_task_writes_one_log_file_per_hour_in_full_row_groups_and_one_output_file(onnx_scorer, tmp_path) -> None:
    from include.batch import worker

    rows = generate_batch(1000, seed=7, start=f"{DAY1}T00:00:00Z", hours=5).sample(frac=1, random_state=0)  # unordered
    batches = _task_batches(rows, 128)
    sink = worker.Sink(str(tmp_path / "log"), str(tmp_path / "out"), MODEL, "7", tuple(CFG.dataset.feature_names),
                       ID, TS, row_group_rows=100)

    (result,) = worker.score_and_write(onnx_scorer, sink, "prediction", iter(batches))

    assert result.column("rows").to_pylist() == [1000]
    hours = sorted(rows[TS].dt.strftime("%H").unique())
    assert _files(tmp_path / "log") == [f"hour={h}/part-00000.parquet" for h in hours]
    assert _files(tmp_path / "out") == ["part-00000.parquet"]
    want = pa.Table.from_batches(list(worker.score_batches(onnx_scorer, "prediction", iter(batches)))).to_pandas()
    logged = []
    for hour in hours:
        file = pq.ParquetFile(tmp_path / "log" / f"hour={hour}" / "part-00000.parquet")
        groups = [file.metadata.row_group(i).num_rows for i in range(file.metadata.num_row_groups)]
        assert all(n == 100 for n in groups[:-1]) and 0 < groups[-1] <= 100, groups
        table = file.read()
        assert table.column_names == ["request_id", "ts", "model_name", "model_version",
                                      *CFG.dataset.feature_names, "prediction"]  # the hour is the folder's name
        assert set(table.column("ts").to_pandas().dt.strftime("%H")) == {hour}
        logged.append(table.to_pandas())
    log = pd.concat(logged).set_index("request_id").sort_index()
    assert len(log) == 1000 and set(log["model_version"]) == {"7"} and set(log["model_name"]) == {MODEL}
    np.testing.assert_array_equal(log["prediction"], want.set_index("request_id").sort_index()["prediction"])
    out = pq.read_table(tmp_path / "out" / "part-00000.parquet").to_pandas()
    assert list(out.columns) == [ID, TS, "prediction", "model_name", "model_version"]
    assert sorted(out[ID]) == sorted(rows[ID])


def test_a_retried_task_replaces_its_files_and_a_task_without_rows_writes_none(onnx_scorer, tmp_path) -> None:
    from include.batch import worker

    rows = generate_batch(300, seed=8, start=f"{DAY1}T00:00:00Z", hours=3)
    sink = worker.Sink(str(tmp_path / "log"), str(tmp_path / "out"), MODEL, "1", tuple(CFG.dataset.feature_names),
                       ID, TS)
    for _ in range(2):  # the same task's second attempt
        list(worker.score_and_write(onnx_scorer, sink, "prediction", iter(_task_batches(rows, 64))))

    assert _files(tmp_path / "log") == [f"hour={h:02d}/part-00000.parquet" for h in range(3)]
    assert sum(pq.ParquetFile(tmp_path / "log" / f).metadata.num_rows for f in _files(tmp_path / "log")) == 300
    assert pq.ParquetFile(tmp_path / "out" / "part-00000.parquet").metadata.num_rows == 300

    empty = worker.Sink(str(tmp_path / "log2"), str(tmp_path / "out2"), MODEL, "1", tuple(CFG.dataset.feature_names),
                        ID, TS)
    (result,) = worker.score_and_write(onnx_scorer, empty, "prediction", iter([]))
    assert result.column("rows").to_pylist() == [0]
    assert not (tmp_path / "log2").exists() and not (tmp_path / "out2").exists()


def test_a_task_that_fails_midway_leaves_no_file_under_a_readable_name(onnx_scorer, tmp_path) -> None:
    from include.batch import worker

    batches = _task_batches(generate_batch(600, seed=9, start=f"{DAY1}T00:00:00Z", hours=4), 100)

    def failing():
        yield from batches[:4]
        raise OSError("cannot read input.parquet (row groups [4])")

    sink = worker.Sink(str(tmp_path / "log"), str(tmp_path / "out"), MODEL, "1", tuple(CFG.dataset.feature_names),
                       ID, TS, row_group_rows=50)  # full row groups were written before the failure
    with pytest.raises(OSError, match="input.parquet"):
        list(worker.score_and_write(onnx_scorer, sink, "prediction", failing()))

    written = _files(tmp_path)
    assert written and all(Path(f).name.startswith(".") for f in written), written
