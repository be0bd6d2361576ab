"""The challenger on live traffic, hour by hour, and the evidence the ``shadow`` promotion gate reads.

Triton logs the challenger's rows beside the champion's (:mod:`include.serving.triton.model`): in
shadow every live request is scored by both (role ``shadow``, same ``request_id``); in canary a sticky
share of requests is answered by the challenger instead (role ``canary``). Each assessed hour
(:func:`assess_challenger`) compares them:

* shadow: on the requests both scored (paired by ``request_id``): the **agreement** rate (both decide
  alike at ``monitoring.decision_threshold``), each KPI computed on the same requests with each
  version's scores (label-free ones at once, labelled ones as delayed labels arrive) and their
  difference;
* canary: each KPI of the challenger's requests against the champion's requests of the same hour
  (different requests: a comparison of populations, not pairs); an hour where a KPI of the canary is
  worse by more than the KPI's ``max_drop``, or where its invalid predictions reach
  ``invalid_predictions_critical``, is **critical**: monitoring takes the canary off traffic.

The numbers go to the monitoring run as metrics at the hour's step (``challenger.version``,
``challenger.requests``, ``challenger.agreement``, ``challenger.kpi.<name>``, ``challenger.champion_kpi.<name>``,
``challenger.kpi_drop.<name>``: champion minus challenger, positive when the challenger is worse);
:func:`evidence` sums them over the hours a version was the challenger, for the gate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from include.config import ModelConfig
from include.monitoring.history import _history, hour_step  # {step: latest value}: as the KPI baseline reads
from include.monitoring.kpis import compute_kpis, valid_predictions
from include.monitoring.log_schema import CANARY, PREDICTION, ROLE, SHADOW

PREFIX = "challenger."
_CHALLENGER_SCORE = "prediction_challenger"


@dataclass
class ChallengerHour:
    """One hour of the challenger on live traffic; KPI values None where too few rows had what they need."""

    version: str
    mode: str  # shadow | canary
    requests: int  # shadow: requests both versions scored; canary: requests the challenger answered
    agreement: float | None = None  # shadow only
    kpis: dict[str, float | None] = field(default_factory=dict)  # the challenger's
    champion_kpis: dict[str, float | None] = field(default_factory=dict)  # the champion's, same requests (shadow)
    critical: list[str] = field(default_factory=list)  # canary: why it must stop

    @property
    def drops(self) -> dict[str, float]:
        """Champion minus challenger per KPI with both values (positive: the challenger is worse)."""
        return {k: self.champion_kpis[k] - v for k, v in self.kpis.items()
                if v is not None and self.champion_kpis.get(k) is not None}

    def metrics(self) -> dict[str, float]:
        values = {f"{PREFIX}requests": float(self.requests), f"{PREFIX}canary": float(self.mode == CANARY),
                  f"{PREFIX}critical": float(bool(self.critical))}
        if self.version.isdigit():
            values[f"{PREFIX}version"] = float(self.version)
        if self.agreement is not None:
            values[f"{PREFIX}agreement"] = self.agreement
        values.update({f"{PREFIX}kpi.{k}": v for k, v in self.kpis.items() if v is not None})
        values.update({f"{PREFIX}champion_kpi.{k}": v for k, v in self.champion_kpis.items() if v is not None})
        values.update({f"{PREFIX}kpi_drop.{k}": v for k, v in self.drops.items()})
        return values

    def summary(self) -> str:
        parts = [f"version {self.version} in {self.mode}: {self.requests} request(s)"]
        if self.agreement is not None:
            parts.append(f"agreement {self.agreement:.1%}")
        parts += [f"{k} {self.champion_kpis.get(k) if self.champion_kpis.get(k) is None else round(self.champion_kpis[k], 4)}"
                  f" -> {round(v, 4)}" for k, v in self.kpis.items() if v is not None]
        return "; ".join(parts) + (f"; CRITICAL: {'; '.join(self.critical)}" if self.critical else "")


def assess_challenger(config: ModelConfig, live: pd.DataFrame, challenger: pd.DataFrame) -> ChallengerHour | None:
    """The hour's comparison (see the module), or None when the challenger logged no row.

    ``live``: the rows that answered callers (the champion's; labels joined where arrived);
    ``challenger``: the rows with role ``shadow`` or ``canary`` (labels joined likewise). One version
    and one mode are expected; with several (a new challenger mid-hour) the one with most rows counts.
    """
    if challenger.empty:
        return None
    labels = [c.name for c in (config.dataset.target, config.dataset.outcome) if c is not None]
    live = live.assign(**{c: np.nan for c in labels if c not in live.columns})  # labels not joined: none arrived
    challenger = challenger.assign(**{c: np.nan for c in labels if c not in challenger.columns})
    version = str(challenger["model_version"].astype(str).mode().iloc[0])
    rows = challenger[challenger["model_version"].astype(str) == version]
    mode = str(rows[ROLE].mode().iloc[0])
    rows = rows[rows[ROLE] == mode].drop_duplicates("request_id", keep="last")
    kpis = config.monitoring.kpis
    threshold = config.monitoring.decision_threshold
    if mode == SHADOW:
        paired = live.drop_duplicates("request_id", keep="last").merge(
            rows[["request_id", PREDICTION]].rename(columns={PREDICTION: _CHALLENGER_SCORE}), on="request_id")
        both = valid_predictions(paired[PREDICTION]) & valid_predictions(paired[_CHALLENGER_SCORE])
        agree = (paired[PREDICTION] >= threshold) == (paired[_CHALLENGER_SCORE] >= threshold)
        agreement = float(agree[both].mean()) if both.any() else None
        champion_values = compute_kpis(config, kpis, paired)
        challenger_values = compute_kpis(config, kpis, paired.assign(**{PREDICTION: paired[_CHALLENGER_SCORE]}))
        return ChallengerHour(version, mode, int(both.sum()), agreement,
                              {k: v.value for k, v in challenger_values.items()},
                              {k: v.value for k, v in champion_values.items()})
    champion_values = compute_kpis(config, kpis, live)
    challenger_values = compute_kpis(config, kpis, rows)
    hour = ChallengerHour(version, mode, len(rows), None,
                          {k: v.value for k, v in challenger_values.items()},
                          {k: v.value for k, v in champion_values.items()})
    limits = {k.name: k.max_drop for k in kpis}
    hour.critical = [f"{k} {hour.champion_kpis[k]:.4f} on the champion's requests, {hour.kpis[k]:.4f} on the canary's "
                     f"(drop {d:.4f} > {limits[k]})" for k, d in hour.drops.items() if d > limits[k]]
    invalid = 1.0 - float(valid_predictions(rows[PREDICTION]).mean())
    ceiling = config.monitoring.invalid_predictions_critical
    if ceiling is not None and invalid >= ceiling:
        hour.critical.append(f"{invalid:.1%} of the canary's predictions are invalid (critical at {ceiling:.0%})")
    return hour


def log_challenger_hour(client: MlflowClient, run_id: str, hour: pd.Timestamp, result: ChallengerHour) -> None:
    """``result``'s metrics on the monitoring run at ``hour``'s step, stamped now: re-assessing the hour (or a
    new challenger in the same hour) is the latest write of the step, which :func:`evidence` reads."""
    import time

    ts, step = int(time.time() * 1000), hour_step(pd.Timestamp(hour))
    client.log_batch(run_id, metrics=[Metric(k, float(v), ts, step) for k, v in result.metrics().items()
                                      if np.isfinite(v)])


@dataclass(frozen=True)
class Evidence:
    """What monitoring has seen of ``version`` as the challenger: summed over its assessed hours.

    ``agreement``: weighted by each hour's requests (None without shadow hours); ``kpi_drops``: per KPI the
    request-weighted mean of champion minus challenger over the hours with both values.
    """

    version: str
    hours: int
    requests: int
    agreement: float | None
    kpi_drops: dict[str, float]
    critical_hours: int

    def as_dict(self) -> dict:
        return {"version": self.version, "hours": self.hours, "requests": self.requests, "agreement": self.agreement,
                "kpi_drops": self.kpi_drops, "critical_hours": self.critical_hours}


def evidence(client: MlflowClient, run_id: str | None, version: str) -> Evidence:
    """The challenger evidence of ``version`` on the monitoring run ``run_id`` (nothing when None)."""
    if run_id is None:
        return Evidence(str(version), 0, 0, None, {}, 0)

    def history(key: str) -> dict[int, float]:
        return _history(client, run_id, key)

    steps = sorted(s for s, v in history(f"{PREFIX}version").items() if str(int(v)) == str(version))
    requests = history(f"{PREFIX}requests")
    weights = {s: requests.get(s, 0.0) for s in steps}
    agreement_points = history(f"{PREFIX}agreement")
    shadow_steps = [s for s in steps if s in agreement_points and weights[s] > 0]
    agreement = (sum(agreement_points[s] * weights[s] for s in shadow_steps) / sum(weights[s] for s in shadow_steps)
                 if shadow_steps else None)
    drops: dict[str, float] = {}
    run = client.get_run(run_id)
    for key in run.data.metrics:
        if key.startswith(f"{PREFIX}kpi_drop."):
            points = history(key)
            used = [s for s in steps if s in points and weights[s] > 0]
            if used:
                drops[key.removeprefix(f"{PREFIX}kpi_drop.")] = (
                    sum(points[s] * weights[s] for s in used) / sum(weights[s] for s in used))
    critical = history(f"{PREFIX}critical")
    return Evidence(str(version), len(steps), int(sum(weights.values())), agreement, drops,
                    sum(1 for s in steps if critical.get(s) == 1.0))
