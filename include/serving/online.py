"""Online predictions through Triton; Triton itself writes them to the inference log.

    from include.serving.online import predict
    probabilities = predict("credit_approval", applications)   # a DataFrame of feature columns

The model is addressed by name: Triton answers with the version it serves (the champion). Logging
happens in the server (:mod:`include.serving.triton.request_log`), for this client and any other, so
this module writes nothing: a second, client-side copy would count every request twice. Pass
``request_ids`` (one per row) to log the rows under your own ids, the key delayed labels arrive with.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from include import settings
from include.serving.triton.client import TritonClient


def predict(
    model: str,
    frame: pd.DataFrame,
    *,
    client: TritonClient | None = None,
    request_ids: Sequence[str] | None = None,
) -> np.ndarray:
    """Positive-class probability per row of ``frame`` (``[N]`` float64), logged by Triton under ``request_ids``."""
    return predict_with_ids(model, frame, client=client, request_ids=request_ids)[0]


def predict_with_ids(
    model: str,
    frame: pd.DataFrame,
    *,
    client: TritonClient | None = None,
    request_ids: Sequence[str] | None = None,
) -> tuple[np.ndarray, list[str] | None]:
    """(probabilities ``[N]``, the id each row was logged under) — the server's ids when none are given."""
    own = client is None
    client = client or TritonClient(settings.triton_url())
    try:
        scores, _, ids = client.infer_with_ids(model, frame.reset_index(drop=True), request_ids=request_ids)
    finally:
        if own:
            client.close()
    return scores, ids
