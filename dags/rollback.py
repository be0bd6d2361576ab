"""
### Rollback — one DAG per model in `config/models/`

Moves `@champion` back to `@previous_champion` (or to `target_version`), redeploys it on Triton and
verifies it, with an audit record saying who and why. Trigger it from the UI, the REST API or
monitoring.

Idempotent: triggering the same rollback twice does not step back two versions (after a rollback
`@previous_champion` is the version serving). A target that does not exist or was retired fails
before anything changes.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, dag

from modelops.dags import dag_args, register_per_model
from modelops.operators.triton import TritonModelReadyOperator
from modelops.tasks import deployment as t


def build(config):
    @dag(
        dag_id=f"rollback_{config.name}",
        description=f"Roll {config.name} @champion back and redeploy it",
        doc_md=__doc__,
        schedule=None,
        **dag_args(config, "rollback", "triton", retry_delay=timedelta(seconds=30)),
        params={
            "target_version": Param(None, type=["null", "string"], description="Version to roll back to; empty = @previous_champion"),
            "reason": Param("manual rollback", type="string", minLength=1, description="Why (goes into the audit record)"),
        },
    )
    def rollback():
        planned = t.roll_back(config.name, "{{ params.target_version or '' }}", "{{ params.reason }}")
        exported = t.export(config.name, planned)
        loaded = t.load(config.name, planned)
        ready = TritonModelReadyOperator(task_id="wait_ready", model=config.name, version=planned["version"], timeout=300)
        verified = t.verify(config.name, planned)

        # main flow
        exported >> loaded >> ready >> verified >> t.mark_live(config.name, planned, verified)

    return rollback()


register_per_model(globals(), build)
