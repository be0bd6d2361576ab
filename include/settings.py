"""The project's settings: the state folder and every ``MODELOPS_*`` environment variable, in one place.

Each setting is read when it is asked for, not at import, so a process (or a test) that changes its
environment sees the change. The defaults are the embedded ones: everything under the state folder
``<project>/.modelops`` (or ``MODELOPS_HOME``), Triton on ``http://127.0.0.1:8000``.

Model-specific settings (data, gates, thresholds) live in the model's YAML (:mod:`include.config`);
what is here belongs to the installation. MLflow's own variables (``MLFLOW_TRACKING_URI``,
``MLFLOW_TRACKING_USERNAME``…) keep MLflow's names and are read in :mod:`include.tracking`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TRITON_URL = "http://127.0.0.1:8000"


@dataclass(frozen=True)
class Setting:
    """One environment variable: its name, what it sets, and its default in words (for the README)."""

    name: str
    meaning: str
    default: str

    def get(self) -> str | None:
        """The variable's value, or None when it is unset or empty."""
        return os.environ.get(self.name) or None


HOME = Setting("MODELOPS_HOME", "the state folder: MLflow's SQLite store, Triton's repository, the inference log, logs",
               "<project>/.modelops")
CONFIG_DIR = Setting("MODELOPS_CONFIG_DIR", "the folder holding models/<name>.yaml", "<project>/config")
ARTIFACT_ROOT = Setting("MODELOPS_ARTIFACT_ROOT", "artifact location of experiments this project creates",
                        "MLflow's default")
INFERENCE_LOG = Setting("MODELOPS_INFERENCE_LOG", "root of the inference log (folder or file:// URI)",
                        "<state folder>/inference_log")
TRITON_URL = Setting("MODELOPS_TRITON_URL", "Triton's HTTP endpoint (without an Airflow connection)", DEFAULT_TRITON_URL)
TRITON_REPOSITORY = Setting("MODELOPS_TRITON_REPOSITORY", "Triton's model repository (a folder Triton also reads)",
                            "<state folder>/triton/models")
TRITON_VENV = Setting("MODELOPS_TRITON_VENV", "the virtualenv holding the Triton server wheel", "<project>/.venv-triton")
CODE_COMMIT = Setting("MODELOPS_CODE_COMMIT", "the code commit recorded as lineage (images without .git)",
                      "git rev-parse HEAD")
TRAINING_BACKEND = Setting("MODELOPS_TRAINING_BACKEND", "where a training process runs, recorded on its run "
                           "(set by the operators)", "local")

LEDGER_URL = Setting("MODELOPS_LEDGER_URL", "the audit ledger's database (SQLAlchemy URL, e.g. "
                     "postgresql+psycopg2://user@host/db)", "sqlite:///<state folder>/ledger.db")
LEDGER_RETENTION_DAYS = Setting("MODELOPS_LEDGER_RETENTION_DAYS", "days of audit records the ledger keeps "
                                "(at least 183: EU AI Act Art. 19 asks for six months)", "400")

ALL = (HOME, CONFIG_DIR, ARTIFACT_ROOT, INFERENCE_LOG, TRITON_URL, TRITON_REPOSITORY, TRITON_VENV, CODE_COMMIT,
       TRAINING_BACKEND, LEDGER_URL, LEDGER_RETENTION_DAYS)


def state_dir() -> Path:
    """The state folder: ``$MODELOPS_HOME``, else ``<project>/.modelops``."""
    return Path(HOME.get() or PROJECT_ROOT / ".modelops")


def config_dir() -> Path:
    """The configuration folder: ``$MODELOPS_CONFIG_DIR``, else ``<project>/config``."""
    return Path(CONFIG_DIR.get() or PROJECT_ROOT / "config")


def triton_url() -> str:
    """Triton's HTTP endpoint: ``$MODELOPS_TRITON_URL``, else the local server ``make up`` starts."""
    return TRITON_URL.get() or DEFAULT_TRITON_URL


def triton_repository() -> Path:
    """Triton's model repository: ``$MODELOPS_TRITON_REPOSITORY``, else ``<state folder>/triton/models``."""
    configured = TRITON_REPOSITORY.get()
    return Path(configured) if configured else state_dir() / "triton" / "models"


def triton_venv() -> Path:
    """The Triton virtualenv (``scripts/setup_triton.sh`` makes it): ``$MODELOPS_TRITON_VENV`` or ``.venv-triton``."""
    return Path(TRITON_VENV.get() or PROJECT_ROOT / ".venv-triton")


MIN_RETENTION_DAYS = 183  # EU AI Act Art. 19(1): logs kept for at least six months
DEFAULT_RETENTION_DAYS = 400


def ledger_url() -> str:
    """The audit ledger's SQLAlchemy URL: ``$MODELOPS_LEDGER_URL``, else SQLite at ``<state folder>/ledger.db``."""
    return LEDGER_URL.get() or f"sqlite:///{state_dir() / 'ledger.db'}"


def ledger_retention_days() -> int:
    """Days of records the ledger keeps: ``$MODELOPS_LEDGER_RETENTION_DAYS``, default 400.

    Raises ValueError naming the variable when it is not a whole number of at least 183 days.
    """
    raw = LEDGER_RETENTION_DAYS.get()
    if raw is None:
        return DEFAULT_RETENTION_DAYS
    try:
        days = int(raw)
    except ValueError:
        raise ValueError(f"{LEDGER_RETENTION_DAYS.name}={raw!r}: not a whole number of days") from None
    if days < MIN_RETENTION_DAYS:
        raise ValueError(f"{LEDGER_RETENTION_DAYS.name}={days}: below {MIN_RETENTION_DAYS} days (six months, "
                         "EU AI Act Art. 19)")
    return days
