"""
### Retire — one DAG per model in `config/models/`

Monthly (`retirement.schedule`): archives the versions nobody needs any more, unloads them from Triton
and tags them `retired`; every step is a record in the audit ledger.

1. **evaluate**: the rules of the model's `retirement:` settings, each with its reason:
   *superseded* (no `@champion`, `@previous_champion` or `@challenger` for more than
   `superseded_days`, from the ledger's alias history), *quality_floor* (a KPI's mean over the
   version's last monitored hours below `minimum`), *unusable_data* (the version or its training run
   tagged `unusable_data_tag` = true) and *manual* (listed in `manual`). **Never** retired: the
   versions `@champion`, `@previous_champion` and `@challenger` point at, any version Triton has
   loaded (or its `config.pbtxt` lists), and versions already retired: the plan lists them as
   protected, with why. Writes the `retire_planned` record. If Triton does not answer, the run fails
   here and nothing is retired.
2. **notify_owners**: the plan to the model's Slack channel (`alerts:`), or the log without a Slack
   connection.
3. Per candidate (mapped: one version's failure does not stop the others), in the task group
   **retire_version**:
   **archive** (the MLflow model, its training run with metrics, params and artifacts, its ledger
   records and evidence pack, to `retirement.archive_uri`: a folder or S3) → **verify** (every file
   against the store's SHA-256) → **unload** (asks Triton again; a loaded version is refused; removes
   the exported files) → **mark_retired** (only after a verified archive; removes the aliases left on
   it; tags `retired=true`, `retired.archive`, `retired.at`, `retired.reason`; in the model's alias
   pool). A failed step writes `retire_failed` and changes nothing in the registry; a retry completes.

`dry_run` only reports: the plan, the notice and one `retire_planned` record with `dry_run: true`.
Bring a retired version back with `restore_<model>`; the rollback DAG refuses a retired target.
"""

from __future__ import annotations

from airflow.sdk import Param, dag, task_group

from include.dag_ids import Stage, alias_pool, dag_id
from modelops.dags import dag_args, register_per_model
from modelops.governance import retirement_tasks as t


def build(config):
    @dag(
        dag_id=dag_id(Stage.RETIRE, config.name),
        description=f"Archive, unload and retire {config.name} versions nobody needs (never a live one)",
        doc_md=__doc__,
        schedule=config.retirement.schedule,
        **dag_args(config, "retirement", "archive"),
        params={"dry_run": Param(False, type="boolean",
                                 description="Only report what would be retired (and record the plan); change nothing")},
    )
    def retire():
        plan = t.evaluate(config.name)
        to_retire = t.notify_owners(config.name, plan)

        @task_group(group_id="retire_version")
        def retire_version(candidate):
            archived = t.archive(config.name, candidate)
            verified = t.verify(config.name, candidate, archived)
            unloaded = t.unload(config.name, candidate)
            retired = t.mark_retired.override(pool=alias_pool(config.name))(config.name, candidate, verified)
            verified >> unloaded >> retired

        # main flow
        retire_version.expand(candidate=to_retire)

    return retire()


register_per_model(globals(), build)
