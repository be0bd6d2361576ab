"""Deterministic synthetic cases for CBPE: a labelled reference and hours of analysis data, some shifted.

numpy only: ``bench/cbpe_reference/make_expected.py`` imports this module inside NannyML's throw-away
virtualenv to write NannyML's estimates to ``data/cbpe_expected.json``, and
``test_performance_estimation.py`` regenerates the same rows to compare this project's estimates with
them (the JSON keeps a fingerprint of the rows, so a change here fails loudly instead of silently).

Each case: one feature ``x``; the label is Bernoulli with ``p = sigmoid(intercept + slope * x)``; the
model's score is ``sigmoid(temperature * logit + bias)`` (temperature 1 and bias 0: calibrated).
Rows are one per second from ``START`` (each hour is a chunk; timestamps are distinct, so ordering is
unambiguous), and scores are continuous (no ties, where NannyML's unstable sort could differ by CPU).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

START = np.datetime64("2026-01-01T00:00:00")
REFERENCE_HOURS = 8
REFERENCE_ROWS_PER_HOUR = 500


@dataclass(frozen=True)
class Hour:
    """One analysis hour: its rows and how its inputs (``x``) are distributed."""

    rows: int
    x_mean: float = 0.0
    x_std: float = 1.0


@dataclass(frozen=True)
class Case:
    name: str
    seed: int
    threshold: float
    intercept: float
    slope: float
    temperature: float  # 1: the score's logit is the true one's; < 1: under-confident
    bias: float  # added to the score's logit: miscalibrated towards one class
    hours: tuple[Hour, ...]


CASES = (
    Case("miscalibrated", seed=11, threshold=0.5, intercept=-1.2, slope=1.5, temperature=0.6, bias=0.4,
         hours=(Hour(600), Hour(800, x_mean=0.8), Hour(400, x_mean=-0.8), Hour(1000, x_std=2.0), Hour(120),
                Hour(700, x_mean=1.5, x_std=0.5))),
    Case("calibrated_low_threshold", seed=12, threshold=0.3, intercept=-1.0, slope=1.2, temperature=1.0, bias=0.0,
         hours=(Hour(500), Hour(900, x_mean=1.0), Hour(300, x_mean=-1.2), Hour(1500, x_std=0.4))),
    Case("majority_positive", seed=13, threshold=0.6, intercept=1.0, slope=1.5, temperature=1.3, bias=-0.3,
         hours=(Hour(700), Hour(600, x_mean=-1.0), Hour(200, x_mean=0.5, x_std=1.5))),
)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _rows(case: Case, rng: np.random.Generator, n: int, x_mean: float, x_std: float) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(x_mean, x_std, n)
    logit = case.intercept + case.slope * x
    label = (rng.random(n) < _sigmoid(logit)).astype(np.int64)
    score = _sigmoid(case.temperature * logit + case.bias)
    return score, label


def generate(case: Case) -> dict[str, np.ndarray]:
    """The case's rows: ``score`` (float64), ``label`` (int64 0/1), ``hour`` (int64: 0..7 reference hours,
    8.. the analysis hours, in order), ``ts`` (datetime64[s], one row per second within its hour) and
    ``reference`` (bool)."""
    rng = np.random.default_rng(case.seed)
    scores, labels, hours = [], [], []
    for hour in range(REFERENCE_HOURS):
        s, y = _rows(case, rng, REFERENCE_ROWS_PER_HOUR, 0.0, 1.0)
        scores.append(s), labels.append(y), hours.append(np.full(len(s), hour))
    for i, spec in enumerate(case.hours):
        s, y = _rows(case, rng, spec.rows, spec.x_mean, spec.x_std)
        scores.append(s), labels.append(y), hours.append(np.full(len(s), REFERENCE_HOURS + i))
    hour = np.concatenate(hours).astype(np.int64)
    second = np.concatenate([np.arange(len(h)) for h in hours])
    ts = START + hour.astype("timedelta64[h]") + second.astype("timedelta64[s]")
    return {"score": np.concatenate(scores), "label": np.concatenate(labels), "hour": hour, "ts": ts,
            "reference": hour < REFERENCE_HOURS}


def fingerprint(data: dict[str, np.ndarray]) -> str:
    """sha256 of the scores and labels (little-endian float64 / int64 bytes): the rows NannyML was run on."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(data["score"], dtype="<f8").tobytes())
    digest.update(np.ascontiguousarray(data["label"], dtype="<i8").tobytes())
    return digest.hexdigest()
