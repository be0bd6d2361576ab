"""Test-session environment: every piece of state (Airflow home, MLflow store, data) in one temp folder.

Set before anything imports Airflow or MLflow, so no test touches the developer's ``.modelops/``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_STATE = Path(tempfile.mkdtemp(prefix="modelops-tests-"))

os.environ.update(
    {
        "MODELOPS_HOME": str(_STATE),
        "MODELOPS_DATA_DIR": str(_STATE / "data"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{_STATE / 'mlflow' / 'mlflow.db'}",
        "AIRFLOW_HOME": str(_STATE / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "GX_ANALYTICS_ENABLED": "false",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins"), os.environ.get("PYTHONPATH", "")]),
    }
)
os.environ.pop("AIRFLOW_CONN_MLFLOW_DEFAULT", None)


@pytest.fixture(scope="session")
def state_dir() -> Path:
    return _STATE


@pytest.fixture(scope="session")
def airflow_db(state_dir: Path) -> Path:
    """A migrated SQLite metadata database for dag.test() runs."""
    airflow = Path(sys.executable).parent / "airflow"
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True, env=os.environ)
    return state_dir / "airflow" / "airflow.db"
