"""How often the point chosen on calibration keeps the bound on the held-out test split.

Reads finished workflow results (``front_validated.parquet``, ``uniform.parquet`` and
``baseline.json`` of every network under each given results folder) and, for each
``select.confidence`` level, repeats the report's choice (calibration only) and prints
the chosen CR, its calibration and test loss, and whether the test accuracy keeps the
bound; then, per level, how many choices kept it. The oracle column (highest CR whose
*test* accuracy keeps the bound) is selected on test: shown for comparison only.

    python benchmarks/selection.py results_benchmark results_benchmark_seed1 ...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pyarrow.parquet as pq

from weight_sharing.bound import allowed_loss
from weight_sharing.report import choices

LEVELS = (0.5, 0.75, 0.9, 0.95)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="+", help="results folders of finished runs")
    ap.add_argument("--bound", type=float, default=0.99)
    args = ap.parse_args()
    kept = {c: [0, 0] for c in LEVELS}
    print("| run | network | confidence | CR chosen on calibration | calib AL [pp] | test AL [pp] | test keeps bound "
          "| uniform CR | oracle CR (selected on test) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for results in args.results:
        for net_dir in sorted(p.parent for p in Path(results).glob("*/front_validated.parquet")):
            baseline = json.loads((net_dir / "baseline.json").read_text())
            v = pq.read_table(net_dir / "front_validated.parquet").to_pylist()
            u = pq.read_table(net_dir / "uniform.parquet").to_pylist()
            allowed = allowed_loss(baseline["test_accuracy"], args.bound)
            for c in LEVELS:
                pick = choices(v, u, baseline, args.bound, c)
                best, uni, oracle = pick["best"], pick["uniform"], pick["oracle"]
                if best is None:
                    row = "— | — | — | —"
                else:
                    ok = v[best]["test_al"] <= allowed + 1e-12
                    kept[c][0] += ok
                    kept[c][1] += 1
                    row = (f"{v[best]['cr']:.2f} | {100 * v[best]['calib_al']:.2f} | {100 * v[best]['test_al']:.2f} "
                           f"| {'yes' if ok else 'no'}")
                ucr = f"{u[uni]['cr']:.2f}" if uni is not None else "—"
                ocr = f"{v[oracle]['cr']:.2f}" if oracle is not None else "—"
                print(f"| {Path(results).name} | {net_dir.name} | {c} | {row} | {ucr} | {ocr} |")
    print()
    for c, (ok, n) in kept.items():
        print(f"confidence {c}: the chosen point kept the bound on test in {ok} of {n} choices")


if __name__ == "__main__":
    main()
