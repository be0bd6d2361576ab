"""
### Restore — one DAG per model in `config/models/`

Brings a retired (archived) version back, from the model's archive (`retirement.archive_uri`), as a
**new** version: trigger it with `version`, the version number that was archived.

1. **check_archive**: the archive `<archive_uri>/<model>/<version>/` exists and every file its
   manifest lists matches the store's SHA-256 (an archive in S3 Glacier must be restored by S3 first).
2. **restore**: downloads it, checks every file's SHA-256 again, and registers it as a new version
   with the original's description and tags, `restored_from=<model>/<version>` and
   `restored_archive=<uri>`, and a training run holding the original's params, metric history and
   artifacts. No alias is set: promote the new version like any other. A `restore` record goes into
   the audit ledger. Running it again returns the version already restored (unless that one was
   retired since).
"""

from __future__ import annotations

from airflow.sdk import Param, dag

from include.dag_ids import Stage, dag_id
from modelops.dags import dag_args, register_per_model
from modelops.governance import retirement_tasks as t


def build(config):
    @dag(
        dag_id=dag_id(Stage.RESTORE, config.name),
        description=f"Restore an archived {config.name} version as a new version",
        doc_md=__doc__,
        schedule=None,
        **dag_args(config, "retirement", "archive"),
        params={
            "version": Param(type="string", pattern=r"^[0-9]+$",
                             description="The archived (retired) version to bring back"),
            "reason": Param(t.DEFAULT_RESTORE_REASON, type="string", minLength=1,
                            description="Why (goes into the audit record)"),
        },
    )
    def restore():
        checked = t.check_archive(config.name, "{{ params.version }}")
        restored = t.restore(config.name, "{{ params.version }}", checked)

        # main flow
        checked >> restored

    return restore()


register_per_model(globals(), build)
