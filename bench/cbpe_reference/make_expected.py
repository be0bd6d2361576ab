"""NannyML's own CBPE estimates on the synthetic cases, written as the expected values of the parity test.

The project re-implements NannyML's Confidence-based Performance Estimation
(:mod:`include.monitoring.performance_estimation`) because ``nannyml`` does not resolve with the
project's lock. This script runs the real thing, in a throw-away virtualenv, on the deterministic
cases of ``tests/include/monitoring/cbpe_cases.py`` and writes what it estimated to
``tests/include/monitoring/data/cbpe_expected.json`` (small; committed), which
``tests/include/monitoring/test_performance_estimation.py`` compares with the project's estimates.

1. Run with the project's python (``.venv/bin/python``): it makes ``--venv`` (default
   ``/tmp/nannyml-venv``) with ``uv`` if missing and installs ``nannyml==0.13.1`` plus the project's
   locked numpy, pandas, scipy, scikit-learn, pyarrow and statsmodels (so both sides compute with the
   same numerical libraries), then runs itself again inside it with ``--inside``.
2. Inside: per case, ``nannyml.CBPE(metrics=[roc_auc, precision, recall, accuracy],
   problem_type="classification_binary", chunk_period="h")`` is fitted on the case's 8 reference hours
   (``y_pred`` = ``score >= threshold``) and estimates every hour (reference and analysis). Recorded per
   hour and metric: the estimate, its sampling error, the confidence band, the alert thresholds, the
   alert and the realised value; per case, whether NannyML calibrated and the rows' fingerprint.
   NannyML's usage telemetry is switched off (``NML_DISABLE_USAGE_LOGGING``).

    .venv/bin/python bench/cbpe_reference/make_expected.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "tests" / "include" / "monitoring" / "data" / "cbpe_expected.json"
NANNYML = "nannyml==0.13.1"
SAME_AS_LOCK = ("numpy", "pandas", "scipy", "scikit-learn", "pyarrow", "statsmodels")
METRICS = ["roc_auc", "precision", "recall", "accuracy"]


def _locked(names: tuple[str, ...]) -> list[str]:
    """``name==version`` of ``names`` as pinned in requirements.txt."""
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if "==" in line and not line.startswith((" ", "#")):
            name, version = line.split("==", 1)
            pins[name.strip().lower()] = version.strip()
    missing = [n for n in names if n not in pins]
    if missing:
        raise SystemExit(f"requirements.txt pins none of {missing}")
    return [f"{n}=={pins[n]}" for n in names]


def build_venv(venv: Path) -> Path:
    """``venv`` with NannyML and the project's numerical pins (made with uv when missing); its python."""
    python = venv / "bin" / "python"
    uv = ROOT / ".venv" / "bin" / "uv"
    if not python.exists():
        subprocess.run([str(uv), "venv", str(venv), "--python", "3.11", "-q"], check=True)
    subprocess.run([str(uv), "pip", "install", "-q", "--python", str(python), NANNYML, *_locked(SAME_AS_LOCK)],
                   check=True)
    return python


def _number(value) -> float | None:
    import math

    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def run_nannyml(output: Path) -> None:
    """Inside the throw-away venv: NannyML's CBPE on every case, written to ``output``."""
    os.environ["NML_DISABLE_USAGE_LOGGING"] = "1"
    import nannyml
    import numpy as np
    import pandas as pd

    sys.path.insert(0, str(ROOT))
    from tests.include.monitoring.cbpe_cases import CASES, fingerprint, generate

    cases = {}
    for case in CASES:
        data = generate(case)
        frame = pd.DataFrame({"ts": pd.to_datetime(data["ts"]), "score": data["score"], "label": data["label"],
                              "decision": (data["score"] >= case.threshold).astype(int), "hour": data["hour"]})
        reference, analysis = frame[data["reference"]], frame[~data["reference"]]
        estimator = nannyml.CBPE(metrics=METRICS, y_pred_proba="score", y_pred="decision", y_true="label",
                                 problem_type="classification_binary", timestamp_column_name="ts", chunk_period="h")
        estimator.fit(reference)
        result = estimator.estimate(analysis).to_df()  # the reference hours, then the analysis hours
        hours = []
        for i, row in result.iterrows():
            record = {"hour": int(i), "period": row[("chunk", "period")], "key": str(row[("chunk", "key")]),
                      "rows": int(row[("chunk", "end_index")] - row[("chunk", "start_index")] + 1)}
            for metric in METRICS:
                record[metric] = {
                    "value": _number(row[(metric, "value")]),
                    "sampling_error": _number(row[(metric, "sampling_error")]),
                    "lower": _number(row[(metric, "lower_confidence_boundary")]),
                    "upper": _number(row[(metric, "upper_confidence_boundary")]),
                    "lower_threshold": _number(row[(metric, "lower_threshold")]),
                    "upper_threshold": _number(row[(metric, "upper_threshold")]),
                    "alert": bool(row[(metric, "alert")]),
                    "realised": _number(row[(metric, "realized")]),
                }
            hours.append(record)
        assert [h["rows"] for h in hours] == np.bincount(data["hour"]).tolist(), "one chunk per hour expected"
        cases[case.name] = {"fingerprint": fingerprint(data), "threshold": case.threshold,
                            "needs_calibration": bool(estimator.needs_calibration), "hours": hours}
        print(f"{case.name}: calibrated={estimator.needs_calibration}, {len(hours)} hours")
    output.parent.mkdir(parents=True, exist_ok=True)
    versions = {name: __import__(module).__version__ for name, module in
                (("nannyml", "nannyml"), ("numpy", "numpy"), ("pandas", "pandas"), ("scikit-learn", "sklearn"))}
    document = {
        "about": "NannyML's CBPE on tests/include/monitoring/cbpe_cases.py; made by bench/cbpe_reference/make_expected.py",
        "versions": versions,
        "metrics": METRICS,
        "cases": cases,
    }
    output.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
    print(f"wrote {output} ({output.stat().st_size} bytes)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=Path("/tmp/nannyml-venv"))
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--inside", action="store_true", help="(internal) run NannyML; the venv is made already")
    args = parser.parse_args()
    if args.inside:
        run_nannyml(args.output)
        return
    python = build_venv(args.venv)
    subprocess.run([str(python), __file__, "--inside", "--output", str(args.output)], check=True,
                   env={**os.environ, "NML_DISABLE_USAGE_LOGGING": "1", "PYTHONPATH": str(ROOT)})


if __name__ == "__main__":
    main()
