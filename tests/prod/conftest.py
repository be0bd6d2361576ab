"""One production stack on loopback (``scripts/prod_stack.py``) for the tests marked ``prod_stack``.

It runs against the PostgreSQL and Redis the machine runs (``MODELOPS_TEST_POSTGRES``,
``MODELOPS_TEST_REDIS`` point elsewhere), in databases and a Celery queue of its own, on free ports,
with its state in a temp folder; at the end it is stopped and purged (databases dropped). A stack
that does not come up fails the test with the part's log.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from scripts import prod_stack
from tests.prod.flows import LIFECYCLE_DAGS

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 420
# A task whose worker died is failed (and retried) after this long without a heartbeat (Airflow's default: 300 s).
HEARTBEAT_TIMEOUT_S = 45


@dataclass
class ProdStack:
    """The running stack: its description, the Airflow REST client, MLflow and S3 clients."""

    stack: prod_stack.Stack
    airflow: prod_stack.AirflowClient
    webhook_secret: str

    @property
    def env(self) -> dict[str, str]:
        return prod_stack.airflow_env(self.stack)

    def mlflow(self):
        from mlflow.tracking import MlflowClient

        return MlflowClient(self.stack.mlflow_url, self.stack.mlflow_url)

    def ledger(self):
        """The stack's audit ledger (its PostgreSQL database), as the Airflow processes write it."""
        from include.governance.ledger import Ledger

        return Ledger(self.stack.database_url("ledger"))

    def s3(self):
        return prod_stack.s3_client(self.stack)

    def s3_keys(self, bucket: str = prod_stack.ARTIFACT_BUCKET) -> list[str]:
        client, keys, token = self.s3(), [], None
        while True:
            page = client.list_objects_v2(Bucket=bucket, **({"ContinuationToken": token} if token else {}))
            keys += [o["Key"] for o in page.get("Contents", [])]
            token = page.get("NextContinuationToken")
            if not token:
                return keys

    def log(self, part: str) -> str:
        path = self.stack.dir / "logs" / f"{part}.log"
        return path.read_text(errors="replace") if path.is_file() else ""


def _script(*args: str, timeout_s: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "prod_stack.py"), *args], capture_output=True,
                          text=True, timeout=timeout_s, cwd=ROOT)


@pytest.fixture(scope="session")
def prod(tmp_path_factory, triton_venv) -> Iterator[ProdStack]:
    """The stack, up, with the lifecycle DAGs active (new DAGs start paused, as in production)."""
    state = tmp_path_factory.mktemp("prod-stack")
    tag = uuid.uuid4().hex[:8]
    args = ["start", "--state", str(state), "--free-ports", "--db-prefix", f"modelops_test_{tag}",
            "--postgres", os.environ.get("MODELOPS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"),
            "--redis", os.environ.get("MODELOPS_TEST_REDIS", "redis://127.0.0.1:6379/0"),
            # a queue of its own: another stack's worker on the same Redis never takes this stack's tasks
            "--env", f"AIRFLOW__OPERATORS__DEFAULT_QUEUE=modelops-test-{tag}",
            "--env", f"AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT={HEARTBEAT_TIMEOUT_S}"]
    t0 = time.monotonic()
    started = _script(*args, timeout_s=START_TIMEOUT_S)
    try:
        if started.returncode != 0:
            pytest.fail(f"the production stack did not start ({started.returncode}):\n{started.stdout}\n"
                        f"{started.stderr[-6000:]}")
        print(f"\nproduction stack up in {time.monotonic() - t0:.0f} s\n{started.stdout}")
        stack = prod_stack.Stack.load(state)
        client = prod_stack.AirflowClient.of(stack)
        for dag_id in LIFECYCLE_DAGS:
            _wait_dag(client, dag_id)
            client.set_paused(dag_id, False)
        yield ProdStack(stack, client, prod_stack.webhook_secret(stack))
    finally:
        stopped = _script("stop", "--state", str(state), "--purge", timeout_s=180)
        assert stopped.returncode == 0, stopped.stderr


def _wait_dag(client: prod_stack.AirflowClient, dag_id: str, timeout_s: float = 120) -> None:
    """Wait until the DAG processor has parsed ``dag_id`` into the metadata database."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client.call("GET", f"/dags/{dag_id}")
            return
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)

