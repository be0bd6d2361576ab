"""Data the drift tests share: frames that reach each of Evidently's special paths."""

from __future__ import annotations

import numpy as np
import pandas as pd

from include.demo.datagen import COLUMN_TYPES, FEATURES

GEN_TYPES = {c: COLUMN_TYPES[c] for c in FEATURES}
EDGE_TYPES = {
    "few": "float",  # 4 distinct values and nulls: chi-square / Jensen-Shannon
    "binary_num": "int",  # 2 values: Z / Jensen-Shannon
    "nearly_few": "int",  # 5 values in the reference, 7 with the shifted current: the test changes
    "constant": "float",  # std 0: Evidently's 0.001 floor on the Wasserstein norm
    "nullable": "int",  # pandas Int64 with <NA>
    "with_inf": "float",  # +inf rows are dropped like nulls
    "flag": "bool",
    "yes_no": "category",  # binary categorical (pandas Categorical)
    "color": "category",  # a category unseen in the reference when shifted
    "same": "string",  # one value on both sides: Z p-value 1
    "cat_nulls": "category",
}


def edge_frame(n: int, *, shifted: bool, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    few = rng.integers(0, 4, n).astype(float)
    few[: n // 20] = np.nan
    return pd.DataFrame(
        {
            "few": few,
            "binary_num": rng.integers(0, 2, n),
            "nearly_few": rng.integers(0, 7 if shifted else 5, n),
            "constant": 7.0 + (rng.normal(0, 0.01, n) if shifted else np.zeros(n)),
            "nullable": pd.array(np.where(rng.random(n) < 0.1, None, rng.integers(0, 100, n)), dtype="Int64"),
            "with_inf": np.where(rng.random(n) < 0.02, np.inf, rng.normal(0.5 if shifted else 0.0, 1, n)),
            "flag": rng.random(n) < (0.5 if shifted else 0.3),
            "yes_no": pd.Categorical(rng.choice(["yes", "no"], n)),
            "color": rng.choice(["red", "green", "blue", "purple"] if shifted else ["red", "green", "blue"], n),
            "same": np.array(["a"] * n, dtype=object),
            "cat_nulls": np.where(rng.random(n) < 0.2, None, rng.choice(["x", "y", "z"], n)).astype(object),
        }
    )
