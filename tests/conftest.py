"""Test-session environment: every piece of state (Airflow home, MLflow store, data) in one temp folder.

Set before anything imports Airflow or MLflow, so no test touches the developer's ``.modelops/``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

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
os.environ.pop("MODELOPS_LEDGER_URL", None)
os.environ.pop("AIRFLOW_CONN_SLACK_DEFAULT", None)  # tests never post to a real Slack


@pytest.fixture(scope="module", autouse=True)
def audit_ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh audit ledger (SQLite) per test module, as ``MODELOPS_LEDGER_URL``.

    Modules register the same model names in their own MLflow stores; one ledger per module keeps
    their histories apart, as one installation's ledger and registry belong together.
    """
    url = f"sqlite:///{tmp_path_factory.mktemp('ledger') / 'ledger.db'}"
    previous = os.environ.get("MODELOPS_LEDGER_URL")
    os.environ["MODELOPS_LEDGER_URL"] = url
    yield url
    if previous is None:
        os.environ.pop("MODELOPS_LEDGER_URL", None)
    else:
        os.environ["MODELOPS_LEDGER_URL"] = previous


@pytest.fixture(scope="session")
def state_dir() -> Path:
    return _STATE


@pytest.fixture(scope="session")
def airflow_db(state_dir: Path) -> Path:
    """A migrated SQLite metadata database for dag.test() runs."""
    airflow = Path(sys.executable).parent / "airflow"
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True, env=os.environ)
    return state_dir / "airflow" / "airflow.db"


@pytest.fixture
def fake_slack(monkeypatch: pytest.MonkeyPatch):
    """A Slack incoming-webhook endpoint on loopback, as the ``slack_default`` connection (``AIRFLOW_CONN_SLACK_DEFAULT``)."""
    import json

    from tests.fakes.slack import FakeSlack

    with FakeSlack() as slack:
        monkeypatch.setenv("AIRFLOW_CONN_SLACK_DEFAULT", json.dumps(slack.connection()))
        yield slack


SETUP_TIMEOUT_S = 900


def _index_reachable() -> bool:
    """Whether the package index setup_triton.sh installs from answers (PyPI unless configured)."""
    url = os.environ.get("UV_INDEX_URL") or os.environ.get("PIP_INDEX_URL") or "https://pypi.org/simple"
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return True
    try:
        socket.create_connection((parsed.hostname, parsed.port or 443), timeout=5).close()
    except OSError:
        return False
    return True


@pytest.fixture(scope="session")
def triton_venv() -> Path:
    """``.venv-triton``, made (or found up to date) by ``scripts/setup_triton.sh``."""
    venv = Path(os.environ.get("MODELOPS_TRITON_VENV", ROOT / ".venv-triton"))
    result = subprocess.run(["bash", str(ROOT / "scripts" / "setup_triton.sh")], capture_output=True, text=True,
                            timeout=SETUP_TIMEOUT_S, env={**os.environ, "MODELOPS_TRITON_VENV": str(venv)})
    if result.returncode != 0:
        if not _index_reachable():
            pytest.skip(f"cannot create {venv} offline: the package index is unreachable ({result.stderr.strip()})")
        log = venv / "setup.log"
        tail = "\n".join(log.read_text().splitlines()[-30:]) if log.is_file() else ""
        pytest.fail(f"scripts/setup_triton.sh failed ({result.returncode}): {result.stderr}\n{tail}")
    return venv
