"""Deterministic generator of the demo credit-approval dataset.

One row per loan application. The same arguments always give the same frame: every
random draw comes from ``numpy.random.Generator(PCG64(seed))`` in a fixed order that
does not depend on ``drift``, ``concept_drift`` or ``corruption``. Those knobs only
transform the same underlying draws, so batches with one seed are comparable:

* ``drift`` (0..1) - covariate shift: lower incomes and credit scores, higher
  debt-to-income, shorter employment, more renters and business loans.
* ``concept_drift`` (0..1) - the label relationship changes: more defaults for the
  same features, a new regional effect and a weaker credit-score effect, so a
  model trained on clean data approves worse loans.
* ``corruption`` - one data-quality fault from :data:`CORRUPTIONS`, applied to
  the column in :data:`CORRUPTED_COLUMN`.

``defaulted`` is a logistic function of the features plus Bernoulli noise (about
20% positives); ``repaid_amount`` is the later business outcome: the loan amount if
repaid, a fraction of it on default.

CLI: ``python -m include.demo.datagen OUT_URI --rows N --seed S [--drift X]
[--concept-drift X] [--corruption KIND] [--start ISO] [--hours H]``.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
from collections.abc import Sequence
from datetime import datetime

import numpy as np
import pandas as pd

from include.data.dataset import write_dataset

log = logging.getLogger(__name__)

ID_COLUMN = "application_id"
TIMESTAMP_COLUMN = "applied_at"
TARGET = "defaulted"
OUTCOME = "repaid_amount"

COLUMN_TYPES: dict[str, str] = {
    ID_COLUMN: "string",
    TIMESTAMP_COLUMN: "timestamp",
    "age": "int",
    "annual_income": "float",
    "loan_amount": "float",
    "credit_score": "int",
    "employment_years": "float",
    "debt_to_income": "float",
    "home_ownership": "category",
    "loan_purpose": "category",
    "region": "category",
    TARGET: "int",
    OUTCOME: "float",
}
FEATURES: list[str] = [c for c in COLUMN_TYPES if c not in (ID_COLUMN, TIMESTAMP_COLUMN, TARGET, OUTCOME)]

CATEGORIES: dict[str, tuple[str, ...]] = {
    "home_ownership": ("rent", "own", "mortgage"),
    "loan_purpose": ("debt_consolidation", "home_improvement", "car", "business", "education", "medical"),
    "region": ("north", "south", "east", "west"),
}

CORRUPTIONS: dict[str, str] = {
    "wrong_types": "annual_income holds non-numeric strings in some rows",
    "nulls": "credit_score is null in some rows",
    "out_of_range": "age is 150 or -3 in some rows",
    "missing_column": "debt_to_income is missing",
    "non_finite": "annual_income is inf, -inf or 1e308 in some rows",
    "future_timestamps": "applied_at is 70 years in the future in some rows",
    "unknown_label": "defaulted is 2 (not a class) in some rows",
}
CORRUPTED_COLUMN: dict[str, str] = {
    "wrong_types": "annual_income",
    "nulls": "credit_score",
    "out_of_range": "age",
    "missing_column": "debt_to_income",
    "non_finite": "annual_income",
    "future_timestamps": "applied_at",
    "unknown_label": "defaulted",
}
CORRUPTED_FRACTION = 0.05

# Category mixes at drift 0 and drift 1 (interpolated linearly in between).
_HOME_P = ((0.35, 0.20, 0.45), (0.65, 0.10, 0.25))
_PURPOSE_P = ((0.35, 0.20, 0.15, 0.10, 0.10, 0.10), (0.25, 0.10, 0.10, 0.35, 0.10, 0.10))
_REGION_P = ((0.25, 0.25, 0.25, 0.25), (0.25, 0.25, 0.25, 0.25))

# Additive log-odds of default per category level.
_HOME_EFFECT = {"rent": 0.25, "own": -0.3, "mortgage": -0.1}
_PURPOSE_EFFECT = {
    "debt_consolidation": 0.1,
    "home_improvement": -0.2,
    "car": -0.3,
    "business": 0.5,
    "education": 0.2,
    "medical": 0.3,
}


def _to_utc(start: datetime | str) -> pd.Timestamp:
    """Parse ``start``; a naive value is taken as UTC."""
    ts = pd.Timestamp(start)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _check_unit(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")


def _pick(
    u: np.ndarray, levels: Sequence[str], mix: tuple[tuple[float, ...], tuple[float, ...]], drift: float
) -> np.ndarray:
    """Map uniforms ``u`` to category levels with probabilities interpolated by ``drift``."""
    probs = (1 - drift) * np.asarray(mix[0]) + drift * np.asarray(mix[1])
    edges = np.cumsum(probs / probs.sum())
    index = np.minimum(np.searchsorted(edges, u, side="right"), len(levels) - 1)
    return np.asarray(levels, dtype=object)[index]


def _batch_tag(seed: int, start: pd.Timestamp) -> str:
    """Short stable tag so ids from different seeds or starts never clash."""
    return hashlib.sha256(f"{seed}|{start.value}".encode()).hexdigest()[:8]


def _default_logit(df: pd.DataFrame, concept_drift: float) -> np.ndarray:
    """Log-odds of default; ``concept_drift`` moves it away from the training relationship."""
    score = (df["credit_score"].to_numpy() - 680.0) / 70.0
    dti = (df["debt_to_income"].to_numpy() - 0.3) / 0.15
    loan_to_income = (df["loan_amount"].to_numpy() / df["annual_income"].to_numpy() - 0.25) / 0.12
    employment = np.log1p(df["employment_years"].to_numpy())
    home = df["home_ownership"].map(_HOME_EFFECT).to_numpy(dtype=float)
    purpose = df["loan_purpose"].map(_PURPOSE_EFFECT).to_numpy(dtype=float)
    south = (df["region"].to_numpy() == "south").astype(float)
    return (
        -1.2
        + 1.2 * concept_drift
        - 1.0 * (1.0 - 0.6 * concept_drift) * score
        + 0.6 * dti
        + 0.5 * loan_to_income
        - 0.35 * employment
        + home
        + purpose
        + 1.5 * concept_drift * south
    )


def _corrupt(df: pd.DataFrame, corruption: str, rng: np.random.Generator) -> pd.DataFrame:
    """Apply one data-quality fault to a copy of ``df``."""
    column = CORRUPTED_COLUMN[corruption]
    out = df.copy()
    if corruption == "missing_column":
        return out.drop(columns=[column])
    n = len(out)
    rows = rng.choice(n, size=min(n, max(1, round(CORRUPTED_FRACTION * n))), replace=False)
    if corruption == "wrong_types":
        values = out[column].astype(str).to_numpy(dtype=object)
        values[rows] = rng.choice(np.array(["N/A", "unknown", "12k", "-"], dtype=object), size=len(rows))
        out[column] = values
    elif corruption == "nulls":
        values = out[column].astype("Int64")
        values.iloc[rows] = pd.NA
        out[column] = values
    elif corruption == "out_of_range":
        out.loc[rows, column] = rng.choice(np.array([150, -3], dtype=np.int64), size=len(rows))
    elif corruption == "non_finite":
        out.loc[rows, column] = rng.choice(np.array([np.inf, -np.inf, 1e308]), size=len(rows))
    elif corruption == "future_timestamps":
        out.loc[rows, column] = out.loc[rows, column] + pd.DateOffset(years=70)
    elif corruption == "unknown_label":
        out.loc[rows, column] = 2
    return out


def generate_batch(
    n_rows: int,
    *,
    seed: int = 0,
    start: datetime | str = "2026-01-01T00:00:00Z",
    hours: float = 24 * 30,
    drift: float = 0.0,
    concept_drift: float = 0.0,
    corruption: str | None = None,
) -> pd.DataFrame:
    """Generate ``n_rows`` loan applications dated in ``[start, start + hours)``, sorted by time."""
    if n_rows < 0:
        raise ValueError(f"n_rows must be >= 0, got {n_rows}")
    if hours <= 0:
        raise ValueError(f"hours must be > 0, got {hours}")
    _check_unit("drift", drift)
    _check_unit("concept_drift", concept_drift)
    if corruption is not None and corruption not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {corruption!r}; allowed: {sorted(CORRUPTIONS)}")
    start_ts = _to_utc(start)
    rng = np.random.Generator(np.random.PCG64(seed))
    n = n_rows

    offsets = np.sort(rng.integers(0, max(1, int(hours * 3600)), size=n))  # whole seconds
    age = np.clip(np.rint(rng.normal(41.0 - 5.0 * drift, 12.0, n)), 18, 90).astype(np.int64)
    income = np.clip(np.exp(rng.normal(np.log(62_000) - 0.3 * drift, 0.5, n)), 15_000, 300_000)
    loan = np.clip(income * rng.uniform(0.03, 0.45, n), 1_000, 100_000)
    score = np.clip(np.rint(rng.normal(680.0 - 50.0 * drift, 70.0, n)), 300, 850).astype(np.int64)
    employment = np.clip(rng.gamma(2.0, 3.5, n) * (1 - 0.3 * drift), 0, np.minimum(50, age - 18))
    dti = np.clip(rng.beta(2.0, 5.0, n) * 1.05 + 0.12 * drift, 0, 1.5)
    home = _pick(rng.random(n), CATEGORIES["home_ownership"], _HOME_P, drift)
    purpose = _pick(rng.random(n), CATEGORIES["loan_purpose"], _PURPOSE_P, drift)
    region = _pick(rng.random(n), CATEGORIES["region"], _REGION_P, drift)
    label_u = rng.random(n)
    recovery = rng.uniform(0.0, 0.6, n)

    df = pd.DataFrame(
        {
            ID_COLUMN: np.array([f"APP-{_batch_tag(seed, start_ts)}-{i:09d}" for i in range(n)], dtype=object),
            TIMESTAMP_COLUMN: (start_ts + pd.to_timedelta(offsets, unit="s")).as_unit("ns"),
            "age": age,
            "annual_income": np.round(income, 2),
            "loan_amount": np.round(loan, 2),
            "credit_score": score,
            "employment_years": np.round(employment, 1),
            "debt_to_income": np.round(dti, 4),
            "home_ownership": home,
            "loan_purpose": purpose,
            "region": region,
        }
    )
    default_p = 1.0 / (1.0 + np.exp(-_default_logit(df, concept_drift)))
    df[TARGET] = (label_u < default_p).astype(np.int64)
    df[OUTCOME] = np.where(df[TARGET] == 1, np.round(df["loan_amount"] * recovery, 2), df["loan_amount"])
    if corruption is not None:
        df = _corrupt(df, corruption, rng)
    return df


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point: generate one batch and write it with write_dataset."""
    parser = argparse.ArgumentParser(prog="python -m include.demo.datagen", description=__doc__.splitlines()[0])
    parser.add_argument("out_uri", help="destination: *.parquet, *.csv or a directory")
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--drift", type=float, default=0.0)
    parser.add_argument("--concept-drift", type=float, default=0.0)
    parser.add_argument("--corruption", choices=sorted(CORRUPTIONS))
    parser.add_argument("--start", default="2026-01-01T00:00:00Z", help="ISO-8601 start of the time window (UTC)")
    parser.add_argument("--hours", type=float, default=24 * 30)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    df = generate_batch(
        args.rows,
        seed=args.seed,
        start=args.start,
        hours=args.hours,
        drift=args.drift,
        concept_drift=args.concept_drift,
        corruption=args.corruption,
    )
    write_dataset(df, args.out_uri)
    log.info(
        "generated %d rows to %s (seed=%s start=%s hours=%s drift=%s concept_drift=%s corruption=%s, default rate %.3f)",
        len(df),
        args.out_uri,
        args.seed,
        args.start,
        args.hours,
        args.drift,
        args.concept_drift,
        args.corruption,
        df[TARGET].mean() if len(df) else float("nan"),
    )


if __name__ == "__main__":
    main()
