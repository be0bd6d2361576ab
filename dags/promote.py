"""
### Promote — one DAG per model in `config/models/`

Runs when a new `@challenger` is registered (asset event) or manually with a `version`.

Gates, each recorded as a tag on the version (`gate.<name>`, `gates.result`, `gates.detail`):
- **min_metric**: the primary metric reaches the configured minimum;
- **no_regression**: not worse than the current `@champion` by more than the allowed regression;
- **compliance**: the required compliance tags are present;
- **validation**: the audit ledger holds a passed validation of the version's training data
  (its `data_fingerprint`): a version registered from data nobody validated is never promoted.
- **shadow** (when `gates.shadow` is configured): the version then runs beside the champion on live
  traffic on Triton (`serving.challenger.mode`: shadow or canary), the DAG waits, deferred, until hourly
  monitoring has `min_hours` / `min_requests` of evidence (or `deadline_hours` pass), and the gate
  judges agreement and the KPIs against the champion's on the same traffic. A failure takes the
  challenger off Triton; a promotion is followed by the deployment, which does.

Then, when the model's config asks for it, a **human approval** in the Airflow UI. On success
`@champion` moves to the version and the replaced champion becomes `@previous_champion`; every
gate decision, the human's Approve or Reject, and each alias move is a record in the audit ledger. A failing gate leaves the champion untouched. Runs never overlap
(`max_active_runs=1`), and the move itself runs in the model's one-slot pool
`modelops_aliases_<model>`, shared with the rollback DAG's switch and the deployment's automatic
rollback: alias moves (last-writer-wins in MLflow) never interleave, across DAGs either.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, dag

from include.dag_ids import Stage, alias_pool, dag_id
from modelops.assets import challenger_asset, champion_asset
from modelops.dags import dag_args, register_per_model
from modelops.promotion import tasks as t
from modelops.promotion.operators import AuditedApprovalOperator, ShadowEvidenceSensor


def build(config):
    @dag(
        dag_id=dag_id(Stage.PROMOTE, config.name),
        description=f"Gate and promote {config.name} @challenger to @champion",
        doc_md=__doc__,
        schedule=[challenger_asset(config.name)],
        **dag_args(config, "promotion"),
        params={"version": Param(None, type=["null", "string"], description="Version to promote; empty = the @challenger")},
    )
    def promotion():
        candidate = t.resolve_candidate(config.name, "{{ params.version or '' }}")
        gates = t.check_gates(config.name, candidate)
        shadow = config.gates.shadow
        if shadow is not None:  # the candidate proves itself on live traffic first
            started = t.start_challenger(config.name, candidate, gates)
            evidence = ShadowEvidenceSensor(
                task_id="wait_for_live_evidence", model=config.name,
                version="{{ ti.xcom_pull(task_ids='resolve_candidate') }}", deadline_hours=shadow.deadline_hours,
                poll_seconds=shadow.poll_seconds, retries=0)
            started >> evidence
            gates = t.check_shadow_gate(config.name, candidate, evidence.output, gates)
        promoted = t.promote.override(outlets=[champion_asset(config.name)], pool=alias_pool(config.name))(
            config.name, candidate, gates)

        if config.approval.required:
            approval = AuditedApprovalOperator(
                task_id="approve",
                model=config.name,
                subject=f"Promote {config.name} to champion?",
                body="Version {{ ti.xcom_pull(task_ids='resolve_candidate') }} passed the gates:\n\n"
                "{{ ti.xcom_pull(task_ids='check_gates') }}",
                response_timeout=timedelta(hours=config.approval.timeout_hours),
                retries=0,
            )
            gates >> approval >> promoted

    return promotion()


register_per_model(globals(), build)
