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
    return GateReport(tuple(results))
