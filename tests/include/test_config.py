from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from include.config import ConfigError, expand_env, load_model_config, load_model_configs

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "config" / "models" / "credit_approval.yaml"


@pytest.fixture()
def config_dir(tmp_path: Path) -> Path:
    """A copy of the project's config folder that a test may edit."""
    shutil.copytree(ROOT / "config", tmp_path / "config")
    return tmp_path / "config"


def _edit(config_dir: Path, change) -> Path:
    path = config_dir / "models" / "credit_approval.yaml"
    raw = yaml.safe_load(path.read_text())
    change(raw)
    path.write_text(yaml.safe_dump(raw))
    return path


def test_shipped_config_is_valid():
    cfg = load_model_config(SAMPLE)
    assert cfg.name == "credit_approval"
    assert cfg.dataset.target.name == "defaulted"
    assert cfg.suite_path.is_file()
    assert cfg.dataset.column_types["applied_at"] == "timestamp"
    assert cfg.training.backend in {"local", "kubernetes"}


def test_every_shipped_config_loads():
    assert "credit_approval" in load_model_configs(ROOT / "config")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda r: r["gates"].update(minimum="high"), "credit_approval.yaml: gates.minimum: Input should be a valid number"),
        (lambda r: r["gates"].pop("minimum"), "credit_approval.yaml: gates.minimum: Field required"),
        (lambda r: r["training"].update(backend="slurm"), "credit_approval.yaml: training.backend: Input should be 'local' or 'kubernetes'"),
        (lambda r: r["model"].update(learning_rate=0.1), "credit_approval.yaml: model.learning_rate: unknown key"),
        (lambda r: r["dataset"]["features"][1].update(type="decimal"), "credit_approval.yaml: dataset.features.1.type"),
        (lambda r: r["training"]["kubernetes"]["limits"].update(memory="lots"), "training.kubernetes.limits.memory"),
        (lambda r: r.update(name="other_name"), "credit_approval.yaml: name: must equal the file name stem"),
        (lambda r: r["dataset"].update(expectation_suite="expectations/nope.json"), "dataset.expectation_suite: file not found"),
        (lambda r: r["dataset"]["features"].append({"name": "age", "type": "int"}), "columns declared twice: age"),
        (lambda r: r["monitoring"]["drift"].update(warning=0.6), "monitoring.drift: Value error, critical (0.5) must be >= warning (0.6)"),
        (lambda r: r["monitoring"]["kpis"][1].update(per="amount"), "monitoring.kpis.1.per: 'amount' is not a feature"),
        (lambda r: r["monitoring"]["kpis"][0].update(metric="churn"), "monitoring.kpis.0.metric: Input should be"),
        (lambda r: r["monitoring"]["kpis"][0].update(per="age"), "monitoring.kpis.0: Value error, per: required by"),
        (lambda r: r["monitoring"].update(cooldown_hours=-1), "monitoring.cooldown_hours: Input should be greater than"),
    ],
)
def test_errors_name_the_file_and_key(config_dir, change, expected):
    path = _edit(config_dir, change)
    with pytest.raises(ConfigError) as err:
        load_model_config(path)
    assert expected in str(err.value)
    with pytest.raises(ConfigError, match="credit_approval.yaml"):
        load_model_configs(config_dir)


def test_invalid_yaml_names_the_file(config_dir):
    (config_dir / "models" / "broken.yaml").write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml: invalid YAML"):
        load_model_configs(config_dir)


def test_env_references(monkeypatch, config_dir):
    monkeypatch.setenv("MODELOPS_TRAINING_BACKEND", "kubernetes")
    monkeypatch.setenv("MODELOPS_DATA_DIR", "/data/lake")
    cfg = load_model_config(config_dir / "models" / "credit_approval.yaml")
    assert cfg.training.backend == "kubernetes"
    assert cfg.dataset.uri == "/data/lake/credit_approval/train.parquet"
    assert expand_env("${UNSET_FOR_TEST:-fallback}") == "fallback"


def test_unset_env_without_default_names_the_key(config_dir):
    path = _edit(config_dir, lambda r: r["training"]["kubernetes"].update(image="${UNSET_IMAGE_FOR_TEST}"))
    with pytest.raises(ConfigError, match="training.kubernetes.image: environment variable UNSET_IMAGE_FOR_TEST is not set"):
        load_model_config(path)


def test_adding_a_yaml_file_adds_a_model(config_dir):
    raw = yaml.safe_load((config_dir / "models" / "credit_approval.yaml").read_text())
    raw["name"] = "credit_approval_v2"
    (config_dir / "models" / "credit_approval_v2.yaml").write_text(yaml.safe_dump(raw))
    assert set(load_model_configs(config_dir)) == {"credit_approval", "credit_approval_v2"}


# --- training.kubernetes.mlflow_credentials_secret -------------------------------------------


def _secret(config_dir: Path, value) -> Path:
    return _edit(config_dir, lambda r: r["training"]["kubernetes"].update(mlflow_credentials_secret=value))


def test_mlflow_credentials_secret_is_off_by_default():
    assert load_model_config(SAMPLE).training.kubernetes.mlflow_credentials_secret is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"name": "mlflow-credentials"}, ("username", "password", None, None)),  # the usual layout by default
        ({"name": "mlflow", "username_key": "user", "password_key": "pass"}, ("user", "pass", None, None)),
        ({"name": "mlflow", "token_key": "token"}, (None, None, "token", None)),
        ({"name": "mlflow.db-creds", "tracking_uri_key": "uri"}, (None, None, None, "uri")),
    ],
)
def test_mlflow_credentials_secret_keys(config_dir, value, expected):
    secret = load_model_config(_secret(config_dir, value)).training.kubernetes.mlflow_credentials_secret
    assert secret.name == value["name"]
    assert (secret.username_key, secret.password_key, secret.token_key, secret.tracking_uri_key) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"name": "Mlflow_Credentials"}, "mlflow_credentials_secret.name: String should match pattern"),
        ({"username_key": "u", "password_key": "p"}, "mlflow_credentials_secret.name: Field required"),
        ({"name": "m", "username_key": "user"}, "mlflow_credentials_secret: Value error, username_key and password_key go together"),
        ({"name": "m", "token_key": "t", "username_key": "u", "password_key": "p"},
         "mlflow_credentials_secret: Value error, token_key: use either token_key or username_key + password_key"),
        ({"name": "m", "password_key": "pass word"}, "mlflow_credentials_secret.password_key: String should match pattern"),
        ({"name": "m", "password": "hunter2"}, "mlflow_credentials_secret.password: unknown key"),
        ("mlflow-credentials", "mlflow_credentials_secret: Input should be a valid dictionary"),
    ],
)
def test_mlflow_credentials_secret_errors_name_the_key(config_dir, value, expected):
    with pytest.raises(ConfigError) as err:
        load_model_config(_secret(config_dir, value))
    assert f"credit_approval.yaml: training.kubernetes.{expected}" in str(err.value)
