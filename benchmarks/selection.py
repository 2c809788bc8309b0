"""How often the point chosen without the test split keeps the bound on the held-out test split.

Reads finished workflow results (``front_validated.parquet``, ``uniform.parquet`` and
``baseline.json`` of every network under each given results folder) and, for each
selection rule (``select.split``: the labelled calibration images, and the unlabelled
selection images where the run measured them; ``select.interval`` and ``select.family``,
the rules given by ``--rules``) and ``select.confidence`` level, repeats the report's
choice and prints the chosen CR, its calibration and test loss, and whether the test
accuracy keeps the bound; then, per rule and level, how many choices kept it, their
mean CR and the mean CR against the first rule's on the same runs. The oracle column
(highest CR whose *test* accuracy keeps the bound) is selected on test: shown for
comparison only.

    python benchmarks/selection.py results_benchmark results_benchmark_seed1 ...
    python benchmarks/selection.py runs/* --levels 0.9 --per-run   # every choice, a row each
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from finished_runs import validated_networks  # benchmarks/, next to this script

from weight_sharing.bound import SelectRule, allowed_loss
from weight_sharing.report import choices

LEVELS = (0.5, 0.75, 0.9, 0.95)
RULES = ("normal/none", "exact/none", "normal/ascending", "exact/ascending", "exact/ascending:1", "exact/bonferroni")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="+", help="results folders of finished runs")
    ap.add_argument("--bound", type=float, default=0.99)
    ap.add_argument("--levels", type=float, nargs="+", default=list(LEVELS))
    ap.add_argument("--rules", nargs="+", default=list(RULES), help="interval/family pairs (select.interval, "
                    "select.family; family:n, ascending with n failures allowed: select.failures); the first is the "
                    "reference of the CR ratio")
    ap.add_argument("--per-run", action="store_true", help="print every choice")
    args = ap.parse_args()
    for text in args.rules:  # a bad rule stops before any table is read
        SelectRule.from_text(text, 0.9)
    kept: dict[tuple, list] = {}
    per_net: dict[tuple, list] = {}
    if args.per_run:
        print("| run | network | selection | interval / family | confidence | CR chosen | calib AL [pp] "
              "| changed on selection images [%] | test AL [pp] | test keeps bound | uniform CR "
              "| oracle CR (selected on test) |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for results, net_dir, baseline, table in validated_networks(args.results):
        v = table.to_pylist()
        u = pq.read_table(net_dir / "uniform.parquet").to_pylist()
        allowed = allowed_loss(baseline["test_accuracy"], args.bound)
        measured = all(r.get("select_changed") is not None for r in v + u)
        for selection in ("calib", "unlabelled") if measured else ("calib",):
            for c in args.levels:
                reference = None
                for text in args.rules:
                    rule = SelectRule.from_text(text, c, selection)
                    pick = choices(v, u, baseline, args.bound, rule)
                    best, uni, oracle = pick["best"], pick["uniform"], pick["oracle"]
                    cr = v[best]["cr"] if best is not None else 0.0
                    reference = cr if reference is None else reference
                    name = (selection, rule.name, c)
                    tallies = (kept.setdefault(name, [0, 0, [], []]),
                               per_net.setdefault((net_dir.name, *name), [0, 0, [], []]))
                    ok = best is not None and v[best]["test_al"] <= allowed + 1e-12
                    for tally in tallies:
                        tally[0] += ok
                        tally[1] += 1
                        tally[2].append((cr, v[best]["test_al"] if best is not None else None))
                        tally[3].append(cr / reference if reference else np.nan)
                    if not args.per_run:
                        continue
                    if best is None:
                        row = "none | — | — | — | —"
                    else:
                        changed = v[best].get("select_changed")
                        row = (f"{v[best]['cr']:.2f} | {100 * v[best]['calib_al']:.2f} | "
                               f"{'—' if changed is None else f'{100 * changed:.2f}'} | "
                               f"{100 * v[best]['test_al']:.2f} | {'yes' if ok else '**no**'}")
                    ucr = f"{u[uni]['cr']:.2f}" if uni is not None else "—"
                    ocr = f"{v[oracle]['cr']:.2f}" if oracle is not None else "—"
                    print(f"| {Path(results).name} | {net_dir.name} | {selection} | {rule.name} | {c} "
                          f"| {row} | {ucr} | {ocr} |")
    print()
    print(f"| selection | interval / family | confidence | choices | kept the bound on test | none chosen "
          f"| mean CR (none: 0) | mean CR against {args.rules[0]} | worst test AL [pp] |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (selection, name, c), (ok, n, picks, ratios) in kept.items():
        crs = [cr for cr, _ in picks]
        worst = max((al for _, al in picks if al is not None), default=None)
        print(f"| {selection} | {name.replace('/', ' / ')} | {c} | {n} | {ok} ({100 * ok / n:.0f}%) "
              f"| {sum(al is None for _, al in picks)} | {np.mean(crs):.2f} | {np.nanmean(ratios):.3f} "
              f"| {'—' if worst is None else f'{100 * worst:.2f}'} |")


if __name__ == "__main__":
    main()
