"""From a drift alert to the retrained model serving on Triton as ``@champion``, on the loopback production stack.

Starts the production stack (``scripts/prod_stack.py``: Airflow's scheduler, DAG processor, triggerer
and a Celery worker on PostgreSQL and Redis, an MLflow server on PostgreSQL with S3 artifacts,
Triton) in a temp state folder with databases of its own, makes a first champion from the demo
data (trigger -> live, timed too), then ``--repeat`` times writes a new demo snapshot, posts a signed
Alertmanager alert naming it to the drift webhook, and waits until the retrained version is
``@champion`` and live on Triton (the no-regression gate is opened in a copy of ``config/``: the
bench times the path, not the snapshot's model quality). Each repeat is split by stage from Airflow's own timestamps
(REST API): webhook -> run queued, the training run (training itself, the other tasks, scheduling and
executor delays), the asset event -> promotion, the promotion run, the asset event -> deployment,
the deployment run. Prints a table and writes ``bench/results/drift_to_champion.md``.

    PYTHONPATH=.:plugins .venv/bin/python bench/drift_to_champion.py [--repeat 2] [--keep]

Needs the PostgreSQL and Redis the machine runs (``--postgres``, ``--redis``) and ``.venv-triton``
(``make triton``). The stack is stopped and its databases dropped at the end (``--keep`` keeps it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "plugins")]

from bench._common import machine_busy, write_results  # noqa: E402
from scripts import prod_stack  # noqa: E402

MODEL = "credit_approval"
TRAIN, PROMOTE, DEPLOY, ROLLBACK = (f"{s}_{MODEL}" for s in ("train", "promote", "deploy", "rollback"))
WEBHOOK = "/modelops/api/v1/drift-alerts"
RESULTS = ROOT / "bench" / "results" / "drift_to_champion.md"
TIMEOUT_S = 600
TARGET_S = 300


def _t(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _secs(a: datetime | None, b: datetime | None) -> float:
    return (b - a).total_seconds() if a and b else float("nan")


class Timeline:
    """One DAG run's timestamps: queued, start, end, and its task instances' (queued, start, end, duration)."""

    def __init__(self, client: prod_stack.AirflowClient, dag_id: str, run_id: str) -> None:
        run = client.run(dag_id, run_id)
        self.dag_id, self.state = dag_id, run["state"]
        self.queued, self.start, self.end = _t(run["queued_at"]), _t(run["start_date"]), _t(run["end_date"])
        self.tasks = {tid: ti for tid, ti in client.task_instances(dag_id, run_id).items() if ti["start_date"]}

    def task_seconds(self, *only: str) -> float:
        return sum(ti["duration"] or 0 for tid, ti in self.tasks.items() if not only or tid in only)

    def task_end(self, task_id: str) -> datetime | None:
        return _t(self.tasks[task_id]["end_date"]) if task_id in self.tasks else None

    @property
    def wall(self) -> float:
        return _secs(self.queued, self.end)

    @property
    def scheduling(self) -> float:
        """The run's wall time not spent running a task: the scheduler's and the executor's delays
        (run queued -> started, task ready -> queued -> running on the worker)."""
        return self.wall - self.task_seconds()


def _wait_new(client: prod_stack.AirflowClient, dag_id: str, known: set[str]) -> str:
    run = client.wait_new_run(dag_id, known, TIMEOUT_S, poll_s=0.5)
    done = client.wait_run(dag_id, run["dag_run_id"], TIMEOUT_S, poll_s=0.5)
    if done["state"] != "success":
        raise RuntimeError(f"{dag_id} run {run['dag_run_id']} {done['state']}: "
                           f"{ {t: ti['state'] for t, ti in client.task_instances(dag_id, run['dag_run_id']).items()} }")
    return run["dag_run_id"]


def _known(client: prod_stack.AirflowClient) -> dict[str, set[str]]:
    return {d: {r["dag_run_id"] for r in client.runs(d)} for d in (TRAIN, PROMOTE, DEPLOY)}


def _champion(stack: prod_stack.Stack) -> str:
    from mlflow.tracking import MlflowClient

    return str(MlflowClient(stack.mlflow_url, stack.mlflow_url).get_model_version_by_alias(MODEL, "champion").version)


def _served(stack: prod_stack.Stack) -> str:
    from include.config import get_model_config
    from include.demo.datagen import generate_batch
    from include.serving.triton.client import TritonClient

    features = generate_batch(5, seed=11)[get_model_config(MODEL).dataset.feature_names]
    return TritonClient(stack.triton_url).infer_with_version(MODEL, features)[1]


def _chain(client, stack, known, train_run_id: str, t0: float, posted: datetime | None) -> dict:
    """Wait for the training run and the promotion and deployment it starts; the stage split."""
    done = client.wait_run(TRAIN, train_run_id, TIMEOUT_S, poll_s=0.5)
    if done["state"] != "success":
        raise RuntimeError(f"training run {train_run_id} {done['state']}")
    promote_id = _wait_new(client, PROMOTE, known[PROMOTE])
    deploy_id = _wait_new(client, DEPLOY, known[DEPLOY])
    live_s = time.monotonic() - t0
    champion, served = _champion(stack), _served(stack)
    if champion != served:
        raise RuntimeError(f"@champion is version {champion} but Triton answers with version {served}")
    train, promote, deploy = (Timeline(client, d, r) for d, r in
                              ((TRAIN, train_run_id), (PROMOTE, promote_id), (DEPLOY, deploy_id)))
    if train.tasks.get("train", {}).get("state") != "success":
        raise RuntimeError("the training run did not train (data already trained on?)")
    return {
        "version": champion,
        "webhook -> run queued": _secs(posted, train.queued) if posted else float("nan"),
        "training run": train.wall,
        "  training (train task)": train.task_seconds("train"),
        "  validate, fingerprint, evaluate, register": train.task_seconds() - train.task_seconds("train"),
        "  training run: scheduling + executor delays": train.scheduling,
        "asset event -> promotion queued": _secs(train.task_end("register"), promote.queued),
        "promotion run": promote.wall,
        "  promotion: scheduling + executor delays": promote.scheduling,
        "asset event -> deployment queued": _secs(promote.task_end("promote"), deploy.queued),
        "deployment run": deploy.wall,
        "  deployment: scheduling + executor delays": deploy.scheduling,
        "scheduling + executor delays, all runs": train.scheduling + promote.scheduling + deploy.scheduling,
        "end to end (client clock)": live_s,
    }


def _bench_config(state: Path) -> Path:
    """A copy of ``config/`` whose no-regression gate lets every retrained version through.

    The bench times the path to a new champion; whether a snapshot's model is better than the last
    is the data's business (a random demo snapshot may score 0.01 below it and be refused).
    """
    import shutil

    import yaml

    target = state / "config"
    shutil.copytree(ROOT / "config", target, dirs_exist_ok=True)
    path = target / "models" / f"{MODEL}.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["gates"]["max_regression"] = 1.0
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return target


def run_bench(args: argparse.Namespace) -> list[dict]:
    from include.data.dataset import write_dataset
    from include.demo.datagen import generate_batch
    from include.inbound.signatures import signed_headers

    tag = uuid.uuid4().hex[:8]
    state = Path(args.state or tempfile.mkdtemp(prefix="modelops-bench-prod-"))
    stack = prod_stack.Stack(state=str(state), postgres=args.postgres, redis=args.redis,
                             db_prefix=f"modelops_bench_{tag}",
                             extra_env={"AIRFLOW__OPERATORS__DEFAULT_QUEUE": f"modelops-bench-{tag}",
                                        "MODELOPS_CONFIG_DIR": str(_bench_config(state))})
    for name in ("airflow_port", "mlflow_port", "s3_port", "triton_port", "triton_grpc_port", "triton_metrics_port"):
        setattr(stack, name, prod_stack._free_port())
    t_start = time.monotonic()
    prod_stack.start(stack)
    results = []
    try:
        client = prod_stack.AirflowClient.of(stack)
        for dag_id in (TRAIN, PROMOTE, DEPLOY, ROLLBACK):
            deadline = time.monotonic() + 120
            while True:
                try:
                    client.set_paused(dag_id, False)
                    break
                except RuntimeError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(1)
        print(f"stack up in {time.monotonic() - t_start:.0f} s", flush=True)

        known = _known(client)
        t0 = time.monotonic()
        first = client.trigger(TRAIN, {"force": True})
        seed = _chain(client, stack, known, first["dag_run_id"], t0, None)
        print(f"first champion (trigger -> live): version {seed['version']} in {seed['end to end (client clock)']:.0f} s",
              flush=True)

        secret = prod_stack.webhook_secret(stack)
        for i in range(args.repeat):
            data = stack.dir / "data" / MODEL / f"bench-snapshot-{i + 2}.parquet"
            write_dataset(generate_batch(args.rows, seed=100 + i), str(data))
            alert = {"version": "4", "status": "firing", "receiver": "modelops",
                     "groupKey": "{}:{alertname=\"FeatureDrift\"}",
                     "alerts": [{"status": "firing", "labels": {"alertname": "FeatureDrift", "model": MODEL},
                                 "annotations": {"summary": "bench drift", "dataset_uri": str(data)},
                                 "startsAt": "2026-11-22T10:00:00Z", "fingerprint": f"bench{tag}{i:04d}"}]}
            body = json.dumps(alert).encode()
            known = _known(client)
            busy0 = machine_busy()
            t0, posted = time.monotonic(), datetime.now(UTC)
            answer = httpx.post(f"{stack.airflow_url}{WEBHOOK}", content=body, timeout=60,
                                headers={"Content-Type": "application/json", **signed_headers(secret, body)})
            answer.raise_for_status()
            (started,) = answer.json()["runs"]
            result = _chain(client, stack, known, started["run_id"], t0, posted)
            result["machine CPU busy (s)"] = machine_busy() - busy0
            results.append(result)
            print(f"repeat {i + 1}: alert -> version {result['version']} live in "
                  f"{result['end to end (client clock)']:.0f} s", flush=True)
        return [seed, *results]
    finally:
        if not args.keep:
            prod_stack.stop(stack, purge=True)


def _report(results: list[dict], args: argparse.Namespace) -> str:
    seed, repeats = results[0], results[1:]
    keys = [k for k in repeats[0] if k != "version"]
    lines = ["## Drift alert -> retrained @champion live on Triton (loopback production stack)", "",
             f"{datetime.now(UTC):%Y-%m-%d}, {os.cpu_count()} cores, demo data {args.rows} rows, "
             f"Celery worker concurrency {prod_stack.Stack(state='').worker_concurrency}. "
             f"Target: under {TARGET_S} s end to end.", "",
             "| stage (seconds) | " + " | ".join(f"repeat {i + 1}" for i in range(len(repeats))) + " |",
             "|---|" + "---:|" * len(repeats)]
    for key in keys:
        lines.append(f"| {key} | " + " | ".join(f"{r[key]:.1f}" for r in repeats) + " |")
    lines += ["", f"The first champion of the run (REST trigger -> live, not an alert): "
                  f"{seed['end to end (client clock)']:.0f} s (training run {seed['training run']:.0f} s)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--state", default=None, help="state folder (default: a new temp folder)")
    parser.add_argument("--keep", action="store_true", help="leave the stack running")
    parser.add_argument("--no-write", action="store_true", help="print only, do not update bench/results")
    args = parser.parse_args(argv)
    results = run_bench(args)
    section = _report(results, args)
    print(section)
    if not args.no_write:
        write_results(RESULTS, "# Drift alert to champion (bench/drift_to_champion.py)", section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
