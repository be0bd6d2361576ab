"""``make demo``: the model lifecycle end to end on embedded defaults, narrated.

Runs the real DAGs with ``dag.test()`` (Airflow's metadata DB in ``.modelops/airflow``, MLflow in
``.modelops/mlflow``), sends their logs to ``.modelops/logs/demo.log`` and prints what happened.
Run it again and it continues from the registry it finds: the same data is not retrained.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from include.dag_ids import Stage, dag_id

ROOT = Path(__file__).resolve().parent.parent
MODEL = "credit_approval"


@contextlib.contextmanager
def _logs_to(path: Path):
    """Send everything written to stdout/stderr (Airflow's task logs included) to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with path.open("a") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def say(text: str = "") -> None:
    print(text, flush=True)


def serve(config, run, bag, triton_url: str) -> bool:
    """Deploy @champion to the demo's Triton server and send it an hour of live traffic."""
    from include.demo.datagen import generate_batch
    from include.monitoring import inference_log
    from include.serving.online import predict
    from include.serving.triton.client import TritonClient

    say("6. Deployment DAG: export @champion to Triton (ONNX), load, wait until READY, smoke + parity check")
    states = run(bag.get_dag(dag_id(Stage.DEPLOY, MODEL)), dag_id(Stage.DEPLOY, MODEL))
    if states.get("mark_live") != "success":
        say("   -> deployment failed; see the log")
        return False
    traffic = generate_batch(500, seed=3, start="2026-11-22T09:00:00Z", hours=1)
    scores = predict(MODEL, traffic[config.dataset.feature_names], client=TritonClient(triton_url),
                     request_ids=traffic[config.dataset.id_column].tolist())
    say(f"7. Sent {len(traffic)} applications to Triton at {triton_url}: mean default probability "
        f"{scores.mean():.3f}; {int((scores >= 0.5).sum())} would be declined")
    time.sleep(config.serving.inference_log.flush_seconds + 1)  # Triton writes its buffered rows every few seconds
    logged = inference_log.read_hour(MODEL, datetime.now(UTC), source="online")  # logged by Triton at request time
    say(f"   inference log (written by Triton itself, for any client): {len(logged)} online predictions under "
        f"{inference_log.log_root()}")
    say("   query Triton yourself with curl: see README, 'Online serving'")
    return True


def score_batch(config, run, bag) -> bool:
    """Score one day of new applications with the daily Spark batch DAG."""
    import pandas as pd

    from include.config import resolve_uri
    from include.data.dataset import write_dataset
    from include.demo.datagen import generate_batch
    from include.monitoring import inference_log

    day = datetime(2026, 11, 21, tzinfo=UTC)
    applications = Path(resolve_uri(config.batch.input_uri))
    write_dataset(generate_batch(2_000, seed=4, start=day.isoformat(), hours=24), str(applications / "2026-11-21.parquet"))
    say(f"8. Batch scoring DAG (Spark, {config.batch.spark_master}) on 2,000 applications of {day:%Y-%m-%d}")
    dag_run_states = run(bag.get_dag(dag_id(Stage.BATCH_SCORE, MODEL)), dag_id(Stage.BATCH_SCORE, MODEL), logical_date=day)
    if dag_run_states.get("score") != "success":
        say("   -> batch scoring failed; see the log")
        return False
    scored = pd.read_parquet(Path(resolve_uri(config.batch.output_uri)) / f"date={day:%Y-%m-%d}")
    logged = inference_log.read_range(MODEL, day, day + pd.Timedelta(days=1), source="batch")
    say(f"   -> {len(scored)} predictions by version {scored['model_version'].iloc[0]} in "
        f"{resolve_uri(config.batch.output_uri)}; {len(logged)} batch rows in the inference log")
    return True


def _hour_of_traffic(config, triton_url: str, hour, *, seed: int, drift: float = 0.0,
                     concept_drift: float = 0.0) -> None:
    """Simulate an hour of live traffic scored by Triton, and its delayed labels arriving."""
    import pandas as pd

    from include.config import resolve_uri
    from include.demo.datagen import generate_batch
    from include.monitoring import inference_log
    from include.monitoring.delayed_labels import log_labels
    from include.serving.triton.client import TritonClient

    batch = generate_batch(600, seed=seed, start=hour.isoformat(), hours=1, drift=drift, concept_drift=concept_drift)
    features = batch[config.dataset.feature_names]
    # Triton logs what it serves at the current time; a simulated hour needs its own timestamps, so these
    # requests are marked as not live (Triton's copy is left out of monitoring) and replayed into the log.
    scores, version = TritonClient(triton_url).infer_with_version(MODEL, features, role="verification")
    inference_log.log_predictions(MODEL, version, "online", features, scores,
                                  request_ids=batch[config.dataset.id_column].tolist(), ts=batch["applied_at"])
    labels = batch.rename(columns={config.dataset.id_column: "request_id"})[["request_id", "defaulted", "repaid_amount"]]
    log_labels(resolve_uri(config.monitoring.outcomes_uri), labels, arrived_at=hour + pd.Timedelta(minutes=59))


def evidence_of(client, version: str) -> None:
    """What a version carries besides its holdout metric: calibration, baseline, slices, fairness, SHAP."""
    from include.config import get_model_config

    mv = client.get_model_version(MODEL, version)
    metrics = client.get_run(mv.run_id).data.metrics
    tags = {**client.get_run(mv.run_id).data.tags, **(mv.tags or {})}
    primary = get_model_config(MODEL).gates.primary_metric
    say(f"   evidence of version {version}: {primary} {metrics.get(primary, float('nan')):.4f} vs simpler baseline "
        f"{metrics.get('baseline.' + primary, float('nan')):.4f}; calibration ECE {metrics.get('calibration.ece', float('nan')):.4f} "
        f"({tags.get('calibration.method', 'none')})")
    slices = sorted((k, v) for k, v in metrics.items() if k.startswith("slice.") and k.endswith("." + primary))
    if slices:
        worst = min(slices, key=lambda kv: kv[1])
        say(f"      {len(slices)} slice(s), worst {worst[0].removeprefix('slice.').removesuffix('.' + primary)} "
            f"{worst[1]:.4f}")
    fair = {k.removeprefix("fairness."): v for k, v in metrics.items() if k.startswith("fairness.")
            and k.endswith("difference")}
    if fair:
        say("      fairness: " + ", ".join(f"{k} {v:.3f}" for k, v in sorted(fair.items())))
    if tags.get("shap.top_features"):
        say(f"      SHAP top features: {tags['shap.top_features']}")
    if tags.get("gates.detail"):
        import json

        failed = [g["gate"] for g in json.loads(tags["gates.detail"]) if not g.get("passed")]
        say(f"      gates: {tags.get('gates.result')}" + (f" (failed: {', '.join(failed)})" if failed else ""))


def _assessed(dag_run) -> dict:
    """What the monitoring run's ``assess`` task returned (its XCom)."""
    return _xcom(dag_run, "assess") or {}


def monitor(config, run, bag, triton_url: str) -> bool:
    """A healthy hour, a new version, then a drifted hour that rolls it back and starts retraining."""
    import pandas as pd

    from include.config import resolve_uri
    from include.data.dataset import write_dataset
    from include.demo.datagen import generate_batch
    from include.promotion.registry import CHALLENGER, CHAMPION, PREVIOUS_CHAMPION, alias_version
    from include.tracking import configure

    client = configure()
    monitor_dag = bag.get_dag(dag_id(Stage.MONITOR, MODEL))
    hour = pd.Timestamp.now(tz="UTC").floor("h")

    def assess(label: str, start) -> tuple[dict, dict]:
        states, dag_run = run(monitor_dag, label, logical_date=(start + pd.Timedelta(hours=1)).to_pydatetime(),
                              with_run=True)
        found = _assessed(dag_run)
        a = found.get("assessment", {})
        kpis = ", ".join(f"{k}={v['value']:.3f}" for k, v in a.get("kpis", {}).items() if v["value"] is not None)
        say(f"   -> {a.get('level', '?').upper()}: {a.get('reason', '')}")
        if kpis:
            say(f"      KPIs: {kpis} (baseline: {a.get('baseline_source')})")
        return states, {**found, "run_id": dag_run.run_id}

    say(f"9. Monitoring DAG on the live hour {hour:%Y-%m-%d %H}:00 UTC (cold start off for the demo)")
    _hour_of_traffic(config, triton_url, hour, seed=11)
    assess(dag_id(Stage.MONITOR, MODEL), hour)

    say("10. A new version: the training DAG on a fresh snapshot, promotion, deployment")
    fresh = Path(resolve_uri(config.dataset.uri)).with_name("snapshot-2026-06.parquet")
    # 60,000 applications: enough for version 2 to pass the no-regression gate against version 1.
    write_dataset(generate_batch(60_000, seed=6, start="2026-06-01T00:00:00Z"), str(fresh))
    run(bag.get_dag(dag_id(Stage.TRAIN, MODEL)), dag_id(Stage.TRAIN, MODEL), {"dataset_uri": str(fresh)})
    run(bag.get_dag(dag_id(Stage.PROMOTE, MODEL)), dag_id(Stage.PROMOTE, MODEL))
    run(bag.get_dag(dag_id(Stage.DEPLOY, MODEL)), dag_id(Stage.DEPLOY, MODEL))
    champion, previous = alias_version(client, MODEL, CHAMPION), alias_version(client, MODEL, PREVIOUS_CHAMPION)
    say(f"   -> @champion = version {champion.version}"
        + (f", @previous_champion = version {previous.version}" if previous else ""))
    evidence_of(client, str(champion.version))

    drifted = hour + pd.Timedelta(hours=1)
    say(f"11. A drifted hour ({drifted:%H}:00): riskier applicants, and their loans go bad")
    _hour_of_traffic(config, triton_url, drifted, seed=12, drift=0.9, concept_drift=1.0)
    states, found = assess(dag_id(Stage.MONITOR, MODEL), drifted)
    for finding in found.get("fired", []):
        say(f"      {finding['name']}: {finding['value']:.3f} (threshold {finding['threshold']}) {finding['detail']}")
    if found.get("report_uri"):
        say(f"      Evidently report: {found['report_uri']}")
    if states.get("trigger_retrain") != "success":
        if found.get("assessment", {}).get("level") == "critical" and not found.get("fired"):
            say(f"   -> critical, but it already fired for this version within the {config.monitoring.cooldown_hours:g}h "
                "cooldown (an earlier demo run) and is no worse: nothing is repeated")
            return True
        say("   -> no critical alert: see the log")
        return False
    say(f"   -> critical: Slack (or the log, without a slack_default connection) was told; queued runs "
        f"monitor__{found['run_id']} of {dag_id(Stage.ROLLBACK, MODEL)} and {dag_id(Stage.TRAIN, MODEL)}")
    say("12. The queued rollback and retraining runs (the scheduler runs them under `make up`; here dag.test)")
    if states.get("trigger_rollback") == "success":
        run(bag.get_dag(dag_id(Stage.ROLLBACK, MODEL)), dag_id(Stage.ROLLBACK, MODEL), found["rollback_conf"])
        say(f"   -> @champion is back to version {alias_version(client, MODEL, CHAMPION).version}, serving on Triton")
    latest = Path(resolve_uri(config.dataset.uri))
    # The last 30 days: validation refuses applications dated after the run (dataset.checks.max_future_minutes).
    write_dataset(generate_batch(20_000, seed=7, start=(hour - pd.Timedelta(days=30)).isoformat(), drift=0.9,
                                 concept_drift=1.0), str(latest))
    say(f"   training on the latest labelled applications at {latest} (the feature pipeline's snapshot)")
    before = alias_version(client, MODEL, CHALLENGER)
    # dataset_uri spelled out: dag.test() keeps the previous run's params on the DAG object.
    states = run(bag.get_dag(dag_id(Stage.TRAIN, MODEL)), dag_id(Stage.TRAIN, MODEL), {**found["retrain_conf"], "dataset_uri": str(latest)})
    challenger = alias_version(client, MODEL, CHALLENGER)
    if states.get("register") == "success" and challenger and (not before or before.version != challenger.version):
        say(f"   -> version {challenger.version} registered as @{CHALLENGER}: the promotion DAG runs its gates next")
        evidence_of(client, str(challenger.version))
    if challenger:
        return shadow_hour(config, run, bag, client, triton_url, str(challenger.version))
    return True


def shadow_hour(config, run, bag, client, triton_url: str, version: str) -> bool:
    """The challenger in shadow beside the champion on live requests, the hour's comparison and the shadow gate."""
    import httpx
    import pandas as pd

    from include.config import ShadowGate
    from include.demo.datagen import generate_batch
    from include.governance.gates import shadow_gate
    from include.monitoring import challenger, history
    from include.promotion.registry import CHAMPION, alias_version
    from include.serving import shadow
    from include.serving.triton.client import TritonClient

    champion = str(alias_version(client, MODEL, CHAMPION).version)
    gate = ShadowGate(min_hours=1, min_requests=200, min_agreement=0.8, max_kpi_drop={"approval_rate": 0.05})
    cfg = config.model_copy(update={
        "serving": config.serving.model_copy(update={"challenger": config.serving.challenger.model_copy(
            update={"mode": "shadow"})}),
        "gates": config.gates.model_copy(update={"shadow": gate})})
    say(f"12b. Version {version} in shadow beside champion {champion}: Triton scores every live request with both")
    triton = TritonClient(triton_url)
    shadow.start(client, triton, settings_repository(), cfg, version, actor="demo", reason="demo: shadow before promotion")
    try:
        traffic = generate_batch(300, seed=21)[config.dataset.feature_names]
        for i, row in traffic.iterrows():  # plain KServe v2 JSON, as any client would send it
            inputs = [{"name": c.name, "shape": [1, 1], "datatype": "BYTES" if c.type == "category" else
                       "INT64" if c.type == "int" else "FP64", "data": [row[c.name] if c.type != "category" else
                                                                        str(row[c.name])]}
                      for c in config.dataset.features]
            httpx.post(f"{triton_url}/v2/models/{MODEL}/infer", json={"id": f"shadow-demo-{i}", "inputs": inputs},
                       timeout=30).raise_for_status()
        time.sleep(config.serving.inference_log.flush_seconds + 2)
        hour = pd.Timestamp.now(tz="UTC").floor("h")
        states, dag_run = run(bag.get_dag(dag_id(Stage.MONITOR, MODEL)), dag_id(Stage.MONITOR, MODEL) + " (this hour)",
                              logical_date=(hour + pd.Timedelta(hours=1)).to_pydatetime(), with_run=True)
        found = challenger.evidence(client, history.monitoring_run(client, cfg), version).as_dict()
        say(f"   -> the hour's comparison: {found['requests']} request(s) scored by both, agreement "
            f"{(found['agreement'] or 0):.1%}, KPI drops (champion - challenger): "
            + (", ".join(f"{k} {v:+.4f}" for k, v in found["kpi_drops"].items()) or "none yet"))
        result = shadow_gate(cfg, found, champion=champion)
        say(f"   -> shadow gate ({gate.min_hours}h, {gate.min_requests} requests, agreement >= {gate.min_agreement:.0%}, "
            f"approval_rate drop <= 0.05): {'PASS' if result.passed else 'FAIL'}: {result.detail}")
    finally:
        shadow.stop(client, triton, settings_repository(), cfg, actor="demo", reason="demo: shadow hour done")
        triton.close()
    return True


def settings_repository():
    from include import settings

    return settings.triton_repository()


def govern(config, run, bag, client) -> bool:
    """Retire a superseded version into the local archive (dry run first), restore it, then the ledger."""
    from include.governance import history
    from include.governance.retirement import RETIRED_ARCHIVE_TAG

    retire_dag = bag.get_dag(dag_id(Stage.RETIRE, MODEL))
    say("13. Retirement DAG, dry run: what would be archived, unloaded and retired, and why")
    states, dag_run = run(retire_dag, dag_id(Stage.RETIRE, MODEL), {"dry_run": True}, with_run=True)
    plan = _xcom(dag_run, "evaluate") or {}
    for candidate in plan.get("candidates", []):
        reasons = "; ".join(f"{r['rule']}: {r['detail']}" for r in candidate["reasons"])
        say(f"      candidate version {candidate['version']}: {reasons}")
    for protected in plan.get("protected", []):
        say(f"      protected version {protected['version']}: {', '.join(protected['why'])}")
    if states.get("evaluate") != "success":
        say("   -> the plan failed: see the log")
        return False
    if not plan.get("candidates"):
        say("   -> nothing to retire (an earlier demo run retired it)")
    else:
        say("14. Retirement DAG for real: archive -> verify -> unload -> mark retired, per candidate")
        states = run(retire_dag, dag_id(Stage.RETIRE, MODEL), {"dry_run": False})
        for candidate in plan["candidates"]:
            tags = client.get_model_version(MODEL, candidate["version"]).tags
            say(f"   -> version {candidate['version']} retired={tags.get('retired')}, archive {tags.get(RETIRED_ARCHIVE_TAG)}")
        retired = plan["candidates"][0]["version"]
        say(f"15. Restore DAG: version {retired} back from its archive, every SHA-256 checked")
        states, dag_run = run(bag.get_dag(dag_id(Stage.RESTORE, MODEL)), dag_id(Stage.RESTORE, MODEL),
                              {"version": retired, "reason": "the demo restores what it retired"}, with_run=True)
        restored = _xcom(dag_run, "restore")
        if restored:
            tags = client.get_model_version(MODEL, restored).tags
            say(f"   -> version {restored} registered with restored_from={tags.get('restored_from')}")

    say("16. The audit ledger: the alias timeline MLflow cannot give, and the hash chain verified and anchored")
    run(bag.get_dag("audit_ledger"), "audit_ledger")
    for term in history.alias_timeline(MODEL):
        reason = term.reason.splitlines()[0][:70] if term.reason else ""
        say(f"      @{term.alias:<17} v{term.version:<3} {term.start} -> {term.end or 'now':<27} {reason}")
    from include.governance import integrity
    from include.governance.ledger import default_ledger

    report = integrity.verify(default_ledger(), integrity.MlflowAnchorStore(client, default_ledger()))
    say(f"   -> {report.summary()}")
    say("      (python -m include.governance verify | aliases | history | lineage | export)")
    return report.ok


def _xcom(dag_run, task_id: str):
    """What ``task_id`` of ``dag_run`` returned (its XCom), or None."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalars(XComModel.get_many(run_id=dag_run.run_id, dag_ids=dag_run.dag_id, task_ids=task_id,
                                                 key="return_value")).first()
        return XComModel.deserialize_value(row) if row is not None else None


def main() -> int:
    from include import settings, tracking
    from include.config import get_model_config, resolve_uri
    from include.data.dataset import write_dataset
    from include.demo.datagen import generate_batch

    # The demo's hours follow each other within minutes of a deployment: no cold start here (default 7 days).
    os.environ.setdefault("MODELOPS_COLD_START_DAYS", "0")
    # ... and a version without an alias is superseded at once, so step 13 has one to retire (default 90 days).
    os.environ.setdefault("MODELOPS_SUPERSEDED_DAYS", "0")
    state = settings.state_dir()
    log_file = state / "logs" / "demo.log"
    config = get_model_config(MODEL)
    client = tracking.configure()

    say(f"== Model Ops demo: {MODEL}  (logs: {log_file})")
    say(f"MLflow: {tracking.tracking_uri()}")
    clean = Path(resolve_uri(config.dataset.uri))
    corrupt = clean.with_name("batch-with-nulls.parquet")
    write_dataset(generate_batch(20_000, seed=1), str(clean))
    write_dataset(generate_batch(5_000, seed=2, start="2026-02-01T00:00:00Z", corruption="nulls"), str(corrupt))
    say(f"1. Generated {clean} (20,000 applications) and a corrupted batch {corrupt.name}")

    with _logs_to(log_file):
        from airflow.dag_processing.dagbag import DagBag

        bag = DagBag(dag_folder=str(ROOT / "dags"))
    if bag.import_errors:
        say(f"DAG import errors: {bag.import_errors}")
        return 1
    train, promote = bag.get_dag(dag_id(Stage.TRAIN, MODEL)), bag.get_dag(dag_id(Stage.PROMOTE, MODEL))

    def run(dag, label: str, conf: dict | None = None, logical_date: datetime | None = None, with_run: bool = False):
        start = time.monotonic()
        with _logs_to(log_file):
            dag_run = dag.test(run_conf=conf, logical_date=logical_date)
        states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
        say(f"   {label}: run {dag_run.run_id} {dag_run.state} in {time.monotonic() - start:.0f}s")
        say("   tasks: " + ", ".join(f"{t}={s}" for t, s in states.items()))
        return (states, dag_run) if with_run else states

    from include.promotion.registry import CHALLENGER, CHAMPION, PREVIOUS_CHAMPION, alias_version

    say("2. Training DAG on the clean batch: validate, fingerprint, train, evaluate, register")
    states = run(train, dag_id(Stage.TRAIN, MODEL), {"dataset_uri": str(clean)})
    if states.get("needs_training") == "success" and states.get("train") == "skipped":
        say("   -> skipped: a version already exists for this data, code and params (see the task log)")
    challenger = alias_version(client, MODEL, CHALLENGER)
    if challenger:
        say(f"   -> registered version {challenger.version} as @{CHALLENGER}")
        say("3. Promotion DAG: gates, then @champion")
        run(promote, dag_id(Stage.PROMOTE, MODEL))
        evidence_of(client, str(challenger.version))
    else:
        say("3. No new @challenger to promote")

    say("4. Training DAG again on the same batch (nothing changed)")
    states = run(train, dag_id(Stage.TRAIN, MODEL), {"dataset_uri": str(clean)})
    if states.get("train") == "skipped":
        say("   -> retraining skipped: same data fingerprint, code commit and params as an existing version")

    say("5. Training DAG on the corrupted batch")
    states = run(train, dag_id(Stage.TRAIN, MODEL), {"dataset_uri": str(corrupt)})
    if states.get("validate") == "failed":
        rejected = client.search_runs(
            [client.get_experiment_by_name(config.experiment_name).experiment_id],
            filter_string="tags.quarantine = 'rejected'", max_results=1,
        )
        summary = rejected[0].data.tags.get("validation.summary", "") if rejected else ""
        say("   -> rejected and quarantined; nothing registered. Validation said:")
        for line in summary.splitlines()[:6]:
            say(f"      {line}")

    champion = alias_version(client, MODEL, CHAMPION)
    say()
    if champion is None:
        say("No champion: the demo failed; see the log.")
        return 1
    from include import settings
    from include.serving.triton.server import TritonServer, free_port

    repository = settings.triton_repository()
    repository.mkdir(parents=True, exist_ok=True)
    port = int(os.environ.get("MODELOPS_TRITON_PORT") or free_port())
    with TritonServer(log_path=log_file.parent / "triton-demo.log").start(repository, http_port=port) as server:
        server.wait_ready(120)
        os.environ["MODELOPS_TRITON_URL"] = server.url
        if not serve(config, run, bag, server.url):
            return 1
        if not score_batch(config, run, bag):
            return 1
        if not monitor(config, run, bag, server.url):
            return 1
        if not govern(config, run, bag, client):
            return 1
    champion = alias_version(client, MODEL, CHAMPION)
    previous = alias_version(client, MODEL, PREVIOUS_CHAMPION)
    run_data = client.get_run(champion.run_id).data
    say(f"== Registry: {MODEL} @champion = version {champion.version}"
        + (f" (@previous_champion = {previous.version})" if previous else ""))
    for key in ("data_fingerprint", "schema_hash", "code_commit", "dependency_hash", "training_backend", "gates.result"):
        say(f"   {key:18} {champion.tags.get(key)}")
    say(f"   {'roc_auc':18} {run_data.metrics.get('roc_auc', float('nan')):.4f}")
    say("Explore: `make up` starts the Airflow UI (localhost:8080), the MLflow UI (localhost:5000) and Triton (localhost:8000).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
