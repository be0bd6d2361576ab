"""Columns that slices and fairness group rows by: features as they are, and bands derived from numeric features.

A derived column (:class:`include.config.DerivedColumn`, e.g. ``{name: age_band, from: age, bins: [30, 45, 60]}``)
is computed here at evaluation, from a feature the model already has: no new personal field enters the
data, the expectation suite or the served model's inputs.

Group values become parts of MLflow metric keys (``slice.region.north.roc_auc``), so :func:`value_token`
turns each into a token MLflow accepts; a missing value is the group :data:`MISSING`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from include.config import DerivedColumn, EvidenceConfig

MISSING = "missing"  # the group of rows whose value is missing
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. ]")  # MLflow metric keys: alphanumerics, _ - . space (and / :, kept out)


def value_token(value: object) -> str:
    """A group value as it appears in metric keys: ``str(value)`` with characters MLflow refuses replaced by ``_``.

    None, NaN and ``pd.NA`` are :data:`MISSING`; floats that are whole numbers lose their ``.0``
    (``3.0`` -> ``"3"``); the empty string is ``"_"``. Two values can share a token (``"a/b"``, ``"a_b"``):
    their rows are then one group.
    """
    import pandas as pd

    if value is None or (not isinstance(value, str) and bool(pd.isna(value))):
        return MISSING
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return _UNSAFE.sub("_", str(value)) or "_"


def band(values: pd.Series, derived: DerivedColumn) -> pd.Series:
    """The band label of each value (object Series, same index): left-closed bands cut at ``derived.bins``.

    Band ``i`` holds ``bins[i-1] <= value < bins[i]``; below ``bins[0]`` is the first band, at or above
    ``bins[-1]`` the last; a missing (or non-numeric) value is :data:`MISSING`.
    """
    import numpy as np
    import pandas as pd

    numbers = pd.to_numeric(values, errors="coerce").astype("float64").to_numpy()
    labels = np.asarray(derived.band_labels, dtype=object)
    index = np.searchsorted(np.asarray(derived.bins, dtype=np.float64), numbers, side="right")
    out = labels[np.minimum(index, len(labels) - 1)]
    out[np.isnan(numbers)] = MISSING
    return pd.Series(out, index=values.index, dtype=object, name=derived.name)


def group_values(frame: pd.DataFrame, column: str, evidence: EvidenceConfig) -> pd.Series:
    """The group token of every row for ``column``: a derived column's band, else the feature's value token."""
    import pandas as pd

    derived = {d.name: d for d in evidence.derived_columns}
    if column in derived:
        source = derived[column].source
        if source not in frame.columns:
            raise ValueError(f"derived column {column!r}: the frame has no column {source!r}")
        return band(frame[source], derived[column])
    if column not in frame.columns:
        raise ValueError(f"the frame has no column {column!r}")
    return pd.Series([value_token(v) for v in frame[column]], index=frame.index, dtype=object, name=column)


def group_frame(frame: pd.DataFrame, columns: Sequence[str], evidence: EvidenceConfig) -> pd.DataFrame:
    """One column of group tokens per name in ``columns`` (same index as ``frame``)."""
    import pandas as pd

    return pd.DataFrame({c: group_values(frame, c, evidence) for c in columns}, index=frame.index)
