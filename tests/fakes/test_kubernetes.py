"""The Kubernetes API double answers as the API server and the kubelet do, to the official Python clients, over real HTTP."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
from airflow.providers.cncf.kubernetes.utils.pod_manager import parse_log_line
from kubernetes import client as k8s
from kubernetes import config as kube_config

from tests.fakes.kubernetes import TERMINATION_LOG_BYTES, FakeKubernetes, Image, parse_quantity

IMAGE = "registry.example.com/app:1"
NS = "jobs"


@pytest.fixture
def kube(tmp_path):
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "marker.txt").write_text("inside the image\n")
    image = Image(root=tmp_path / "app", mount="/app", env={"PATH": str(Path(sys.executable).parent), "IMAGE_ENV": "yes"})
    with FakeKubernetes(images={IMAGE: image}, schedule_delay=0.05, pull_delay=0.05, backoff_delay=0.2) as fake:
        fake.add_namespace(NS, service_accounts=["runner"])
        fake.config_file = fake.write_kubeconfig(tmp_path / "kubeconfig", NS)
        yield fake


@pytest.fixture
def v1(kube):
    api = kube_config.new_client_from_config(config_file=str(kube.config_file))
    yield k8s.CoreV1Api(api)
    api.close()


def _pod(name: str, script: str, **container) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "test"}},
            "spec": {"restartPolicy": "Never", "containers": [
                {"name": "main", "image": IMAGE, "command": ["python", "-c", script], **container}]}}


def _wait_phase(v1, name: str, phases: tuple[str, ...], timeout: float = 30) -> k8s.V1Pod:
    deadline = time.monotonic() + timeout
    while (pod := v1.read_namespaced_pod(name, NS)).status.phase not in phases:
        assert time.monotonic() < deadline, f"pod {name} still {pod.status.phase}"
        time.sleep(0.05)
    return pod


def _log(v1, name: str, **kwargs) -> str:
    """The pod's log (raw: with ``_preload_content`` this client version hands back ``str(bytes)``)."""
    return v1.read_namespaced_pod_log(name, NS, _preload_content=False, **kwargs).data.decode()


def _status(exc: k8s.ApiException) -> dict:
    return json.loads(exc.body)


def test_a_client_without_the_kubeconfig_token_is_refused(kube):
    api = k8s.ApiClient(k8s.Configuration(host=kube.url))
    with pytest.raises(k8s.ApiException) as refused:
        k8s.CoreV1Api(api).list_namespaced_pod(NS)
    assert refused.value.status == 401 and _status(refused.value)["reason"] == "Unauthorized"


@pytest.mark.parametrize(("change", "field", "words"), [
    (lambda c, p: c["resources"].update(limits={"cpu": {"not": "a quantity"}}), "spec.containers[0].resources.limits.cpu",
     "is not valid"),
    (lambda c, p: c.update(bogus=1), "spec.containers[0]", "'bogus' was unexpected"),  # as with fieldValidation=Strict
    (lambda c, p: c["resources"].update(requests={"cpu": "2"}, limits={"cpu": "1"}), "spec.containers[0].resources.requests",
     "must be less than or equal to cpu limit of 1"),
    (lambda c, p: p["metadata"]["labels"].update(run_id="manual__2026-11-22T10:00:00+00:00"), "metadata.labels",
     "a valid label must be an empty string"),
    (lambda c, p: p["metadata"].update(name="Not_A_Name"), "metadata.name", "RFC 1123 subdomain"),
    (lambda c, p: c.update(env=[{"name": "1X", "value": "v"}]), "spec.containers[0].env[0].name",
     "a valid environment variable name"),
], ids=["schema-type", "unknown-field", "request-over-limit", "label-value", "pod-name", "env-name"])
def test_a_pod_the_api_server_would_refuse_gets_422_invalid_naming_the_field(kube, v1, change, field, words):
    body = _pod("bad", "pass")
    body["spec"]["containers"][0]["resources"] = {}
    change(body["spec"]["containers"][0], body)
    with pytest.raises(k8s.ApiException) as refused:
        v1.create_namespaced_pod(NS, body)
    status = _status(refused.value)
    assert refused.value.status == 422 and status["kind"] == "Status" and status["reason"] == "Invalid"
    (cause,) = status["details"]["causes"]
    assert cause["field"] == field and words in cause["message"], cause
    assert kube.records() == [] and kube.pods() == []


def test_namespace_service_account_and_name_are_checked_as_the_api_server_does(kube, v1):
    with pytest.raises(k8s.ApiException) as missing_namespace:
        v1.create_namespaced_pod("nowhere", _pod("p", "pass"))
    assert missing_namespace.value.status == 404 and _status(missing_namespace.value)["message"] == 'namespaces "nowhere" not found'

    body = _pod("p", "pass")
    body["spec"]["serviceAccountName"] = "ghost"
    with pytest.raises(k8s.ApiException) as forbidden:
        v1.create_namespaced_pod(NS, body)
    assert forbidden.value.status == 403 and 'serviceaccount "ghost" not found' in _status(forbidden.value)["message"]

    body["spec"]["serviceAccountName"] = "runner"
    created = v1.create_namespaced_pod(NS, body)
    assert created.status.phase == "Pending" and created.metadata.uid and created.spec.service_account_name == "runner"
    with pytest.raises(k8s.ApiException) as taken:
        v1.create_namespaced_pod(NS, body)
    assert taken.value.status == 409 and _status(taken.value)["reason"] == "AlreadyExists"


def test_a_pod_runs_its_command_with_the_image_and_the_pod_environment_only(kube, v1, monkeypatch):
    monkeypatch.setenv("LEAKED_FROM_THE_TEST", "1")
    kube.add_secret(NS, "creds", {"token": "s3cret"})
    kube.add_config_map(NS, "settings", {"mode": "fast"})
    script = ("import os; print(open('marker.txt').read().strip(), os.getcwd()); "
              "print(*(os.environ.get(k) for k in ('IMAGE_ENV', 'GREETING', 'TOKEN', 'MODE', 'POD', 'LEAKED_FROM_THE_TEST')))")
    body = _pod("env", script, env=[
        {"name": "NAME", "value": "world"}, {"name": "GREETING", "value": "hello $(NAME) $$(NAME)"},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}])
    v1.create_namespaced_pod(NS, body)

    pod = _wait_phase(v1, "env", ("Succeeded", "Failed"))

    assert pod.status.phase == "Succeeded"
    (status,) = pod.status.container_statuses
    assert status.state.terminated.exit_code == 0 and status.state.terminated.reason == "Completed"
    assert status.state.terminated.message is None
    assert pod.spec.node_name == kube.node.name and pod.status.pod_ip == "127.0.0.1"
    log = _log(v1, "env")
    app = str(Path(kube.images[IMAGE].root))
    assert log == f"inside the image {app}\nyes hello world $(NAME) s3cret fast env None\n"
    stamped = _log(v1, "env", timestamps=True).splitlines()
    assert all(parse_log_line(line)[0] is not None for line in stamped)  # as the provider parses them
    (record,) = kube.records()
    assert record.phases == ["Pending", "Running", "Succeeded"] and record.exit_codes == {"main": 0}
    reasons = [e.reason for e in sorted(v1.list_namespaced_event(NS, field_selector="involvedObject.name=env").items,
                                        key=lambda e: int(e.metadata.resource_version))]
    assert reasons == ["Scheduled", "Pulling", "Pulled", "Created", "Started"]


def test_a_followed_log_streams_lines_while_the_container_runs(kube, v1, tmp_path):
    go = tmp_path / "go"
    script = (f"import os, time; print('first', flush=True)\n"
              f"while not os.path.exists({str(go)!r}): time.sleep(0.05)\nprint('second')")
    v1.create_namespaced_pod(NS, _pod("follow", script))
    _wait_phase(v1, "follow", ("Running",))
    stream = v1.read_namespaced_pod_log("follow", NS, follow=True, _preload_content=False)
    lines = stream.stream(amt=None)

    assert next(lines) == b"first\n"
    assert v1.read_namespaced_pod("follow", NS).status.phase == "Running"  # streamed before the end
    go.touch()
    assert b"".join(lines) == b"second\n"  # then the stream ends with the container
    assert _wait_phase(v1, "follow", ("Succeeded",)).status.phase == "Succeeded"


@pytest.mark.parametrize("policy", ["FallbackToLogsOnError", "File"])
def test_a_failed_container_reports_its_exit_code_and_with_fallback_the_tail_of_its_log(kube, v1, policy):
    script = "import sys\nfor i in range(200): print(f'line {i:03d} ' + 'x' * 20)\nsys.exit(3)"
    v1.create_namespaced_pod(NS, _pod("fails", script, terminationMessagePolicy=policy))

    pod = _wait_phase(v1, "fails", ("Succeeded", "Failed"))

    assert pod.status.phase == "Failed"
    ended = pod.status.container_statuses[0].state.terminated
    assert (ended.exit_code, ended.reason) == (3, "Error")
    if policy == "File":
        assert ended.message is None  # nothing wrote /dev/termination-log
    else:
        assert len(ended.message.encode()) == TERMINATION_LOG_BYTES and ended.message.endswith("line 199 " + "x" * 20 + "\n")


def test_a_missing_secret_holds_the_container_until_it_exists(kube, v1):
    body = _pod("needs-secret", "import os; print(os.environ['TOKEN'])",
                env=[{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "later", "key": "token"}}}])
    v1.create_namespaced_pod(NS, body)
    waiting = kube.wait_for(lambda: next((s["state"]["waiting"] for p in kube.pods(NS)
                                          for s in p["status"].get("containerStatuses") or [] if "waiting" in s["state"]
                                          and s["state"]["waiting"]["reason"] == "CreateContainerConfigError"), None))
    assert waiting["message"] == 'secret "later" not found'

    kube.add_secret(NS, "later", {"token": "now"})

    assert _wait_phase(v1, "needs-secret", ("Succeeded", "Failed")).status.phase == "Succeeded"
    assert _log(v1, "needs-secret") == "now\n"


def test_an_image_that_cannot_be_pulled_backs_off_and_never_runs(kube, v1):
    body = _pod("no-image", "pass")
    body["spec"]["containers"][0]["image"] = "registry.example.com/app:missing"
    v1.create_namespaced_pod(NS, body)

    def backing_off():
        (pod,) = kube.pods(NS)
        state = (pod["status"].get("containerStatuses") or [{}])[0].get("state", {})
        return state.get("waiting") if state.get("waiting", {}).get("reason") == "ImagePullBackOff" else None

    waiting = kube.wait_for(backing_off)
    assert waiting["message"].startswith('Back-off pulling image "registry.example.com/app:missing": ErrImagePull: '
                                         'rpc error: code = NotFound')
    assert v1.read_namespaced_pod("no-image", NS).status.phase == "Pending"
    with pytest.raises(k8s.ApiException) as no_log:
        _log(v1, "no-image")
    assert no_log.value.status == 400 and "is waiting to start: trying and failing to pull image" in no_log.value.body
    reasons = {e.reason for e in v1.list_namespaced_event(NS, field_selector="involvedObject.name=no-image").items}
    assert {"Pulling", "Failed", "BackOff"} <= reasons and "Started" not in reasons
    assert kube.records()[0].argv == {}


def test_a_pod_asking_for_a_gpu_the_node_lacks_stays_pending_unschedulable(kube, v1):
    v1.create_namespaced_pod(NS, _pod("gpu", "pass", resources={"limits": {"nvidia.com/gpu": "1"}}))

    def unschedulable():
        (pod,) = kube.pods(NS)
        return next((c for c in pod["status"].get("conditions") or [] if c["type"] == "PodScheduled"
                     and c["status"] == "False"), None)

    condition = kube.wait_for(unschedulable)
    assert condition["reason"] == "Unschedulable"
    assert condition["message"].startswith("0/1 nodes are available: 1 Insufficient nvidia.com/gpu.")
    pod = v1.read_namespaced_pod("gpu", NS)
    assert pod.status.phase == "Pending" and pod.spec.node_name is None
    assert pod.spec.containers[0].resources.requests == {"nvidia.com/gpu": "1"}  # defaulted from the limit


@pytest.mark.parametrize(("grace", "exit_code", "said"), [(10, 0, "got SIGTERM\n"), (0, 137, "")])
def test_delete_stops_the_container_with_sigterm_then_sigkill_and_removes_the_pod(kube, v1, grace, exit_code, said):
    script = ("import os, signal, time\n"  # os.write: the signal may come while print('ready') is still flushing
              "signal.signal(signal.SIGTERM, lambda *_: (os.write(1, b'got SIGTERM\\n'), os._exit(0)))\n"
              "print('ready', flush=True)\ntime.sleep(60)")
    v1.create_namespaced_pod(NS, _pod("long", script))
    (record,) = kube.records()
    kube.wait_for(lambda: record.log_text() == "ready\n", what="the container is ready")

    answer = v1.delete_namespaced_pod("long", NS, body=k8s.V1DeleteOptions(grace_period_seconds=grace))

    assert answer.metadata.deletion_timestamp is not None
    kube.wait_for(lambda: record.deleted, what="the pod is gone")
    assert record.exit_codes == {"main": exit_code} and record.log_text() == "ready\n" + said, record.log_text()
    with pytest.raises(k8s.ApiException) as gone:
        v1.read_namespaced_pod("long", NS)
    assert gone.value.status == 404


def test_pods_are_listed_by_label_selector_and_labels_can_be_patched(kube, v1):
    for name, labels in (("a", {"app": "x", "tier": "1"}), ("b", {"app": "x", "tier": "2"}), ("c", {"app": "y"})):
        body = _pod(name, "pass")
        body["metadata"]["labels"] = labels
        v1.create_namespaced_pod(NS, body)

    def names(selector: str) -> list[str]:
        return [p.metadata.name for p in v1.list_namespaced_pod(NS, label_selector=selector).items]

    assert names("app=x") == ["a", "b"]
    assert names("app=x,tier in (2, 3)") == ["b"]
    assert names("app,!tier") == ["c"]
    assert names("app=x,already_checked!=True,!airflow-worker") == ["a", "b"]  # what the provider asks on retries
    v1.patch_namespaced_pod("a", NS, {"metadata": {"labels": {"already_checked": "True"}}})
    assert names("app=x,already_checked!=True,!airflow-worker") == ["b"]
    with pytest.raises(k8s.ApiException) as bad:
        v1.list_namespaced_pod(NS, label_selector="app=(x")
    assert bad.value.status == 400


def test_watches_stream_pod_changes_and_events_as_json_lines(kube, v1):
    from kubernetes_asyncio import client as async_client
    from kubernetes_asyncio import config as async_config
    from kubernetes_asyncio import watch

    async def watch_pod() -> tuple[list[str], list[str]]:
        configuration = async_client.Configuration()
        await async_config.load_kube_config(config_file=str(kube.config_file), client_configuration=configuration)
        async with async_client.ApiClient(configuration) as api:
            core = async_client.CoreV1Api(api)
            phases: list[str] = []
            async with watch.Watch() as pods:
                async for event in pods.stream(core.list_namespaced_pod, namespace=NS, label_selector="app=test",
                                               timeout_seconds=30):
                    phases.append(f"{event['type']} {event['object'].status.phase}")
                    kube.resume_scheduling()  # once the watch has the pod as it was
                    if event["object"].status.phase == "Succeeded":
                        break
            reasons: list[str] = []
            async with watch.Watch() as events:
                async for event in events.stream(core.list_namespaced_event, namespace=NS,
                                                 field_selector="involvedObject.name=watched", timeout_seconds=1):
                    reasons.append(event["object"].reason)
            return phases, reasons

    kube.pause_scheduling()
    v1.create_namespaced_pod(NS, _pod("watched", "print('hi')"))

    phases, reasons = asyncio.run(watch_pod())

    assert phases[0] == "ADDED Pending" and phases[-1] == "MODIFIED Succeeded" and "MODIFIED Running" in phases
    assert sorted(reasons) == sorted(["Scheduled", "Pulling", "Pulled", "Created", "Started"])  # then the watch times out


def test_exec_needs_a_websocket_upgrade(kube, v1):
    with pytest.raises(k8s.ApiException) as refused:
        v1.connect_get_namespaced_pod_exec("any", NS, command=["true"])
    assert refused.value.status == 400 and "Upgrade request required" in refused.value.body


@pytest.mark.parametrize(("text", "value"), [
    ("500m", Decimal("0.5")), ("2", Decimal(2)), ("4Gi", Decimal(4 * 2**30)), ("1e3", Decimal(1000)), ("1.5k", Decimal(1500)),
])
def test_quantities_parse_as_kubernetes_writes_them(text, value):
    assert parse_quantity(text) == value
    with pytest.raises(ValueError):
        parse_quantity("4 Gi")
