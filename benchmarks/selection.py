"""How often the point chosen without the test split keeps the bound on the held-out test split.

Reads finished workflow results (``front_validated.parquet``, ``uniform.parquet`` and
``baseline.json`` of every network under each given results folder) and, for each
selection rule (``select.split``: the labelled calibration images, and the unlabelled
selection images where the run measured them) and ``select.confidence`` level, repeats
the report's choice and prints the chosen CR, its calibration and test loss, and
whether the test accuracy keeps the bound; then, per rule and level, how many choices
kept it and their mean CR. The oracle column (highest CR whose *test* accuracy keeps
the bound) is selected on test: shown for comparison only.

    python benchmarks/selection.py results_benchmark results_benchmark_seed1 ...
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from finished_runs import validated_networks  # benchmarks/, next to this script

from weight_sharing.bound import allowed_loss
from weight_sharing.report import choices

LEVELS = (0.5, 0.75, 0.9, 0.95)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="+", help="results folders of finished runs")
    ap.add_argument("--bound", type=float, default=0.99)
    ap.add_argument("--levels", type=float, nargs="+", default=list(LEVELS))
    args = ap.parse_args()
    kept: dict[tuple, list] = {}
    per_net: dict[tuple, list] = {}
    print("| run | network | selection | confidence | CR chosen | calib AL [pp] | changed on selection images [%] "
          "| test AL [pp] | test keeps bound | uniform CR | oracle CR (selected on test) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for results, net_dir, baseline, table in validated_networks(args.results):
        v = table.to_pylist()
        u = pq.read_table(net_dir / "uniform.parquet").to_pylist()
        allowed = allowed_loss(baseline["test_accuracy"], args.bound)
        measured = all(r.get("select_changed") is not None for r in v + u)
        for selection in ("calib", "unlabelled") if measured else ("calib",):
            for c in args.levels:
                pick = choices(v, u, baseline, args.bound, c, selection)
                best, uni, oracle = pick["best"], pick["uniform"], pick["oracle"]
                tallies = (kept.setdefault((selection, c), [0, 0, []]),
                           per_net.setdefault((net_dir.name, selection, c), [0, 0, []]))
                if best is None:
                    row = "none | — | — | — | —"
                else:
                    ok = v[best]["test_al"] <= allowed + 1e-12
                    for tally in tallies:
                        tally[0] += ok
                        tally[1] += 1
                        tally[2].append((v[best]["cr"], v[best]["test_al"]))
                    changed = v[best].get("select_changed")
                    row = (f"{v[best]['cr']:.2f} | {100 * v[best]['calib_al']:.2f} | "
                           f"{'—' if changed is None else f'{100 * changed:.2f}'} | {100 * v[best]['test_al']:.2f} "
                           f"| {'yes' if ok else 'no'}")
                ucr = f"{u[uni]['cr']:.2f}" if uni is not None else "—"
                ocr = f"{v[oracle]['cr']:.2f}" if oracle is not None else "—"
                print(f"| {Path(results).name} | {net_dir.name} | {selection} | {c} | {row} | {ucr} | {ocr} |")
    print()
    print("| network | selection | confidence | choices | kept the bound on test | CR chosen (each run) | mean CR "
          "| test AL [pp] (each run) |")
    print("|---|---|---|---|---|---|---|---|")
    for (net, selection, c), (ok, n, picks) in sorted(per_net.items()):
        crs = " / ".join(f"{cr:.2f}" for cr, _ in picks) or "—"
        als = " / ".join(f"{100 * al:.2f}" for _, al in picks) or "—"
        mean = f"{np.mean([cr for cr, _ in picks]):.2f}" if picks else "—"
        print(f"| {net} | {selection} | {c} | {n} | {ok} | {crs} | {mean} | {als} |")
    print()
    for (selection, c), (ok, n, picks) in kept.items():
        mean = f", mean CR {np.mean([cr for cr, _ in picks]):.2f}" if picks else ""
        print(f"{selection}, confidence {c}: the chosen point kept the bound on test in {ok} of {n} choices{mean}")


if __name__ == "__main__":
    main()
