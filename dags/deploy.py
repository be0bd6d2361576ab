"""
### Deploy — one DAG per model in `config/models/`

Puts `@champion` live on NVIDIA Triton, verified, whenever the champion changes (asset event from
promotion) or on demand. Only `@champion` is deployed: a `version` param must be the champion
(another version goes live through promotion or the rollback DAG, whose checks apply).

1. **plan**: refuses a champion that is retired, quarantined, trained on data that failed
   validation, did not pass its gates, or was not made champion by a recorded promotion or
   rollback; the fallback is the champion before it on record (when it may be rolled back to).
2. **export** the version to the Triton model repository (ONNX + python backend, dynamic batching),
   keeping the fallback loaded when its version number is lower (Triton answers unversioned requests
   with the highest loaded version): a switch back is instant. A no-op if present.
3. **load** through Triton's repository API, then **wait_ready** in the triggerer (deferrable).
4. **verify**: a smoke inference and a parity check of Triton's outputs against the MLflow model's
   on held-out rows.
5. **mark_live**: checks that Triton answers with the version, sets the `serving.triton` tags from
   Triton's status (`live` on exactly one version, `standby`, `unloaded`) and writes an audit record.
6. **stop_challenger**: when the new champion ran as the challenger on live traffic (shadow or canary),
   its challenger copy is taken off Triton.

If export, load, readiness or verification fails, **roll_back_failed_deployment**
records the failure on the version, moves `@champion` back to the fallback, Triton serves it alone,
the tags follow, and an audit record and a critical alert say why.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, dag

from include.dag_ids import Stage, alias_pool, dag_id
from modelops.assets import champion_asset
from modelops.dags import dag_args, register_per_model
from modelops.serving import tasks as t
from modelops.serving.operators import TritonModelReadyOperator


def build(config):
    @dag(
        dag_id=dag_id(Stage.DEPLOY, config.name),
        description=f"Deploy {config.name} @champion to Triton, verified, with automatic rollback",
        doc_md=__doc__,
        schedule=[champion_asset(config.name)],
        **dag_args(config, "deployment", "triton", retry_delay=timedelta(seconds=30)),
        params={"version": Param(None, type=["null", "string"],
                                 description="Version to deploy; must be @champion (empty = @champion)")},
    )
    def deployment():
        planned = t.plan(config.name, "{{ params.version or '' }}")
        exported = t.export(config.name, planned)
        loaded = t.load(config.name, planned)
        ready = TritonModelReadyOperator(task_id="wait_ready", model=config.name, version=planned["version"], timeout=300)
        verified = t.verify(config.name, planned)
        live = t.mark_live(config.name, planned, verified)
        stopped = t.stop_challenger(config.name, planned)
        recovered = t.roll_back_failed_deployment.override(pool=alias_pool(config.name))(config.name)

        # main flow
        exported >> loaded >> ready >> verified >> live >> stopped
        [exported, loaded, ready, verified] >> recovered

    return deployment()


register_per_model(globals(), build)
