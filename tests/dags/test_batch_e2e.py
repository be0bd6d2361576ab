"""End to end: the batch-scoring DAG with ``dag.test()`` on Spark ``local[2]`` and a real MLflow store."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml

from include.data.dataset import write_dataset
from include.demo.datagen import generate_batch

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
MODEL = "credit_approval"
DAY = datetime(2026, 3, 2, tzinfo=UTC)


@pytest.fixture(scope="module")
def env(tmp_path_factory, airflow_db):
    from include import tracking

    tmp = tmp_path_factory.mktemp("batch")
    shutil.copytree(ROOT / "config", tmp / "config")
    path = tmp / "config" / "models" / f"{MODEL}.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["batch"].update(input_uri=str(tmp / "applications"), output_uri=str(tmp / "predictions"), spark_master="local[2]")
    path.write_text(yaml.safe_dump(raw))
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'mlflow.db'}")
    mp.setenv("MODELOPS_CONFIG_DIR", str(tmp / "config"))
    mp.setenv("MODELOPS_INFERENCE_LOG", str(tmp / "log"))
    train = tmp / "train.parquet"
    write_dataset(generate_batch(3000, seed=1), str(train))
    # Three days of applications (the 2nd of March is the one scored), in one parquet folder.
    days = pd.concat([generate_batch(400, seed=20 + d, start=f"2026-03-0{d}T00:00:00Z", hours=24) for d in (1, 2, 3)])
    write_dataset(days, str(tmp / "applications" / "part-0.parquet"))
    yield {"tmp": tmp, "client": tracking.configure(), "train": str(train), "days": days}
    mp.undo()


@pytest.fixture(scope="module")
def champion(env):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    for dag_id, conf in ((f"train_{MODEL}", {"dataset_uri": env["train"]}), (f"promote_{MODEL}", None)):
        assert str(bag.get_dag(dag_id).test(run_conf=conf).state) == "success"
    return bag.get_dag(f"batch_score_{MODEL}")


def _scored(env):
    return pd.read_parquet(env["tmp"] / "predictions" / f"date={DAY:%Y-%m-%d}")


def test_scores_the_day_with_the_pinned_version_and_reruns_idempotently(env, champion):
    from include.monitoring import inference_log

    expected = env["days"][env["days"]["applied_at"].dt.date == DAY.date()]
    for _ in range(2):  # the same day twice: overwritten, never appended
        dag_run = champion.test(logical_date=DAY)
        assert str(dag_run.state) == "success"
        scored = _scored(env)
        assert len(scored) == len(expected)
        assert scored["application_id"].is_unique
        assert set(scored["application_id"]) == set(expected["application_id"])
        assert set(scored["model_version"].astype(str)) == {"1"}
        assert scored["prediction"].between(0, 1).all()

    # Scored by the version's ONNX export (the demo model converts), and the version says so.
    assert env["client"].get_model_version(MODEL, "1").tags["batch.scorer"] == "onnx"
    logged = inference_log.read_range(MODEL, DAY, DAY + pd.Timedelta(days=1), source="batch")
    assert len(logged) == len(expected) and logged["request_id"].is_unique
    assert not (env["tmp"] / "predictions" / "date=2026-03-01").exists()  # other days untouched
