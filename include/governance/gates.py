"""Promotion gates: pure decisions over a candidate's metrics and tags, and the champion's metrics."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

from include.config import ModelConfig

COMPLIANCE_PREFIX = "compliance."


@dataclass(frozen=True)
class GateResult:
    gate: str
    passed: bool
    value: float | str | None
    threshold: float | str | None
    detail: str


@dataclass(frozen=True)
class GateReport:
    results: tuple[GateResult, ...]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failed(self) -> list[GateResult]:
        return [r for r in self.results if not r.passed]

    def summary(self) -> str:
        head = "all gates passed" if self.passed else f"{len(self.failed)} gate(s) failed"
        return head + "".join(f"\n- {'PASS' if r.passed else 'FAIL'} {r.gate}: {r.detail}" for r in self.results)

    def as_dicts(self) -> list[dict]:
        return [asdict(r) for r in self.results]


def evaluate_gates(
    config: ModelConfig,
    *,
    candidate_metrics: Mapping[str, float],
    candidate_tags: Mapping[str, str],
    champion_metrics: Mapping[str, float] | None,
    validation: Mapping[str, object] | None,
) -> GateReport:
    """Minimum metric, regression vs champion, required compliance tags, validated data; every gate is reported.

    ``validation``: the audit ledger's ``validated`` record for the candidate's training data
    fingerprint (:func:`include.governance.history.passed_validation`, as a dict), or None when the
    ledger holds none: then the ``validation`` gate fails, whatever the tags say.

    With ``config.evidence``, also the ``slices``, ``fairness`` and ``baseline`` gates it configures
    (:func:`_evidence_gates`), read from the same run metrics :mod:`include.evaluation` logged.
    """
    gates = config.gates
    metric = gates.primary_metric
    sign = 1 if gates.higher_is_better else -1
    value = candidate_metrics.get(metric)
    results: list[GateResult] = []

    if value is None:
        results.append(GateResult("min_metric", False, None, gates.minimum, f"metric {metric!r} was not logged"))
    else:
        ok = sign * (value - gates.minimum) >= 0
        cmp = ">=" if gates.higher_is_better else "<="
        results.append(GateResult("min_metric", ok, value, gates.minimum, f"{metric}={value:.4f}, required {cmp} {gates.minimum}"))

    champion_value = (champion_metrics or {}).get(metric)
    if champion_metrics is None:
        results.append(GateResult("no_regression", True, value, None, "no champion yet"))
    elif value is None or champion_value is None:
        results.append(GateResult("no_regression", False, value, champion_value, f"{metric} missing on candidate or champion"))
    else:
        drop = sign * (champion_value - value)
        ok = drop <= gates.max_regression + 1e-12
        results.append(
            GateResult(
                "no_regression", ok, value, champion_value,
                f"{metric}={value:.4f} vs champion {champion_value:.4f} (drop {drop:+.4f}, allowed {gates.max_regression})",
            )
        )

    missing = [t for t in config.compliance.required if not candidate_tags.get(f"{COMPLIANCE_PREFIX}{t}")]
    results.append(
        GateResult(
            "compliance", not missing, ",".join(sorted(set(config.compliance.required) - set(missing))) or None,
            ",".join(config.compliance.required) or None,
            f"missing required tags: {', '.join(missing)}" if missing else "required tags present",
        )
    )
    fingerprint = candidate_tags.get("data_fingerprint")
    if validation is None:
        results.append(GateResult("validation", False, fingerprint, "validated",
                                  f"no passed validation on record in the audit ledger for data {fingerprint or '(no data_fingerprint tag)'}"))
    else:
        results.append(GateResult("validation", True, fingerprint, "validated",
                                  f"data validated at {validation.get('at')} (ledger record #{validation.get('seq')})"))
    results.extend(_evidence_gates(config, candidate_metrics, champion_metrics))
    return GateReport(tuple(results))


# --- evidence gates (config.evidence; include.evaluation logs what they read) ----------------------------------
# Each reads the runs' metrics only; each is absent from the report when its evidence sub-section (or its
# threshold) is not configured, so a config without ``evidence`` gets exactly the gates above.


def _evidence_gates(
    config: ModelConfig, candidate_metrics: Mapping[str, float], champion_metrics: Mapping[str, float] | None
) -> list[GateResult]:
    """The ``slices``, ``fairness`` and ``baseline`` gates that ``config.evidence`` configures, in that order."""
    results = [
        _slices_gate(config, candidate_metrics, champion_metrics),
        _fairness_gate(config, candidate_metrics),
        _baseline_gate(config, candidate_metrics),
    ]
    return [r for r in results if r is not None]


def _slices_gate(
    config: ModelConfig, candidate_metrics: Mapping[str, float], champion_metrics: Mapping[str, float] | None
) -> GateResult | None:
    """``slices``: on no slice with >= ``min_rows`` holdout rows on both sides is the candidate's primary metric
    worse than the champion's by more than ``tolerance``; slices only one side logged are not compared."""
    from include.evaluation import slices

    evidence = config.evidence
    settings = evidence.slices if evidence is not None else None
    if settings is None or settings.tolerance is None:
        return None
    gates = config.gates
    result = slices.compare(candidate_metrics, champion_metrics or {}, settings.columns, gates.primary_metric,
                            higher_is_better=gates.higher_is_better, min_rows=settings.min_rows)
    if result["missing_columns"]:
        return GateResult("slices", False, None, settings.tolerance,
                          f"no slice metrics logged for: {', '.join(result['missing_columns'])} (evaluated without evidence?)")
    if champion_metrics is None:
        return GateResult("slices", True, None, settings.tolerance, "no champion yet")
    compared = result["compared"]
    if not compared:
        return GateResult("slices", True, None, settings.tolerance,
                          f"no slice to compare: the champion logged none with >= {settings.min_rows} rows on both sides")
    worst = max(compared, key=lambda c: c[4])
    failing = [c for c in compared if c[4] > settings.tolerance + 1e-12]
    metric = gates.primary_metric
    if failing:
        named = ", ".join(f"{c}={v} {metric} {mine:.4f} vs {theirs:.4f} (drop {drop:+.4f})"
                          for c, v, mine, theirs, drop in sorted(failing, key=lambda c: -c[4]))
        detail = f"worse than the champion by more than {settings.tolerance} on: {named}"
    else:
        column, value, mine, theirs, drop = worst
        detail = (f"{len(compared)} slices compared ({result['skipped']} too small or unmeasured), worst "
                  f"{column}={value}: {metric} {mine:.4f} vs champion {theirs:.4f} (drop {drop:+.4f}, allowed {settings.tolerance})")
    return GateResult("slices", not failing, round(worst[4], 6), settings.tolerance, detail)


def _fairness_gate(config: ModelConfig, candidate_metrics: Mapping[str, float]) -> GateResult | None:
    """``fairness``: each sensitive column's demographic parity / equalized odds difference within its maximum."""
    from include.evaluation import fairness

    evidence = config.evidence
    settings = evidence.fairness if evidence is not None else None
    if settings is None:
        return None
    limits = {name: limit for name, limit in ((fairness.DEMOGRAPHIC_PARITY, settings.max_demographic_parity_difference),
                                              (fairness.EQUALIZED_ODDS, settings.max_equalized_odds_difference))
              if limit is not None}
    if not limits:
        return None
    problems = []
    for column in settings.sensitive_features:
        for name, limit in limits.items():
            value = candidate_metrics.get(fairness.metric_key(column, name))
            if value is None:
                groups = candidate_metrics.get(fairness.metric_key(column, fairness.GROUPS))
                why = ("not logged (evaluated without evidence?)" if groups is None else
                       f"not measurable: {int(groups)} group(s) with >= {settings.min_group_rows} rows and both classes")
                problems.append(f"{column} {name} {why}")
            elif value > limit + 1e-12:
                problems.append(f"{column} {name}={value:.4f} > {limit}")
    threshold = ", ".join(f"{name} <= {limit}" for name, limit in limits.items())
    if problems:
        return GateResult("fairness", False, "; ".join(problems), threshold, "; ".join(problems))
    shown = ", ".join(f"{column} {name}={candidate_metrics[fairness.metric_key(column, name)]:.4f}"
                      for column in settings.sensitive_features for name in limits)
    return GateResult("fairness", True, shown, threshold, f"within limits: {shown}")


def _baseline_gate(config: ModelConfig, candidate_metrics: Mapping[str, float]) -> GateResult | None:
    """``baseline``: the candidate's primary metric beats the simpler baseline's by at least ``margin``."""
    from include.evaluation import baseline

    evidence = config.evidence
    settings = evidence.baseline if evidence is not None else None
    if settings is None or settings.margin is None:
        return None
    metric = config.gates.primary_metric
    value, reference = candidate_metrics.get(metric), candidate_metrics.get(baseline.metric_key(metric))
    if value is None or reference is None:
        missing = metric if value is None else baseline.metric_key(metric)
        return GateResult("baseline", False, value, reference, f"{missing} was not logged (evaluated without evidence?)")
    gain = (value - reference) * (1 if config.gates.higher_is_better else -1)
    ok = gain >= settings.margin - 1e-12
    name = settings.estimator.rpartition(".")[2]
    return GateResult("baseline", ok, value, reference,
                      f"{metric}={value:.4f} vs {name} {reference:.4f} (gain {gain:+.4f}, required >= {settings.margin:+})")


# --- the shadow gate: live evidence of the challenger (include.monitoring.challenger) ----------------


def shadow_evidence_ready(config: ModelConfig, evidence: Mapping[str, object]) -> bool:
    """Whether ``evidence`` (:meth:`include.monitoring.challenger.Evidence.as_dict`) is enough to judge.

    Enough hours and requests (``gates.shadow.min_hours``, ``min_requests``) and a value for every KPI the
    gate has a tolerance for; a critical canary hour is enough too (it can only fail).
    """
    gate = config.gates.shadow
    if gate is None:
        return True
    if int(evidence.get("critical_hours") or 0) > 0:
        return True
    drops = evidence.get("kpi_drops") or {}
    return (int(evidence.get("hours") or 0) >= gate.min_hours and int(evidence.get("requests") or 0) >= gate.min_requests
            and all(k in drops for k in gate.max_kpi_drop))


def shadow_gate(config: ModelConfig, evidence: Mapping[str, object] | None, *, champion: str | None) -> GateResult:
    """The ``shadow`` gate over the challenger's live evidence (None: monitoring has seen none).

    Passes without a champion (nothing to compare with, as ``no_regression``). Fails with too few hours
    or requests, agreement below ``min_agreement`` (shadow), a KPI worse than the champion's by more than
    its tolerance or without a value, or a critical canary hour. The value is the evidence's summary.
    """
    gate = config.gates.shadow
    if gate is None:
        return GateResult("shadow", True, None, None, "not configured")
    if champion is None:
        return GateResult("shadow", True, None, None, "no champion yet: nothing to compare on live traffic")
    evidence = dict(evidence or {})
    hours, requests = int(evidence.get("hours") or 0), int(evidence.get("requests") or 0)
    agreement, drops = evidence.get("agreement"), dict(evidence.get("kpi_drops") or {})
    need = f"{gate.min_hours} hour(s), {gate.min_requests} request(s)"
    summary = f"{hours} hour(s), {requests} request(s)" + (f", agreement {agreement:.1%}" if agreement is not None else "")
    summary += "".join(f", {k} {'worse' if v > 0 else 'better'} by {abs(v):.4f}" for k, v in sorted(drops.items()))
    problems = []
    if hours < gate.min_hours or requests < gate.min_requests:
        problems.append(f"not enough live evidence (need {need})")
    if agreement is not None and agreement < gate.min_agreement:
        problems.append(f"agreement {agreement:.1%} < {gate.min_agreement:.1%}")
    for kpi, tolerance in sorted(gate.max_kpi_drop.items()):
        if kpi not in drops:
            problems.append(f"no live value of {kpi} yet")
        elif drops[kpi] > tolerance + 1e-12:
            problems.append(f"{kpi} worse than the champion's by {drops[kpi]:.4f} (tolerance {tolerance})")
    if int(evidence.get("critical_hours") or 0):
        problems.append(f"{evidence['critical_hours']} critical canary hour(s)")
    detail = f"vs champion {champion} on live traffic: {summary}" + (f"; FAILED: {'; '.join(problems)}" if problems else "")
    return GateResult("shadow", not problems, summary, need, detail)
