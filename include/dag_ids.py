"""The lifecycle DAGs' ids: one DAG per model and stage, named ``<stage>_<model>``.

===============  ==================================  ===================
stage            DAG id (model ``credit_approval``)  DAG file
===============  ==================================  ===================
``train``        ``train_credit_approval``           ``dags/train.py``
``promote``      ``promote_credit_approval``         ``dags/promote.py``
``deploy``       ``deploy_credit_approval``          ``dags/deploy.py``
``rollback``     ``rollback_credit_approval``        ``dags/rollback.py``
``batch_score``  ``batch_score_credit_approval``     ``dags/batch_score.py``
``monitor``      ``monitor_credit_approval``         ``dags/monitor.py``
``retire``       ``retire_credit_approval``          ``dags/retire.py``
``restore``      ``restore_credit_approval``         ``dags/restore.py``
``freshness``    ``freshness_credit_approval``       ``dags/freshness.py``
===============  ==================================  ===================

The stage is the DAG file's name. One DAG serves the whole installation rather than a model:
``audit_ledger`` (:data:`AUDIT_LEDGER`, ``dags/audit_ledger.py``). Everything that names a lifecycle DAG builds the id here: the DAG
files, the drift webhook (it starts ``train_<model>``), monitoring (it starts ``rollback_<model>``
and ``train_<model>``), the daily freshness check (it proposes a ``train_<model>`` run) and the messages that tell a person which DAG to trigger. Nothing parses an
id back into its model: a model name may hold underscores (``batch_score_credit_approval`` could be
stage ``batch`` of model ``score_credit_approval``), so code that needs the model takes it from the
DAG's own data (the failure notifier is built per model in the DAG file).
"""

from __future__ import annotations

from enum import StrEnum


class Stage(StrEnum):
    """A lifecycle stage that has one DAG per model; its value is the DAG file's stem and the id's prefix."""

    TRAIN = "train"
    PROMOTE = "promote"
    DEPLOY = "deploy"
    ROLLBACK = "rollback"
    BATCH_SCORE = "batch_score"
    MONITOR = "monitor"
    RETIRE = "retire"
    RESTORE = "restore"
    FRESHNESS = "freshness"


AUDIT_LEDGER = "audit_ledger"  # dags/audit_ledger.py: one DAG for the installation, not per model
INSTALLATION_DAGS = (AUDIT_LEDGER,)


def dag_id(stage: Stage | str, model: str) -> str:
    """The id of ``model``'s DAG for ``stage``: ``dag_id(Stage.TRAIN, "credit_approval") == "train_credit_approval"``.

    ``stage`` may be given by value (``"batch_score"``, a DAG file's stem); a value that names no stage
    raises ``ValueError``, as does an empty ``model``.
    """
    if not model:
        raise ValueError("a lifecycle DAG id needs a model name")
    return f"{Stage(stage).value}_{model}"


def alias_pool(model: str) -> str:
    """The Airflow pool, one slot, that serialises ``model``'s alias moves: ``alias_pool("credit_approval") ==
    "modelops_aliases_credit_approval"``.

    MLflow's alias moves are last-writer-wins, so every task that moves ``model``'s aliases (promotion,
    the rollback DAG's switch, the deployment's automatic rollback) runs in this pool: across DAGs, one
    at a time per model, and a slot a crashed worker held is freed when the scheduler fails its task.
    The setup creates one per configured model (``scripts/prod_stack.py pools``; ``make up`` and
    ``make up-prod`` run it). An empty ``model`` raises ``ValueError``.
    """
    if not model:
        raise ValueError("an alias pool needs a model name")
    return f"modelops_aliases_{model}"
