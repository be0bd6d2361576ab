"""Drift benchmark: the project's hourly drift check against Evidently's DataDriftPreset, same data, one run.

1. (not timed) generate a reference and a current frame of ``--rows`` rows x 20 numeric features
   each; 7 of the features (about a third) are shifted in the current frame, the others are drawn
   from the reference's distributions;
2. the project's check: :func:`include.monitoring.reference_profile.build_profile` on the reference (what
   training does, timed separately, with the profile's save/load time and size), then
   :func:`include.monitoring.drift.detect_drift` of the current frame against the prebuilt profile, timed
   ``--repeat`` times;
3. the Wasserstein distance of each feature that takes that test, side by side: the project's
   (:func:`include.monitoring.drift.wasserstein_distance`, a merge of the profile's sorted distinct
   values with the sorted current values) and ``scipy.stats.wasserstein_distance`` with the profile's
   counts as weights, on the same sorted values, timed alternately ``--repeat`` times; the two must
   agree to a relative 1e-9;
4. Evidently: ``Report([DataDriftPreset()])`` on the full reference and current frames
   (:func:`include.monitoring.drift.evidently_drift`), timed once.

Prints the times, the ratios and both sides' per-feature decisions, and writes them to
``bench/results/drift.md`` (one section per row count; a rerun replaces it). The CPU seconds used
by other processes during each timed part are recorded: on a shared machine they tell whether the
numbers can be trusted.

    PYTHONPATH=. .venv/bin/python bench/drift.py                  # 1,000,000 rows
    PYTHONPATH=. .venv/bin/python bench/drift.py --rows 100000    # quicker
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _common import machine_busy, write_results  # noqa: E402  (bench/ is the script's folder)

RESULTS = ROOT / "bench" / "results" / "drift.md"
N_FEATURES = 20


def _features(rng: np.random.Generator, n: int, shifted: bool) -> dict[str, np.ndarray]:
    """20 numeric features; with ``shifted`` the seven marked ``*`` move, the rest keep their distribution."""
    s = shifted
    few_p = [0.15, 0.2, 0.2, 0.2, 0.25] if s else [0.3, 0.25, 0.2, 0.15, 0.1]
    with_nulls = rng.normal(0, 1, n)
    with_nulls[rng.random(n) < 0.02] = np.nan
    return {
        "normal_shift*": rng.normal(0.25 if s else 0.0, 1, n),
        "normal": rng.normal(0, 1, n),
        "lognormal_scale*": np.exp(rng.normal(np.log(62_000) + (0.15 if s else 0.0), 0.5, n)).round(2),
        "lognormal": np.exp(rng.normal(np.log(62_000), 0.5, n)).round(2),
        "uniform_shift*": rng.uniform(0.05 if s else 0.0, 1.05 if s else 1.0, n),
        "uniform": rng.uniform(0, 1, n),
        "exponential_scale*": rng.exponential(1.3 if s else 1.0, n),
        "exponential": rng.exponential(1.0, n),
        "poisson": rng.poisson(10, n),
        "poisson_rate*": rng.poisson(11 if s else 10, n),
        "score": np.clip(np.rint(rng.normal(680, 70, n)), 300, 850),
        "score_shift*": np.clip(np.rint(rng.normal(660 if s else 680, 70, n)), 300, 850),
        "five_values": rng.choice(5, n, p=[0.3, 0.25, 0.2, 0.15, 0.1]),
        "five_values_mix*": rng.choice(5, n, p=few_p),
        "beta": rng.beta(2, 5, n),
        "gamma": rng.gamma(2.0, 3.5, n),
        "normal_2dp": rng.normal(50, 10, n).round(2),
        "student_t": rng.standard_t(3, n),
        "normal_nulls": with_nulls,
        "employment": np.round(rng.gamma(2.0, 3.5, n), 1),
    }


def generate(rows: int) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str]]:
    reference = pd.DataFrame(_features(np.random.default_rng(1), rows, shifted=False))
    current = pd.DataFrame(_features(np.random.default_rng(2), rows, shifted=True))
    types = {c: "int" if reference[c].dtype.kind == "i" else "float" for c in reference}
    assert len(types) == N_FEATURES
    return reference, current, types


class _Cpu:
    """CPU seconds of this process (all its threads) and of everything else on the machine (Linux)."""

    def __init__(self) -> None:
        self.own, self.machine = time.process_time(), machine_busy()

    def read(self) -> dict[str, float]:
        own = time.process_time() - self.own
        machine = machine_busy() - self.machine
        return {"cpu_own": own, "cpu_other": max(0.0, machine - own)} if self.machine else {"cpu_own": own}


def _timed(fn):
    cpu = _Cpu()
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started, cpu.read()


def wasserstein_side_by_side(profile, current: pd.DataFrame, features: list[str], repeat: int) -> list[dict]:
    """Per feature: the project's Wasserstein distance and scipy's (profile counts as weights) on the same
    sorted finite values, each timed ``repeat`` times, alternately (median seconds)."""
    from scipy.stats import wasserstein_distance

    from include.monitoring import drift

    rows = []
    for name in features:
        ref = profile.columns[name]
        values = current[name].to_numpy(dtype=np.float64)
        values = np.sort(values[np.isfinite(values)])
        ours_s, scipy_s = [], []
        for _ in range(repeat):
            started = time.perf_counter()
            ours = drift.wasserstein_distance(ref, values)
            middle = time.perf_counter()
            theirs = float(wasserstein_distance(ref.values, values, u_weights=ref.counts))
            scipy_s.append(time.perf_counter() - middle)
            ours_s.append(middle - started)
        rows.append({"feature": name, "distinct": int(ref.values.size), "ours": ours, "scipy": theirs,
                     "ours_s": statistics.median(ours_s), "scipy_s": statistics.median(scipy_s),
                     "rel_diff": abs(ours - theirs) / max(abs(theirs), 1e-300)})
    return rows


def run(args: argparse.Namespace) -> dict:
    from include.monitoring import drift, reference_profile

    reference, current, types = generate(args.rows)
    out: dict = {"load_before": os.getloadavg() if hasattr(os, "getloadavg") else None}

    profile, out["build_s"], out["build_cpu"] = _timed(lambda: reference_profile.build_profile(reference, types))
    scratch = Path(tempfile.mkdtemp(prefix="modelops-drift-bench-"))
    try:
        _, out["save_s"], _ = _timed(lambda: profile.save(scratch))
        out["profile_bytes"] = sum(f.stat().st_size for f in scratch.iterdir())
        profile, out["load_s"], _ = _timed(lambda: reference_profile.ReferenceProfile.load(scratch))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    checks = [_timed(lambda: drift.detect_drift(profile, current)) for _ in range(args.repeat)]
    ours = checks[0][0]
    out["ours_s"] = [seconds for _, seconds, _ in checks]
    out["ours_cpu"] = {k: sum(c[2].get(k, 0.0) for c in checks) for k in ("cpu_own", "cpu_other")}
    wasserstein = [n for n, f in ours.features.items() if f.stattest == drift.WASSERSTEIN]
    out["wasserstein"], out["wasserstein_s"], out["wasserstein_cpu"] = _timed(
        lambda: wasserstein_side_by_side(profile, current, wasserstein, args.repeat))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs, out["evidently_s"], out["evidently_cpu"] = _timed(
            lambda: drift.evidently_drift(reference, current, types)
        )
    out["ours"], out["theirs"] = ours, theirs
    return out


def _versions() -> str:
    from importlib.metadata import version

    return ", ".join(f"{p} {version(p)}" for p in ("evidently", "numpy", "scipy", "pandas"))


def _cpu_note(cpu: dict[str, float]) -> str:
    if "cpu_other" not in cpu:
        return f"{cpu['cpu_own']:.1f} own"
    return f"{cpu['cpu_own']:.1f} own / {cpu['cpu_other']:.1f} other processes"


def _markdown(args: argparse.Namespace, r: dict) -> str:
    ours, theirs = r["ours"], r["theirs"]
    ours_s = statistics.median(r["ours_s"])
    agree = [c for c in ours.features if ours.features[c].drifted == theirs.features[c].drifted]
    all_agree = len(agree) == len(ours.features) and ours.dataset_drift == theirs.dataset_drift
    busy = max(r["ours_cpu"].get("cpu_other", 0.0) / max(sum(r["ours_s"]), 1e-9),
               r["evidently_cpu"].get("cpu_other", 0.0) / max(r["evidently_s"], 1e-9))
    load = r["load_before"]
    lines = [
        f"## {args.rows:,} rows x {N_FEATURES} numeric features",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; {_versions()}."
        + (f" Load average before the run: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min)." if load else ""),
        f"Reference and current: {args.rows:,} rows each; 7 of the {N_FEATURES} features shifted in current "
        "(marked `*`).",
        "",
        "| step | seconds | CPU seconds |",
        "|---|---:|---:|",
        f"| Evidently `DataDriftPreset`, full data (`Report.run` and reading its results) | {r['evidently_s']:.1f} | {_cpu_note(r['evidently_cpu'])} |",
        f"| project check `detect_drift`, profile prebuilt (median of {len(r['ours_s'])}: "
        + ", ".join(f"{s:.2f}" for s in r["ours_s"])
        + f") | {ours_s:.2f} | {_cpu_note(r['ours_cpu'])} (all runs) |",
        f"| profile build at training time (`build_profile`) | {r['build_s']:.2f} | {_cpu_note(r['build_cpu'])} |",
        f"| profile save / load ({r['profile_bytes'] / 2**20:.0f} MiB on disk) | {r['save_s']:.2f} / {r['load_s']:.2f} | |",
        "",
        f"**Speed-up: {r['evidently_s'] / ours_s:.0f}x** (Evidently / project check, median); "
        f"{r['evidently_s'] / max(r['ours_s']):.0f}x against the slowest check run; "
        f"{r['evidently_s'] / (ours_s + r['build_s']):.0f}x even with the profile built in the same hour.",
        "",
        f"**Decisions: {'all ' + str(len(agree)) + ' features agree' if all_agree else 'DISAGREE'}** "
        f"(dataset drift: project {ours.dataset_drift}, Evidently {theirs.dataset_drift}; drifted share "
        f"{ours.share_drifted:.2f} / {theirs.share_drifted:.2f}).",
        "",
        "| feature | test (project / Evidently) | score, project | score, Evidently | drifted, project | drifted, Evidently |",
        "|---|---|---:|---:|---|---|",
    ]
    for name, mine in ours.features.items():
        ev = theirs.features[name]
        test = mine.stattest if mine.stattest == ev.stattest else f"{mine.stattest} / {ev.stattest}"
        lines.append(f"| `{name}` | {test} | {mine.score:.6g} | {ev.score:.6g} | {mine.drifted} | {ev.drifted} |")
    lines += [
        "",
        "Scores: Wasserstein distance normed by the reference's standard deviation (drift at >= 0.1), "
        "Jensen-Shannon distance (>= 0.1); with these sizes every numeric feature takes Evidently's large-sample tests.",
    ]
    if busy > 0.1:
        lines.append(f"The machine was busy: other processes used up to {busy:.0%} of a CPU per second during a timed "
                     "step; rerun on a quiet machine for clean numbers.")
    else:
        lines.append("Other processes used under 10% of a CPU per second during the timed steps (a quiet machine).")
    lines += ["", *_wasserstein_markdown(r["wasserstein"], args.repeat, ours_s)]
    lines += ["", f"Command: `python bench/drift.py --rows {args.rows} --repeat {args.repeat}`", ""]
    return "\n".join(lines)


def _wasserstein_totals(rows: list[dict]) -> tuple[float, float, float]:
    """Summed median seconds of the project's and scipy's distances, and the largest relative difference."""
    return (sum(r["ours_s"] for r in rows), sum(r["scipy_s"] for r in rows), max(r["rel_diff"] for r in rows))


def _wasserstein_markdown(rows: list[dict], repeat: int, check_s: float) -> list[str]:
    ours, theirs, worst = _wasserstein_totals(rows)
    lines = [
        "### Wasserstein distance: project vs `scipy.stats.wasserstein_distance`",
        "",
        f"The {len(rows)} features that take the Wasserstein test, each distance computed both ways on the same "
        f"sorted finite current values, scipy with the profile's distinct values and their counts as weights "
        f"(median of {repeat} alternating runs, one thread each).",
        "",
        "| feature | distinct reference values | project s | scipy s | scipy / project | relative difference |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| `{r['feature']}` | {r['distinct']:,} | {r['ours_s']:.3f} | {r['scipy_s']:.3f} | "
              f"{r['scipy_s'] / max(r['ours_s'], 1e-9):.1f}x | {r['rel_diff']:.1e} |" for r in rows]
    lines += [
        "",
        f"**Total: project {ours:.2f} s, scipy {theirs:.2f} s: scipy takes {theirs / max(ours, 1e-9):.1f}x as long** "
        f"(the whole project check took {check_s:.2f} s, its features in parallel threads); largest relative "
        f"difference {worst:.1e} (limit 1e-9). scipy argsorts both sides, mergesorts their concatenation and "
        "searches each side's positions again; the project merges two runs already sorted (the profile stores its "
        "values sorted, and the check sorts the current column once for its other tests too).",
    ]
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the reference and of the current frame")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of the project's check")
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/results alone")
    args = parser.parse_args(argv)

    r = run(args)
    ours, theirs = r["ours"], r["theirs"]
    for name, mine in ours.features.items():
        ev = theirs.features[name]
        flag = "" if mine.drifted == ev.drifted else "  <-- DISAGREE"
        print(f"{name:20s} {mine.stattest:13s} {mine.score:12.6g} {ev.score:12.6g} {mine.drifted!s:5s} {ev.drifted!s:5s}{flag}")
    ours_s = statistics.median(r["ours_s"])
    print(f"evidently {r['evidently_s']:.1f}s ({_cpu_note(r['evidently_cpu'])}); project check {ours_s:.2f}s median "
          f"({_cpu_note(r['ours_cpu'])}); ratio {r['evidently_s'] / ours_s:.0f}x; profile build {r['build_s']:.2f}s")
    for row in r["wasserstein"]:
        print(f"wasserstein {row['feature']:20s} project {row['ours_s']:.3f}s scipy {row['scipy_s']:.3f}s "
              f"ratio {row['scipy_s'] / max(row['ours_s'], 1e-9):.1f}x rel. diff {row['rel_diff']:.1e}")
    w_ours, w_scipy, worst = _wasserstein_totals(r["wasserstein"])
    print(f"wasserstein total: project {w_ours:.2f}s, scipy {w_scipy:.2f}s, scipy / project "
          f"{w_scipy / max(w_ours, 1e-9):.1f}x; largest relative difference {worst:.1e}")
    section = _markdown(args, r)
    if not args.no_write:
        write_results(RESULTS, "# Drift check benchmark: project vs Evidently", section)
        print(f"wrote {RESULTS.relative_to(ROOT)}")
    if any(ours.features[c].drifted != theirs.features[c].drifted for c in ours.features):
        raise SystemExit("the project's decisions differ from Evidently's")
    if worst > 1e-9:
        raise SystemExit(f"the project's Wasserstein distances differ from scipy's by up to {worst:.1e} (relative)")


if __name__ == "__main__":
    main()
