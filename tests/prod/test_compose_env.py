"""``scripts/prod_stack.py`` and ``docker-compose.yaml`` describe one production stack: the same variables.

Every variable compose gives its Airflow services (``x-airflow``) and its MLflow server, the script
gives its processes too, with the same meaning: the same literal where compose has one (executor,
auth manager, training backend, credentials' defaults), the same scheme, driver and database where
it is a URL, the same connection type and fields where it is an Airflow connection. The script's
extra variables are exactly those it documents as host-only (``HOST_ONLY``). The MLflow server gets
compose's flags, the same artifact destination, and the buckets compose creates.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from scripts import prod_stack

ROOT = Path(__file__).resolve().parents[2]
_DEFAULT = re.compile(r"\$\{(\w+):-([^}]*)\}")


def _resolved(value: str) -> str:
    """A compose value with each ``${VAR:-default}`` replaced by its default."""
    return _DEFAULT.sub(lambda m: m.group(2), str(value))


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yaml").read_text())


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> prod_stack.Stack:
    return prod_stack.Stack(state=str(tmp_path_factory.mktemp("prod-env")), db_prefix="modelops_env_test")


@pytest.fixture(scope="module")
def compose_airflow(compose) -> dict[str, str]:
    envs = [service["environment"] for name, service in compose["services"].items() if name.startswith("airflow-")]
    assert envs and all(env == envs[0] for env in envs)  # one shared x-airflow environment
    return {k: _resolved(v) for k, v in envs[0].items()}


@pytest.fixture(scope="module")
def script_airflow(stack) -> dict[str, str]:
    return prod_stack.airflow_env(stack)


def test_the_script_sets_every_compose_variable_and_documents_its_own(compose_airflow, script_airflow):
    assert set(compose_airflow) - set(script_airflow) == set()
    assert set(script_airflow) - set(compose_airflow) == set(prod_stack.HOST_ONLY)


LITERAL = ["AIRFLOW__CORE__EXECUTOR", "AIRFLOW__CORE__LOAD_EXAMPLES", "AIRFLOW__CORE__AUTH_MANAGER",
           "MODELOPS_TRAINING_BACKEND", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]


@pytest.mark.parametrize("name", LITERAL)
def test_same_literal_values(compose_airflow, script_airflow, name):
    assert script_airflow[name] == compose_airflow[name]


def test_same_users(compose_airflow, script_airflow):
    users = "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"
    assert script_airflow[users] == compose_airflow[users]
    assert Path(script_airflow["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]).name == Path(
        compose_airflow["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]).name


@pytest.mark.parametrize("name", ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__RESULT_BACKEND"])
def test_the_metadata_database_urls_name_the_same_driver_and_database(compose_airflow, script_airflow, name):
    ours, theirs = urlsplit(script_airflow[name]), urlsplit(compose_airflow[name])
    assert ours.scheme == theirs.scheme  # e.g. db+postgresql+psycopg2: the driver the image installs
    assert ours.path.rsplit("_", 1)[-1] == theirs.path.lstrip("/")  # <prefix>_airflow ~ airflow


@pytest.mark.parametrize("name", ["AIRFLOW__CELERY__BROKER_URL", "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
                                  "MLFLOW_S3_ENDPOINT_URL", "MODELOPS_TRITON_URL"])
def test_service_urls_have_the_same_scheme_and_path(compose_airflow, script_airflow, name):
    ours, theirs = urlsplit(script_airflow[name]), urlsplit(compose_airflow[name])
    assert (ours.scheme, ours.path) == (theirs.scheme, theirs.path)
    assert ours.hostname == "127.0.0.1"  # loopback here, a service name in compose


def test_the_jwt_secret_is_set_not_left_to_each_process(compose_airflow, script_airflow):
    secret = script_airflow["AIRFLOW__API_AUTH__JWT_SECRET"]
    assert len(secret) >= 32 and secret != compose_airflow["AIRFLOW__API_AUTH__JWT_SECRET"]


@pytest.mark.parametrize("name", ["AIRFLOW_CONN_MLFLOW_DEFAULT", "AIRFLOW_CONN_MODELOPS_DRIFT_WEBHOOK"])
def test_connections_have_the_same_type_and_fields(compose_airflow, script_airflow, name):
    ours, theirs = json.loads(script_airflow[name]), json.loads(compose_airflow[name])
    assert ours["conn_type"] == theirs["conn_type"] and set(ours) == set(theirs)


def test_the_webhook_secret_is_set(script_airflow):
    assert len(json.loads(script_airflow["AIRFLOW_CONN_MODELOPS_DRIFT_WEBHOOK"])["password"]) >= 32


@pytest.mark.parametrize("name", ["MODELOPS_DATA_DIR", "MODELOPS_TRITON_REPOSITORY"])
def test_shared_folders_are_in_the_state_folder(stack, script_airflow, name):
    assert Path(script_airflow[name]).is_relative_to(stack.dir)


def test_the_mlflow_server_gets_composes_variables(compose, stack):
    theirs = {k: _resolved(v) for k, v in compose["services"]["mlflow"]["environment"].items()}
    ours = prod_stack.mlflow_env(stack)
    assert set(theirs) <= set(ours)
    assert set(ours) - set(theirs) == {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION"}
    assert {k: ours[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")} == {
        k: theirs[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}


def _flags(argv: list[str]) -> dict[str, str | None]:
    flags, i = {}, 0
    while i < len(argv):
        if argv[i].startswith("--"):
            value = argv[i + 1] if i + 1 < len(argv) and not argv[i + 1].startswith("--") else None
            flags[argv[i]] = value
            i += 2 if value is not None else 1
        else:
            i += 1
    return flags


def test_the_mlflow_server_gets_composes_flags(compose, stack):
    theirs = _flags(compose["services"]["mlflow"]["entrypoint"])
    ours = _flags(prod_stack.mlflow_server_args(stack))
    assert set(theirs) <= set(ours) and set(ours) - set(theirs) == {"--workers"}
    assert ours["--artifacts-destination"] == theirs["--artifacts-destination"] == f"s3://{prod_stack.ARTIFACT_BUCKET}"
    assert "--serve-artifacts" in ours  # clients reach S3 through the server (mlflow-artifacts:)
    store, compose_store = urlsplit(ours["--backend-store-uri"]), urlsplit(theirs["--backend-store-uri"])
    assert store.scheme == compose_store.scheme and store.path.endswith(compose_store.path.lstrip("/"))


def test_the_script_creates_the_buckets_compose_creates(compose):
    command = " ".join(compose["services"]["minio-buckets"]["entrypoint"].split())
    assert f"local/{prod_stack.ARTIFACT_BUCKET}" in command and f"local/{prod_stack.ARCHIVE_BUCKET}" in command
