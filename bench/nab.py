"""Score opsloop's default streaming detector on NAB series, the way NAB scores.

    python bench/nab.py --data ../shared/data/nab

Runs a fresh ``default_detector()`` (or one with ``--set NAME=VALUE`` settings, to see
how sensitive the score is to each) over every series listed in the folder's
``combined_windows.json`` (in file order, no look-ahead), scores the three NAB profiles
with ``opsloop.aiops.evaluation`` (threshold chosen per profile over all series together,
normalised by the null detector on the same series), and prints them beside the stored
results of NAB's best detectors on the same 35 series. Then times the detector, one core:

- streaming: ``Detector.update(ts, value)`` called from Python once per point;
- batch: ``Detector.score_series`` (the same compiled step in a loop, same scores).

The data is read from the folder given; nothing is copied into the project.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from opsloop.aiops.detect import PARAMS, Detector, to_seconds
from opsloop.aiops.evaluation import LabelledSeries, nab_score, nab_scores

# NAB's stored results of these detectors, scored by NAB's scorer on the same 35 series
# (issue 7).
REFERENCE = {"ARTime": 67.9, "HTM": 66.6, "CAD OSE": 62.2}
GOAL = 70.0


def load(data: Path) -> list[tuple[str, np.ndarray, np.ndarray, list[tuple[float, float]]]]:
    windows = json.loads((data / "combined_windows.json").read_text())
    out = []
    for name, wins in sorted(windows.items()):
        frame = pd.read_csv(data / name)
        ts = to_seconds(pd.to_datetime(frame["timestamp"]).to_numpy())
        spans = [(float(to_seconds([a])[0]), float(to_seconds([b])[0])) for a, b in wins]
        out.append((name, ts, frame["value"].to_numpy(dtype=np.float64), spans))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="folder with NAB series")
    ap.add_argument("--per-series", action="store_true", help="print each series' result")
    ap.add_argument("--repeat", type=int, default=3, help="timing runs (best is kept)")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help=f"a detector setting other than the default (repeatable): {', '.join(PARAMS)}",
    )
    args = ap.parse_args()
    settings = {}
    for item in args.set:
        name, _, value = item.partition("=")
        settings[name] = float(value)

    def detector() -> Detector:
        return Detector(**settings)

    series = load(args.data)
    n_points = sum(len(x) for _, _, x, _ in series)
    labelled = [
        LabelledSeries(name, ts, detector().score_series(ts, xs), wins)
        for name, ts, xs, wins in series
    ]
    results = nab_scores(labelled)
    changed = ", ".join(f"{k}={v:g}" for k, v in settings.items()) or "default settings"
    print(
        f"NAB on {len(series)} series, {n_points} points, "
        f"{results['standard'].windows} windows ({changed})"
    )
    print(f"{'profile':<20} {'opsloop':>8} {'threshold':>10} {'detected':>9} {'FP rows':>8}")
    for profile, r in results.items():
        print(
            f"{profile:<20} {r.score:>8.1f} {r.threshold:>10.4f} "
            f"{r.windows_detected:>4}/{r.windows:<4} {r.fp:>8}"
        )
    refs = ", ".join(f"{k} {v}" for k, v in REFERENCE.items())
    print(f"reference (standard, NAB's scorer on these series): {refs}")
    std = results["standard"].score
    met = std >= GOAL and std > max(REFERENCE.values())
    print(
        f"goal: standard >= {GOAL:g} and above every reference: {std:.1f} "
        f"({'met' if met else 'not met'})"
    )
    if args.per_series:
        th = results["standard"].threshold
        for s in labelled:
            r = nab_score([s], threshold=th)
            print(
                f"  {s.name:<60} raw {r.raw:+6.2f} windows {r.windows_detected}/{r.windows} FP {r.fp}"
            )

    # Throughput, one core. Warm the compiled code first (numba's cache or a compile).
    det = detector()
    det.update(0.0, 0.0)
    det.score_series(np.zeros(2), np.zeros(2))
    best_stream = best_batch = float("inf")
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        for _, ts, xs, _ in series:
            det = detector()
            update = det.update
            for t, x in zip(ts.tolist(), xs.tolist(), strict=True):
                update(t, x)
        best_stream = min(best_stream, time.perf_counter() - t0)
        t0 = time.perf_counter()
        for _, ts, xs, _ in series:
            detector().score_series(ts, xs)
        best_batch = min(best_batch, time.perf_counter() - t0)
    print(
        f"throughput, one core, best of {args.repeat}: "
        f"streaming path (update() per point from Python) {n_points / best_stream:,.0f} points/s; "
        f"batch path (score_series) {n_points / best_batch:,.0f} points/s"
    )


if __name__ == "__main__":
    main()
