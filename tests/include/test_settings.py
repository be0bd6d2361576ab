"""The installation's settings: read when asked for, one home for every MODELOPS_* variable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from include import settings
from include.monitoring import inference_log

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    for setting in settings.ALL:
        monkeypatch.delenv(setting.name, raising=False)


def test_defaults_are_the_embedded_ones_under_the_project():
    assert settings.state_dir() == ROOT / ".modelops"
    assert settings.config_dir() == ROOT / "config"
    assert settings.triton_url() == "http://127.0.0.1:8000"
    assert settings.triton_repository() == ROOT / ".modelops" / "triton" / "models"
    assert settings.triton_venv() == ROOT / ".venv-triton"
    assert inference_log.log_root() == ROOT / ".modelops" / "inference_log"


def test_a_changed_environment_is_seen_without_reimporting(monkeypatch, tmp_path):
    monkeypatch.setenv("MODELOPS_HOME", str(tmp_path / "state"))
    # Everything under the state folder follows it, in every module that uses it.
    assert settings.state_dir() == tmp_path / "state"
    assert settings.triton_repository() == tmp_path / "state" / "triton" / "models"
    assert inference_log.log_root() == tmp_path / "state" / "inference_log"
    from include import tracking

    assert tracking.default_tracking_uri() == f"sqlite:///{tmp_path / 'state' / 'mlflow' / 'mlflow.db'}"

    monkeypatch.setenv("MODELOPS_TRITON_REPOSITORY", str(tmp_path / "repo"))
    monkeypatch.setenv("MODELOPS_INFERENCE_LOG", (tmp_path / "log").as_uri())
    assert settings.triton_repository() == tmp_path / "repo"
    assert inference_log.log_root() == tmp_path / "log"


def test_an_empty_variable_counts_as_unset(monkeypatch):
    monkeypatch.setenv("MODELOPS_HOME", "")
    monkeypatch.setenv("MODELOPS_TRITON_URL", "")
    assert settings.state_dir() == ROOT / ".modelops"
    assert settings.triton_url() == "http://127.0.0.1:8000"


def test_no_module_reads_a_modelops_variable_around_the_settings_module():
    """One home: ``os.environ`` / ``getenv`` lookups of MODELOPS_* happen only in include/settings.py."""
    lookup = re.compile(r"""(environ\.get|environ\[|getenv)\(?\s*["']MODELOPS_""")
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for folder in ("include", "plugins", "dags")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path != ROOT / "include" / "settings.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if lookup.search(line)
    ]
    assert offenders == []


def test_the_readme_lists_every_setting_with_its_default():
    readme = (ROOT / "README.md").read_text()
    for setting in settings.ALL:
        assert f"| `{setting.name}` | {setting.meaning} | `{setting.default}` |" in readme, setting.name
