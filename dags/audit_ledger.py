"""
### Audit ledger — one DAG for the installation

Daily, and on demand, for the hash-chained audit ledger every lifecycle DAG writes to:

1. **verify** walks the chain against its anchors in MLflow. A ledger whose records were edited,
   inserted, deleted, reordered or truncated fails here, naming the first record; nothing is anchored
   and the failure alerts (Slack when the connection is set).
2. **anchor** writes the verified head's sequence number and hash as a tag of the ledger's MLflow
   run (experiment `modelops/ledger`) and in this task's log: places the ledger's writers cannot
   rewrite, so a later truncation or rewrite of the chain is found.
3. **apply_retention** deletes records older than `MODELOPS_LEDGER_RETENTION_DAYS` (default 400, at
   least 183: EU AI Act Art. 19), anchoring the first record it keeps, and records `ledger_pruned`.

The same from a shell: `python -m include.governance verify --anchor` and `… prune`.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag

from include.dag_ids import AUDIT_LEDGER
from modelops.dags import START_DATE
from modelops.governance import ledger_tasks as t
from modelops.notify import DagFailureNotifier


@dag(
    dag_id=AUDIT_LEDGER,
    description="Verify the audit ledger's hash chain, anchor its head in MLflow, apply retention",
    doc_md=__doc__,
    schedule="@daily",
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    tags=["modelops", "governance"],
    default_args={"owner": "modelops", "retries": 2, "retry_delay": timedelta(minutes=1)},
    on_failure_callback=DagFailureNotifier(model="audit_ledger"),
)
def audit_ledger():
    # main flow
    t.apply_retention(t.anchor(t.verify()))


audit_ledger()
