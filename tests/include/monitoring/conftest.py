"""Fixtures shared by the monitoring tests: reference profiles."""

from __future__ import annotations

import pytest

from include.config import get_model_config
from include.demo.datagen import generate_batch
from include.monitoring.reference_profile import ReferenceProfile, build_profile
from tests.include.monitoring.drift_cases import EDGE_TYPES, edge_frame


@pytest.fixture(scope="module")
def profile() -> ReferenceProfile:
    """The credit model's features' reference profile, from 2,000 generated applications."""
    config = get_model_config("credit_approval")
    return build_profile(generate_batch(2000, seed=1), {c.name: c.type for c in config.dataset.features})


@pytest.fixture(scope="module")
def edge_profile() -> ReferenceProfile:
    """The profile of the drift tests' edge cases (:func:`tests.include.monitoring.drift_cases.edge_frame`)."""
    return build_profile(edge_frame(3000, shifted=False, seed=1), EDGE_TYPES, sample_rows=200)
