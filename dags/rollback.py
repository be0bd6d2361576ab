"""
### Rollback — one DAG per model in `config/models/`

Moves `@champion` back to the champion before it (or to `target_version`), verified on Triton
first, with an audit record saying who and why. Trigger it from the UI, the REST API or monitoring.

1. **roll_back**: checks the target and plans; a refused target fails here and nothing moves. A
   target must exist, have passed its gates, have been `@champion` before, and be neither retired,
   quarantined, trained on data that failed validation, nor rolled back from, rejected or failed
   deployment since. `force` (with a `reason` of your own) overrides those checks in an emergency;
   the audit record lists what it overrode.
2. **export** the target beside the champion (which keeps serving), **load**, **wait_ready**, **verify**.
3. **switch**: `@champion` → target, Triton serves it alone, `serving.triton` tags follow Triton,
   `@previous_champion` becomes the champion before the target (none: removed).

If export, load, readiness or verification fails, **restore_after_failed_rollback** records the
failure on the target and makes Triton serve `@champion` (unchanged) alone again.
Idempotent: after a rollback from 2 to 1, the same rollback changes nothing, and the next one (no
`target_version`) goes to the champion before 1, never back to 2. With `from_version` (monitoring
sets it), a run whose champion has moved since it was asked for does nothing.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, dag

from include.dag_ids import Stage, alias_pool, dag_id
from modelops.dags import dag_args, register_per_model
from modelops.serving import tasks as t
from modelops.serving.operators import TritonModelReadyOperator


def build(config):
    @dag(
        dag_id=dag_id(Stage.ROLLBACK, config.name),
        description=f"Roll {config.name} @champion back, verified on Triton first",
        doc_md=__doc__,
        schedule=None,
        **dag_args(config, "rollback", "triton", retry_delay=timedelta(seconds=30)),
        params={
            "target_version": Param(None, type=["null", "string"],
                                    description="Version to roll back to; empty = the champion before the current one"),
            "reason": Param(t.DEFAULT_ROLLBACK_REASON, type="string", minLength=1,
                            description="Why (goes into the audit record); a forced rollback needs one of its own"),
            "force": Param(False, type="boolean",
                           description="Emergency override of the target checks (gates, history, retirement, "
                                       "quarantine); audited with the reason"),
            "from_version": Param(None, type=["null", "string"],
                                  description="Only roll back while @champion is this version; empty = any"),
        },
    )
    def rollback():
        planned = t.roll_back(config.name)
        exported = t.export(config.name, planned)
        loaded = t.load(config.name, planned)
        ready = TritonModelReadyOperator(task_id="wait_ready", model=config.name, version=planned["version"], timeout=300)
        verified = t.verify(config.name, planned)
        switched = t.switch.override(pool=alias_pool(config.name))(config.name, planned, verified)
        restored = t.restore_after_failed_rollback(config.name)

        # main flow
        exported >> loaded >> ready >> verified >> switched
        [exported, loaded, ready, verified] >> restored

    return rollback()


register_per_model(globals(), build)
