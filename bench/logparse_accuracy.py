"""Grouping accuracy of opsloop's log template miner on Loghub-2k, as LogPAI defines it.

A line is parsed correctly when the set of lines in its predicted group equals the set of
lines in its true group (the lines with its true ``EventTemplate``); the accuracy of a
system is the share of its 2,000 lines parsed correctly.

The miner reads the *raw* lines, headers and all (one configuration, no log format per
system), in file order, as a stream; a line's group is the template it was filed under
at the end of the stream. For reference the script also scores the ``Content`` column
(the message with the header cut off by LogPAI's per-system log format), which is what
published Loghub results use.

    python bench/logparse_accuracy.py --data ../shared/data/loghub2k [--show-errors N]
"""

from __future__ import annotations

import argparse
import collections
import csv
import statistics
import sys
import time
from pathlib import Path

from opsloop.aiops.logs import MinerConfig, TemplateMiner


def load(folder: Path) -> tuple[list[str], list[str], list[str]]:
    """Raw lines, true templates and contents of one Loghub-2k system folder."""
    name = folder.name
    raw = (folder / f"{name}_2k.log").read_bytes().decode("utf-8", "replace").splitlines()
    with open(folder / f"{name}_2k.log_structured.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    if len(raw) != len(rows):
        sys.exit(f"{name}: {len(raw)} raw lines but {len(rows)} structured rows")
    return raw, [r["EventTemplate"] for r in rows], [r["Content"] for r in rows]


def grouping_accuracy(pred: list[int], true: list[str]) -> float:
    """LogPAI's grouping accuracy: lines whose predicted group is exactly their true group."""
    pred_groups: dict[int, set[int]] = collections.defaultdict(set)
    true_groups: dict[str, set[int]] = collections.defaultdict(set)
    for i, (p, t) in enumerate(zip(pred, true, strict=True)):
        pred_groups[p].add(i)
        true_groups[t].add(i)
    ok = sum(len(g) for g in true_groups.values() if pred_groups[pred[min(g)]] == g)
    return ok / len(true)


def mine(lines: list[str], config: MinerConfig) -> tuple[list[int], TemplateMiner]:
    miner = TemplateMiner(config)
    ids = [t.id for t in miner.add_many(lines)]
    return [miner.resolve(i) for i in ids], miner


def show_errors(pred: list[int], true: list[str], miner: TemplateMiner, n: int) -> None:
    pred_groups: dict[int, set[int]] = collections.defaultdict(set)
    true_groups: dict[str, set[int]] = collections.defaultdict(set)
    for i, (p, t) in enumerate(zip(pred, true, strict=True)):
        pred_groups[p].add(i)
        true_groups[t].add(i)
    bad = sorted(
        ((len(g), t, g) for t, g in true_groups.items() if pred_groups[pred[min(g)]] != g),
        key=lambda x: -x[0],
    )
    for size, t, g in bad[:n]:
        ps = collections.Counter(pred[i] for i in g)
        print(f"    [{size}] true {t[:110]!r}: in {len(ps)} predicted group(s)")
        for p, _ in ps.most_common(2):
            tpl = miner.get(p)
            holds = collections.Counter(true[i] for i in pred_groups[p])
            print(f"        {tpl.template[:110] if tpl else p!r}")
            print(f"            holds {[(k[:50], v) for k, v in holds.most_common(3)]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", required=True, help="folder of Loghub-2k system folders")
    ap.add_argument("--similarity", type=float, default=MinerConfig().similarity)
    ap.add_argument("--header-share", type=float, default=MinerConfig().header_share)
    ap.add_argument("--variable-after", type=int, default=MinerConfig().variable_after)
    ap.add_argument("--show-errors", type=int, default=0, metavar="N")
    ap.add_argument("--systems", default="", help="comma-separated subset")
    args = ap.parse_args()
    config = MinerConfig(
        similarity=args.similarity,
        header_share=args.header_share,
        variable_after=args.variable_after,
    )
    folders = sorted(p for p in Path(args.data).iterdir() if p.is_dir())
    if args.systems:
        folders = [p for p in folders if p.name in args.systems.split(",")]
    raw_scores: list[float] = []
    content_scores: list[float] = []
    print(f"{'system':<12} {'raw lines':>9} {'content':>9} {'templates':>9} {'true':>5}")
    t0 = time.perf_counter()
    for folder in folders:
        raw, true, content = load(folder)
        pred, miner = mine(raw, config)
        acc = grouping_accuracy(pred, true)
        pred_c, _ = mine(content, config)
        acc_c = grouping_accuracy(pred_c, true)
        raw_scores.append(acc)
        content_scores.append(acc_c)
        print(f"{folder.name:<12} {acc:>9.4f} {acc_c:>9.4f} {len(miner):>9} {len(set(true)):>5}")
        if args.show_errors:
            show_errors(pred, true, miner, args.show_errors)
    print(f"({time.perf_counter() - t0:.2f} s)")
    # The same lines as one stream into one miner, the systems interleaved line by line
    # (one configuration *and* one store for every source).
    streams = [load(folder) for folder in folders]
    mixed: list[str] = []
    mixed_true: list[str] = []
    for i in range(max(len(raw) for raw, _, _ in streams)):
        for folder, (raw, true, _) in zip(folders, streams, strict=True):
            if i < len(raw):
                mixed.append(raw[i])
                mixed_true.append(f"{folder.name}\t{true[i]}")
    pred, miner = mine(mixed, config)
    by_system: dict[str, tuple[list[int], list[str]]] = {}
    for p, t in zip(pred, mixed_true, strict=True):
        ps, ts = by_system.setdefault(t.split("\t", 1)[0], ([], []))
        ps.append(p)
        ts.append(t)
    one_store = [grouping_accuracy(ps, ts) for ps, ts in by_system.values()]
    print(
        "one miner for all, interleaved: "
        + " ".join(f"{k} {v:.4f}" for k, v in zip(by_system, one_store, strict=True))
        + f" mean {statistics.fmean(one_store):.4f}"
    )
    print(
        f"{'mean':<12} {statistics.fmean(raw_scores):>9.4f} {statistics.fmean(content_scores):>9.4f}"
    )
    print(f"mean grouping accuracy on raw lines: {statistics.fmean(raw_scores):.4f}")


if __name__ == "__main__":
    main()
