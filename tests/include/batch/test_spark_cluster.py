"""Batch scoring on a Spark standalone cluster on loopback gives what ``local[*]`` gives, row for row.

A master and one worker (one core) are started from the pyspark installation in the virtualenv with its
``bin/spark-class`` (the pip package ships no ``sbin/start-master.sh``), ``SPARK_HOME`` the pyspark package. The cluster is
selected the way a user selects it: the model config's ``batch.spark_master``. Both runs go through
:func:`include.batch.scoring.score_date` with no session given, so each creates and stops its own.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import pandas as pd
import pyarrow.parquet as pq
import pytest

from include.config import ModelConfig, load_model_config
from include.data.dataset import write_dataset
from include.demo.datagen import generate_batch
from tests.servers import free_port, serving

pytestmark = [pytest.mark.e2e,
              pytest.mark.filterwarnings("ignore:Hint. Inferred schema contains integer:UserWarning")]
ROOT = Path(__file__).resolve().parents[3]
CFG = load_model_config(ROOT / "config" / "models" / "credit_approval.yaml")
MODEL, ID = CFG.name, CFG.dataset.id_column
DAY = "2026-03-01"


def _pyspark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


def _processes_in_sessions(sessions: set[int]) -> list[int]:
    """Ids of the live (not zombie) processes in one of ``sessions`` (the daemons were started as session
    leaders; their executors and Python workers inherit the worker's session)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                if os.getsid(int(entry.name)) in sessions and stat[stat.rindex(")") + 2] != "Z":
                    found.append(int(entry.name))
            except (OSError, ValueError):  # gone meanwhile
                continue
    return found


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    """A standalone master and one worker (1 core, 1 GiB) on 127.0.0.1; yields the master URL ``spark://…``.

    The worker's executors run this interpreter with the project on ``PYTHONPATH``, as a worker image
    with the project installed would. Both daemons (and their executors, in the worker's process
    group) are stopped at teardown, and the teardown fails if any process of this cluster remains.
    """
    home = _pyspark_home()
    tmp = tmp_path_factory.mktemp("spark-cluster")
    port, ui, worker_ui = free_port(), free_port(), free_port()
    master_url = f"spark://127.0.0.1:{port}"
    env = {**os.environ, "SPARK_HOME": str(home), "SPARK_LOCAL_IP": "127.0.0.1",
           "PYSPARK_PYTHON": sys.executable, "SPARK_DAEMON_MEMORY": "256m",
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins"), os.environ.get("PYTHONPATH", "")])}
    java = ["bash", str(home / "bin" / "spark-class")]  # execs java with the installation's jars
    with ExitStack() as stack:
        master = stack.enter_context(serving(
            [*java, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
             "--webui-port", str(ui)],
            env=env, log=tmp / "master.log", ready_url=f"http://127.0.0.1:{ui}/json/", name="spark master",
            timeout_s=60))
        worker = stack.enter_context(serving(
            [*java, "org.apache.spark.deploy.worker.Worker", master_url, "--host", "127.0.0.1", "--cores", "1",
             "--memory", "1g", "--webui-port", str(worker_ui), "--work-dir", str(tmp / "work")],
            env=env, log=tmp / "worker.log", ready_url=f"http://127.0.0.1:{worker_ui}/json/", name="spark worker",
            timeout_s=60))
        deadline = time.monotonic() + 60
        while not [w for w in httpx.get(f"http://127.0.0.1:{ui}/json/", timeout=5).json().get("workers", [])
                   if w.get("state") == "ALIVE"]:
            if time.monotonic() > deadline:
                pytest.fail(f"no ALIVE worker registered with the master:\n{(tmp / 'worker.log').read_text()[-4000:]}")
            time.sleep(0.5)
        yield {"url": master_url, "ui": f"http://127.0.0.1:{ui}", "logs": tmp}
    deadline = time.monotonic() + 10  # killed processes may take a moment to go
    while (left := _processes_in_sessions({master.pid, worker.pid})) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"spark cluster processes left running: {left}"


def _config(input_uri: Path, output_uri: Path, master: str, conf: dict[str, str]) -> ModelConfig:
    batch = CFG.batch.model_copy(update={"input_uri": str(input_uri), "output_uri": str(output_uri),
                                         "spark_master": master, "spark_conf": conf})
    return CFG.model_copy(update={"batch": batch})


def _table(folder: Path, key: str) -> pd.DataFrame:
    """Every Parquet file under ``folder`` (partition folders as columns are not added), sorted by ``key``."""
    files = sorted(folder.rglob("*.parquet"))
    assert files, f"no Parquet files under {folder}"
    frame = pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)
    return frame.sort_values(key, kind="stable").reset_index(drop=True)


def test_a_day_scored_on_a_standalone_cluster_equals_the_same_day_scored_on_local(
    cluster, registry, tmp_path: Path
) -> None:
    from include.batch.scoring import score_date

    rows = generate_batch(6000, seed=11, start=f"{DAY}T00:00:00Z", hours=30)  # 6 hours spill into the next day
    write_dataset(rows, str(tmp_path / "day.parquet"))
    # On a cluster the executors connect back to the driver and run the project's Python: loopback, this venv.
    cluster_conf = {"spark.driver.host": "127.0.0.1", "spark.pyspark.python": sys.executable,
                    "spark.executor.memory": "512m"}
    runs = {}
    for name, master, conf in [("cluster", cluster["url"], cluster_conf), ("local", "local[*]", {})]:
        config = _config(tmp_path / "day.parquet", tmp_path / name / "out", master, conf)
        runs[name] = score_date(config, registry["version"], DAY, inference_log_root=str(tmp_path / name / "log"))

    # The cluster really ran the job: the master lists the application, finished, and its executor ran on the worker.
    apps = httpx.get(f"{cluster['ui']}/json/", timeout=5).json()
    assert [a["name"] for a in apps.get("completedapps", [])] == ["modelops-batch-scoring"]
    assert list((cluster["logs"] / "work").glob("app-*/*/stderr")), "no executor ran on the worker"

    stats = ("rows_in", "rows_out", "rows_other_dates", "hours", "scorer", "reader")
    assert {k: runs["cluster"][k] for k in stats} == {k: runs["local"][k] for k in stats}
    expected = rows[rows[CFG.dataset.timestamp_column].dt.strftime("%Y-%m-%d") == DAY]
    assert runs["cluster"]["rows_out"] == len(expected) > 0 and runs["cluster"]["scorer"] == "onnx"

    out = {name: _table(tmp_path / name / "out" / f"date={DAY}", ID) for name in runs}
    assert len(out["cluster"]) == len(expected) and set(out["cluster"][ID]) == set(expected[ID])
    pd.testing.assert_frame_equal(out["cluster"], out["local"], check_exact=True)
    logged = {name: _table(Path(runs[name]["inference_log_uri"]), "request_id") for name in runs}
    assert len(logged["cluster"]) == len(expected)
    pd.testing.assert_frame_equal(logged["cluster"], logged["local"], check_exact=True)
    # Same hour partitions in the log, holding the same rows each.
    hours = {name: {p.parent.name for p in Path(runs[name]["inference_log_uri"]).rglob("*.parquet")} for name in runs}
    assert hours["cluster"] == hours["local"] and len(hours["cluster"]) == 24
