"""The drift reference profile: what hourly drift checks need from the training features, kept once.

:func:`build_profile` keeps, from the training split's features, per numeric column its distinct
finite values with their counts (the exact empirical distribution) and its standard deviation
computed as Evidently does; per categorical column its value counts; plus a row sample for the
human-facing HTML report. The drift tests (:mod:`include.monitoring.drift`) then need no training
data and sample nothing.

Numeric columns are the project's ``int`` and ``float`` types; ``category``, ``string`` and
``bool`` are categorical. Nulls and +/-inf are dropped first, as Evidently does.

A profile is a folder: ``profile.json`` (columns, types, counts, standard deviations),
``numeric.parquet`` (``value``/``count`` of every numeric column, one after the other in the
order of ``profile.json``) and ``sample.parquet``. Training logs it under ``reference_profile/``
of its MLflow run (:func:`log_profile`); monitoring reads it back with :func:`load_profile`.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

PROFILE_ARTIFACT = "reference_profile"
PROFILE_FILE = "profile.json"
NUMERIC_FILE = "numeric.parquet"
SAMPLE_FILE = "sample.parquet"
FORMAT_VERSION = 1

NUMERIC_TYPES = frozenset({"int", "float"})
CATEGORICAL_TYPES = frozenset({"category", "string", "bool"})


@dataclass(frozen=True)
class NumericReference:
    """The exact empirical distribution of a numeric reference column (nulls and infinities dropped)."""

    values: np.ndarray  # sorted distinct values, float64
    counts: np.ndarray  # occurrences of each value, int64
    std: float  # population standard deviation, as Evidently computes it (np.std of the pandas Series)

    @property
    def n(self) -> int:
        return int(self.counts.sum())


@dataclass(frozen=True)
class CategoricalReference:
    """Value counts of a categorical reference column (nulls dropped)."""

    counts: dict[Any, int]

    @property
    def n(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class ReferenceProfile:
    """What the hourly drift check needs from the training features; see the module docstring."""

    column_types: dict[str, str]  # feature -> project type keyword, in feature order
    columns: dict[str, NumericReference | CategoricalReference]
    sample: pd.DataFrame  # reference rows for the human-facing report
    n_rows: int
    evidently_version: str = ""

    @property
    def features(self) -> list[str]:
        return list(self.column_types)

    def save(self, directory: Path) -> Path:
        """Write the profile's files into ``directory`` (created); the same profile gives the same bytes."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns: list[dict[str, Any]] = []
        values, counts = [], []
        for name, kind in self.column_types.items():
            ref = self.columns[name]
            entry: dict[str, Any] = {"name": name, "type": kind, "n": ref.n}
            if isinstance(ref, NumericReference):
                entry.update(n_unique=int(ref.values.size), std=ref.std)
                values.append(ref.values)
                counts.append(ref.counts)
            else:
                keys = sorted_keys(ref.counts)
                entry.update(values=[_json_value(name, k) for k in keys], counts=[int(ref.counts[k]) for k in keys])
            columns.append(entry)
        meta = {
            "format_version": FORMAT_VERSION,
            "evidently_version": self.evidently_version,
            "n_rows": self.n_rows,
            "columns": columns,
        }
        (directory / PROFILE_FILE).write_text(json.dumps(meta, indent=1, allow_nan=False) + "\n")
        table = pa.table(
            {
                "value": pa.array(np.concatenate(values) if values else np.empty(0), type=pa.float64()),
                "count": pa.array(np.concatenate(counts) if counts else np.empty(0, np.int64), type=pa.int64()),
            }
        )
        pq.write_table(table, directory / NUMERIC_FILE)
        pq.write_table(pa.Table.from_pandas(self.sample, preserve_index=False), directory / SAMPLE_FILE)
        return directory

    @classmethod
    def load(cls, directory: Path) -> ReferenceProfile:
        """Read a profile written by :meth:`save`.

        Raises ``FileNotFoundError`` naming the missing files, ``ValueError`` for another
        ``format_version`` or files that disagree.
        """
        import pyarrow.parquet as pq

        directory = Path(directory)
        missing = [f for f in (PROFILE_FILE, NUMERIC_FILE, SAMPLE_FILE) if not (directory / f).is_file()]
        if missing:
            raise FileNotFoundError(f"reference profile {directory} is missing {', '.join(missing)}")
        meta = json.loads((directory / PROFILE_FILE).read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"reference profile {directory}: format_version {meta.get('format_version')!r} "
                             f"is not {FORMAT_VERSION}")
        table = pq.read_table(directory / NUMERIC_FILE)
        all_values = table.column("value").to_numpy()
        all_counts = table.column("count").to_numpy()
        column_types: dict[str, str] = {}
        columns: dict[str, NumericReference | CategoricalReference] = {}
        offset = 0
        for entry in meta["columns"]:
            name = entry["name"]
            column_types[name] = entry["type"]
            if entry["type"] in NUMERIC_TYPES:
                end = offset + entry["n_unique"]
                columns[name] = NumericReference(all_values[offset:end], all_counts[offset:end], float(entry["std"]))
                offset = end
            else:
                columns[name] = CategoricalReference(dict(zip(entry["values"], entry["counts"], strict=True)))
        if offset != len(all_values):
            raise ValueError(f"reference profile {directory}: {NUMERIC_FILE} holds {len(all_values)} values, "
                             f"{PROFILE_FILE} describes {offset}")
        sample = pq.read_table(directory / SAMPLE_FILE).to_pandas()
        return cls(column_types, columns, sample, int(meta["n_rows"]), meta.get("evidently_version", ""))


def build_profile(
    frame: pd.DataFrame, column_types: Mapping[str, str], *, sample_rows: int = 5000, seed: int = 0
) -> ReferenceProfile:
    """The reference profile of ``frame``'s columns named in ``column_types`` (feature -> type keyword).

    ``sample_rows``: rows kept (drawn with ``seed``) for the HTML report. Raises ``ValueError``
    naming the column for a type that cannot be checked, a missing column, a column without a
    non-null value or text where a number is declared, and for a frame without rows.
    """
    types = check_types(column_types)
    check_frame(frame, types, "reference")
    columns: dict[str, NumericReference | CategoricalReference] = {}
    for name, kind in types.items():
        column = clean(frame[name])
        if column.empty:
            raise ValueError(f"column {name!r} has no non-null values in the reference data")
        if kind in NUMERIC_TYPES:
            if not pd.api.types.is_numeric_dtype(column.dtype):
                raise ValueError(f"column {name!r} in the reference data should be numeric, got dtype {column.dtype}")
            values, counts = np.unique(column.to_numpy(dtype=np.float64), return_counts=True)
            columns[name] = NumericReference(values, counts.astype(np.int64), float(np.std(column)))
        else:
            counts = column.value_counts()
            columns[name] = CategoricalReference({_native(k): int(v) for k, v in counts.items() if v > 0})
    sample = frame[list(types)]
    if len(sample) > sample_rows:
        sample = sample.sample(n=sample_rows, random_state=seed)
    return ReferenceProfile(types, columns, sample.reset_index(drop=True), len(frame), _evidently_version())


# --- MLflow ----------------------------------------------------------------------------------------


def log_profile(profile: ReferenceProfile) -> None:
    """Log the profile's files under ``reference_profile/`` of the active MLflow run.

    Raises ``RuntimeError`` when no run is active.
    """
    import mlflow

    if mlflow.active_run() is None:
        raise RuntimeError("log_profile needs an active MLflow run")
    with tempfile.TemporaryDirectory(prefix="reference-profile-") as tmp:
        mlflow.log_artifacts(str(profile.save(Path(tmp))), artifact_path=PROFILE_ARTIFACT)


def load_profile(client: MlflowClient, run_id: str) -> ReferenceProfile:
    """The profile logged with run ``run_id`` (the run of a registered version's training).

    Raises ``FileNotFoundError`` when the run has none, and what :meth:`ReferenceProfile.load` raises.
    """
    names = {Path(a.path).name for a in client.list_artifacts(run_id, PROFILE_ARTIFACT)}
    if PROFILE_FILE not in names:
        raise FileNotFoundError(f"run {run_id} has no {PROFILE_ARTIFACT}/{PROFILE_FILE} artifact")
    with tempfile.TemporaryDirectory(prefix="reference-profile-") as tmp:
        return ReferenceProfile.load(Path(client.download_artifacts(run_id, PROFILE_ARTIFACT, tmp)))


# --- shared with the drift tests -----------------------------------------------------------------


def check_types(column_types: Mapping[str, str]) -> dict[str, str]:
    """``column_types`` as a dict; ``ValueError`` when empty or naming a type drift cannot check."""
    if not column_types:
        raise ValueError("column_types is empty: no features to check for drift")
    allowed = NUMERIC_TYPES | CATEGORICAL_TYPES
    for name, kind in column_types.items():
        if kind not in allowed:
            raise ValueError(f"column {name!r}: type {kind!r} cannot be checked for drift (allowed: {sorted(allowed)})")
    return dict(column_types)


def check_frame(frame: pd.DataFrame, types: Mapping[str, str], side: str) -> None:
    """``ValueError`` when ``frame`` (the ``side``: reference or current) lacks a column or has no rows."""
    missing = [c for c in types if c not in frame.columns]
    if missing:
        raise ValueError(f"{side} data is missing column(s): {', '.join(missing)}")
    if frame.empty:
        raise ValueError(f"{side} data has no rows")


def clean(series: pd.Series) -> pd.Series:
    """Evidently's cleaning: +/-inf become null, nulls are dropped."""
    return series.replace([-np.inf, np.inf], np.nan).dropna()


def sorted_keys(keys) -> list:
    """``keys`` sorted; keys of mixed types by (type name, text)."""
    try:
        return sorted(keys)
    except TypeError:  # mixed types
        return sorted(keys, key=lambda k: (type(k).__name__, str(k)))


def _native(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _json_value(column: str, value: Any) -> Any:
    if isinstance(value, bool | int | str) or (isinstance(value, float) and np.isfinite(value)):
        return value
    raise ValueError(f"column {column!r}: category value {value!r} ({type(value).__name__}) cannot be stored "
                     "in a profile (str, int, float or bool only)")


def _evidently_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("evidently")
    except PackageNotFoundError:
        return ""
