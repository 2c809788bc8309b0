"""Does the calibration measurement flatter the points it chooses from? Calibration against test, per run.

Every choice is made on the calibration images, so a systematic difference between a point's loss
measured there and on the held-out test images moves every choice: a calibration loss that reads low
(for instance BatchNorm statistics re-estimated on the very images they are measured on "fixing" some
of them) lets points through that lose more on test. For each network of each finished results folder
this prints, over its validated front points, the mean broken and fixed images and the mean accuracy
loss on both splits (as % of the split) and the mean of test AL - calib AL; the baseline's own
difference between the splits is shown for context. Nothing is chosen here.

``--crossfit``: for the networks with BatchNorm of runs made with ``correct.bn``, each validated point
is measured again on the calibration images twice: as the workflow does (statistics re-estimated on
all of them, then measured on them) and cross-fitted (each interleaved half measured with statistics
re-estimated on the other half), to see whether fitting the statistics to the images measured is what
flatters the calibration loss. Printed: the mean calibration loss each way, its mean absolute
difference from the test loss, and the point each way would choose at ``--confidence`` (with its test
loss; the test loss is measured by the workflow with the statistics of all calibration images).

    python benchmarks/calibration_gap.py results_a results_b ...
    python benchmarks/calibration_gap.py results_a --crossfit
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from finished_runs import (  # benchmarks/, next to this script
    baseline_of,
    default_rule,
    finished_networks,
    validated_networks,
)

from weight_sharing.bound import choose
from weight_sharing.data import Split, load_split
from weight_sharing.evaluate import Evaluator
from weight_sharing.models import build_model

COLUMNS = ["cr", "calib_broken", "calib_fixed", "calib_al", "test_broken", "test_fixed", "test_al"]


def half(split: Split, rows: np.ndarray) -> Split:
    return Split(x=np.asarray(split.x)[rows], y=np.asarray(split.y)[rows], mean=split.mean, std=split.std)


def crossfit(results: list[str], bound: float, confidence: float) -> None:
    print("| run | network | points | mean calib AL, in-sample / cross-fitted [pp] | mean test AL [pp] "
          "| mean abs(test - calib AL), in-sample / cross-fitted [pp] | chosen in-sample: CR (calib / test AL pp) "
          "| chosen cross-fitted: CR (calib / test AL pp) |")
    print("|---|---|---|---|---|---|---|---|")
    for folder in results:
        for run in finished_networks(folder, 10 ** 6):
            b = baseline_of(run.folder)
            calib = load_split(run.npz, "calib")
            model = build_model(run.model_cfg)
            if not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()):
                continue
            names = run.candidates.layer_names
            folds = [np.arange(f, len(calib), 2) for f in (0, 1)]
            parts = [half(calib, r) for r in folds]
            ways = {"in-sample": [Evaluator(model, calib, batch_size=500, layers=names, corrections=["bn"],
                                                  calibration=calib)],
                    "cross-fitted": [Evaluator(model, parts[f], batch_size=500, layers=names,
                                               corrections=["bn"], calibration=parts[1 - f]) for f in (0, 1)]}
            cr = np.array([v["cr"] for v in run.validated])
            test = 100 * np.array([v["test_al"] for v in run.validated])
            cells = {}
            for way, evaluators in ways.items():
                broken, fixed, right = (np.zeros(len(cr)) for _ in range(3))
                for i, v in enumerate(run.validated):
                    for ev in evaluators:
                        with ev.applied(run.candidates.codebooks_of(v["choice"])):
                            m = ev.measure()
                        broken[i] += m.broken
                        fixed[i] += m.fixed
                        right[i] += m.accuracy * m.n
                al = 100 * (b["calib_accuracy"] - right / len(calib))
                pick = choose([{"cr": c, "calib_broken": n_b, "calib_fixed": n_f}
                               for c, n_b, n_f in zip(cr, broken, fixed)], b, bound,
                              default_rule(confidence=confidence))
                chosen = "none" if pick is None else (
                    f"{cr[pick]:.2f} ({al[pick]:.2f} / {test[pick]:.2f})"
                    + ("" if run.validated[pick]["test_within_bound"] else ", breaks the bound on test"))
                cells[way] = (al.mean(), np.abs(test - al).mean(), chosen)
            ins, cf = cells["in-sample"], cells["cross-fitted"]
            print(f"| {folder} | {run.name} | {len(cr)} | {ins[0]:.2f} / {cf[0]:.2f} | {test.mean():.2f} "
                  f"| {ins[1]:.2f} / {cf[1]:.2f} | {ins[2]} | {cf[2]} |", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="+", help="results folders of finished runs")
    ap.add_argument("--min-cr", type=float, default=0.0, help="only front points above this CR")
    ap.add_argument("--crossfit", action="store_true",
                    help="measure BatchNorm networks again, in-sample and cross-fitted")
    ap.add_argument("--bound", type=float, default=0.99)
    ap.add_argument("--confidence", type=float, default=0.9)
    args = ap.parse_args()
    if args.crossfit:
        crossfit(args.results, args.bound, args.confidence)
        return
    print("| run | network | points | baseline calib / test top-1 [%] | broken calib / test [%] "
          "| fixed calib / test [%] | AL calib / test [pp] | mean test - calib AL [pp] |")
    print("|---|---|---|---|---|---|---|---|")
    for results, net_dir, b, table in validated_networks(args.results, COLUMNS):
        t = table.to_pydict()
        keep = np.asarray(t["cr"]) > args.min_cr
        if not keep.any():
            continue
        mean = {c: 100 * np.asarray(t[c], dtype=np.float64)[keep].mean() for c in COLUMNS[1:]}
        pct = {c: mean[c] / b[f"{c.split('_')[0]}_images"] for c in COLUMNS if c.endswith(("broken", "fixed"))}
        cal_al, test_al = (100 * np.asarray(t[c], dtype=np.float64)[keep] for c in ("calib_al", "test_al"))
        print(f"| {results} | {net_dir.name} | {int(keep.sum())} "
              f"| {100 * b['calib_accuracy']:.1f} / {100 * b['test_accuracy']:.1f} "
              f"| {pct['calib_broken']:.2f} / {pct['test_broken']:.2f} "
              f"| {pct['calib_fixed']:.2f} / {pct['test_fixed']:.2f} "
              f"| {cal_al.mean():.2f} / {test_al.mean():.2f} | {(test_al - cal_al).mean():+.2f} |")


if __name__ == "__main__":
    main()
