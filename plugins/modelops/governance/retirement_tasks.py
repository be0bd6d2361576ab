"""Task functions of the retirement and restore DAGs: each reads the context and calls :mod:`include.governance.retirement`.

Retirement: evaluate → notify the owners → per candidate (mapped): archive → verify → unload →
mark retired. A plan is :meth:`include.governance.retirement.RetirementPlan.as_dict` plus ``dry_run``;
a candidate is :meth:`~include.governance.retirement.Candidate.as_dict` (``{"version", "reasons"}``).
The archive store comes from the model's ``retirement:`` settings
(:func:`modelops.governance.archive_s3.archive_store`: a folder, or S3 through the Amazon provider);
MLflow from :class:`modelops.mlflow_hook.MlflowHook`, Triton from :class:`modelops.serving.hooks.TritonHook`.
A refusal (:class:`~include.governance.retirement.RetirementError`) or a broken archive
(:class:`~include.governance.archive.ArchiveError`) fails the task for good (a retry would find the
same); anything else (a store or server that did not answer) is retried.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import task
from airflow.sdk.exceptions import AirflowFailException

from include.config import get_model_config
from modelops.context import actor, ids
from modelops.mlflow_hook import MlflowHook
from modelops.serving.hooks import TritonHook

log = logging.getLogger(__name__)

# include.governance.retirement (mlflow, pandas) is imported inside the tasks: this module is imported
# while DAGs are parsed.
EVALUATE_TASK = "evaluate"
DEFAULT_RETIRE_REASON = "monthly retirement"
DEFAULT_RESTORE_REASON = "restore from the archive"


def archive_store_for(model: str):
    """The archive store of ``model``'s ``retirement:`` settings (``archive_uri``, ``aws_conn_id``, ``storage_class``)."""
    from modelops.governance.archive_s3 import archive_store

    settings = get_model_config(model).retirement
    return archive_store(settings.archive_uri, aws_conn_id=settings.aws_conn_id, storage_class=settings.storage_class)


def _because(context: Any, reason: str):
    from include.promotion.registry import Because

    keys = ids(context)
    return Because(actor(context), reason, keys["dag_id"], keys["run_id"])


def _attempt(context: Any) -> int | None:
    ti = context.get("ti")
    return getattr(ti, "try_number", None)


def _refused(call, *args, **kwargs):
    """Run a retirement step; a refusal or a broken archive fails the task without retries."""
    from include.governance.archive import ArchiveError
    from include.governance.retirement import RetirementError

    try:
        return call(*args, **kwargs)
    except (RetirementError, ArchiveError) as exc:
        raise AirflowFailException(str(exc)) from None


def _served(model: str) -> dict[str, str]:
    """What Triton serves (or will load) of ``model``; fails the task when Triton does not answer."""
    from include.governance.retirement import served_on_triton
    from include.serving.triton.client import TritonError

    hook = TritonHook()
    try:
        return served_on_triton(hook.client, hook.model_repository, model)
    except TritonError as exc:
        raise AirflowFailException(f"Triton at {hook.url} did not say which versions of {model} it has loaded ({exc}): "
                                   "nothing is retired while that is unknown") from None


# --- retirement DAG ------------------------------------------------------------------------------


@task(task_id=EVALUATE_TASK)
def evaluate(model: str, **context: Any) -> dict:
    """Apply the retirement rules; write the ``retire_planned`` record (``dry_run`` from the run's params).

    Returns the plan with ``dry_run``. Triton is asked which versions it has loaded (they are protected);
    when it does not answer, the task fails and nothing is retired.
    """
    from include.governance import retirement

    dry_run = bool(context["params"].get("dry_run"))
    plan = retirement.candidates(MlflowHook().client, get_model_config(model), served_versions=_served(model),
                                 now=datetime.now(UTC))
    retirement.record_plan(plan, dry_run=dry_run, because=_because(context, DEFAULT_RETIRE_REASON))
    return {**plan.as_dict(), "dry_run": dry_run}


@task
def notify_owners(model: str, plan: dict, **context: Any) -> list[dict]:
    """Tell the model's channel (``alerts:`` of its config; the log without a Slack connection) what is retired
    and what is protected. Returns the candidates the run acts on: none in a dry run."""
    from include.governance.retirement import RetirementPlan, plan_alert
    from modelops.notify import airflow_url, notify

    keys = ids(context)
    decided = RetirementPlan.from_dict(plan)
    dry_run = bool(plan.get("dry_run"))
    alerts = get_model_config(model).alerts
    alert = plan_alert(decided, dry_run=dry_run, run=keys["run_id"],
                       links={"Airflow run": airflow_url(keys["dag_id"], keys["run_id"])})
    notify(alert, conn_id=alerts.slack_conn_id, channel=alerts.channel)
    if dry_run:
        log.info("Dry run: %s would be retired; nothing is changed", decided.versions or "no version")
        return []
    return [c.as_dict() for c in decided.candidates]


@task
def archive(model: str, candidate: dict, **context: Any) -> dict:
    """Collect the version (with its ledger records and evidence pack) and upload it to the archive store."""
    from include.governance.retirement import archive_version

    return _refused(archive_version, MlflowHook().client, archive_store_for(model), model, str(candidate["version"]),
                    because=_because(context, DEFAULT_RETIRE_REASON), attempt=_attempt(context))


@task
def verify(model: str, candidate: dict, archived: dict, **context: Any) -> dict:
    """Check every archived file against the store's SHA-256 and the manifest against the one archived."""
    from include.governance.retirement import verify_archive

    result = _refused(verify_archive, None, archive_store_for(model), model, str(candidate["version"]),
                      because=_because(context, DEFAULT_RETIRE_REASON), attempt=_attempt(context))
    if result["manifest_sha256"] != archived["manifest_sha256"]:
        raise AirflowFailException(f"{result['archive']}: the stored manifest changed since it was archived")
    return result


@task
def unload(model: str, candidate: dict, **context: Any) -> dict:
    """Remove the version's exported files from Triton's repository; refused if Triton has it loaded."""
    from include.governance.retirement import unload_version

    hook = TritonHook()
    return _refused(unload_version, hook.client, hook.model_repository, model, str(candidate["version"]),
                    because=_because(context, DEFAULT_RETIRE_REASON), attempt=_attempt(context))


@task
def mark_retired(model: str, candidate: dict, verified: dict, **context: Any) -> dict:
    """Tag the version retired (its archive verified again first); aliases on it removed. Runs in the alias pool."""
    from include.governance.retirement import Candidate, Reason
    from include.governance.retirement import mark_retired as retire

    reasons = tuple(Reason(r["rule"], r["detail"]) for r in candidate.get("reasons") or ())
    return _refused(retire, MlflowHook().client, archive_store_for(model), model, str(candidate["version"]),
                    reason=Candidate(str(candidate["version"]), reasons).reason_text or DEFAULT_RETIRE_REASON,
                    because=_because(context, DEFAULT_RETIRE_REASON), served_versions=_served(model),
                    attempt=_attempt(context))


# --- restore DAG ---------------------------------------------------------------------------------


@task
def check_archive(model: str, version: str, **context: Any) -> dict:
    """The archive of the ``version`` param exists and every file matches its SHA-256 in the store."""
    from include.governance import archive as archives
    from include.governance.retirement import archive_uri

    store = archive_store_for(model)
    manifest = _refused(archives.verify, store, archives.archive_prefix(model, str(version)))
    return {"archive": archive_uri(store, model, str(version)), "manifest_sha256": manifest.sha256,
            "files": len(manifest.files)}


@task
def restore(model: str, version: str, checked: dict, **context: Any) -> str:
    """Register the archive as a new version (``restored_from``), every file's SHA-256 checked; returns it."""
    from include.governance.retirement import restore_version

    reason = str(context["params"].get("reason") or "").strip() or DEFAULT_RESTORE_REASON
    restored = _refused(restore_version, MlflowHook().client, archive_store_for(model), model, str(version),
                        because=_because(context, reason))
    log.info("%s version %s restored from %s as version %s", model, version, checked["archive"], restored.version)
    return str(restored.version)
