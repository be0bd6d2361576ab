"""Online predictions through Triton, each request and response written to the inference log.

    from include.serving.online import predict
    probabilities = predict("credit_approval", applications)   # a DataFrame of feature columns

The model is addressed by name: Triton answers with the version it serves (the champion), and that
version is what the log records.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import pandas as pd

from include import settings
from include.monitoring import inference_log
from include.serving.triton.client import TritonClient


def predict(
    model: str,
    frame: pd.DataFrame,
    *,
    client: TritonClient | None = None,
    request_ids: Sequence[str] | None = None,
    log_root: str | None = None,
) -> np.ndarray:
    """Positive-class probability per row of ``frame``; the rows, outputs and version go to the inference log."""
    client = client or TritonClient(settings.triton_url())
    features = frame.reset_index(drop=True)
    started = time.perf_counter()
    scores, version = client.infer_with_version(model, features)
    latency_ms = (time.perf_counter() - started) * 1000
    if len(features):
        inference_log.log_predictions(
            model, version or "unknown", "online", features, scores,
            request_ids=request_ids, latency_ms=latency_ms, root=log_root,
        )
    return scores
