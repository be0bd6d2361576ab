"""What the tests on the production stack share: the lifecycle DAGs' ids, waiting for runs, reading the registry."""

from __future__ import annotations

MODEL = "credit_approval"
TRAIN, PROMOTE, DEPLOY, ROLLBACK = (f"{stage}_{MODEL}" for stage in ("train", "promote", "deploy", "rollback"))
LIFECYCLE_DAGS = (TRAIN, PROMOTE, DEPLOY, ROLLBACK)
RUN_TIMEOUT_S = 420


def states(prod, dag_id: str, run_id: str) -> dict[str, str]:
    """Task id -> state of one run."""
    return {task: ti["state"] for task, ti in prod.airflow.task_instances(dag_id, run_id).items()}


def succeeds(prod, dag_id: str, run_id: str, timeout_s: float = RUN_TIMEOUT_S) -> dict:
    """Wait for the run to end; it must have succeeded (the message has its task states)."""
    run = prod.airflow.wait_run(dag_id, run_id, timeout_s)
    assert run["state"] == "success", (dag_id, run_id, states(prod, dag_id, run_id))
    return run


def known(prod, *dag_ids: str) -> dict[str, set[str]]:
    """The run ids each DAG has now (to tell the runs that come later)."""
    return {dag_id: {r["dag_run_id"] for r in prod.airflow.runs(dag_id)} for dag_id in dag_ids or LIFECYCLE_DAGS}


def champion_goes_live(prod, before: dict[str, set[str]]) -> tuple[dict, dict]:
    """Wait for the asset-triggered promotion and deployment runs not in ``before``; both must succeed."""
    promotion = prod.airflow.wait_new_run(PROMOTE, before[PROMOTE], RUN_TIMEOUT_S)
    assert promotion["run_type"] == "asset_triggered", promotion
    succeeds(prod, PROMOTE, promotion["dag_run_id"])
    deployment = prod.airflow.wait_new_run(DEPLOY, before[DEPLOY], RUN_TIMEOUT_S)
    assert deployment["run_type"] == "asset_triggered", deployment
    succeeds(prod, DEPLOY, deployment["dag_run_id"])
    return promotion, deployment


def settle(prod, timeout_s: float = RUN_TIMEOUT_S) -> None:
    """Wait until no run of a lifecycle DAG is queued or running (what one test started ends before the next)."""
    for dag_id in LIFECYCLE_DAGS:
        for run in prod.airflow.runs(dag_id):
            if run["state"] not in ("success", "failed"):
                prod.airflow.wait_run(dag_id, run["dag_run_id"], timeout_s)


def records(prod, version: str, action: str | None = None) -> list[dict]:
    """The audit records on ``version`` (of one ``action``), oldest first, from the stack's ledger (PostgreSQL)."""
    from include.governance import audit

    return [r for r in audit.read(None, MODEL, str(version), ledger=prod.ledger())
            if action is None or r["action"] == action]


def training_data(prod, name: str, seed: int, rows: int = 20_000) -> str:
    """A demo dataset of the model in the stack's data folder (made once): its path."""
    from include.data.dataset import write_dataset
    from include.demo.datagen import generate_batch

    path = prod.stack.dir / "data" / MODEL / f"{name}.parquet"
    if not path.exists():
        write_dataset(generate_batch(rows, seed=seed), str(path))
    return str(path)


def train_to_champion(prod, conf: dict | None = None) -> tuple[dict, str]:
    """Trigger ``train_<model>`` over REST and wait until its version is ``@champion`` and live: (run, version)."""
    before = known(prod)
    run = prod.airflow.trigger(TRAIN, conf)
    succeeds(prod, TRAIN, run["dag_run_id"])
    champion_goes_live(prod, before)
    champion = prod.mlflow().get_model_version_by_alias(MODEL, "champion")
    return run, str(champion.version)


def champion_and_previous(prod) -> tuple[str, str]:
    """A ``@champion`` and a ``@previous_champion`` (trained on the default data, forced, when missing):
    (previous, champion) versions."""
    client = prod.mlflow()
    current_champion(prod)
    aliases = client.get_registered_model(MODEL).aliases
    if "previous_champion" not in aliases:
        train_to_champion(prod, {"force": True})
        aliases = client.get_registered_model(MODEL).aliases
    return str(aliases["previous_champion"]), str(aliases["champion"])


def current_champion(prod) -> str:
    """``@champion``'s version; trains one first (on the default data, forced) when the model has none."""
    client = prod.mlflow()
    registered = client.search_registered_models(f"name = '{MODEL}'")
    if not registered or "champion" not in client.get_registered_model(MODEL).aliases:
        return train_to_champion(prod, {"force": True})[1]
    return str(client.get_model_version_by_alias(MODEL, "champion").version)
