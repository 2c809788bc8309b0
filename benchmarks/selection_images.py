"""Whether a network's training images can stand in for unlabelled selection images.

For each network of a finished run whose demo data hold ``x_select`` (digits held out of
training, ``demo.n_select``), measures the fraction of predictions that the validated
front points change from the baseline's on three sets of images: the training images
(seen in training), the held-out selection images, and the calibration images, with
the run's corrections (refit codebook values from its candidates; BatchNorm
re-estimated on the calibration images). Changed predictions bound the accuracy loss
from above only if the images are like the deployment data; a network is more certain
on its own training images, so they would understate the changes.

    python benchmarks/selection_images.py results_heldout --max-points 8
"""

from __future__ import annotations

import argparse

import numpy as np
from finished_runs import finished_networks  # benchmarks/, next to this script

from weight_sharing.data import Split, load_split
from weight_sharing.evaluate import Evaluator, measure_all
from weight_sharing.models import build_model


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", help="results folder of a finished run of configs/benchmark.yaml with demo.n_select")
    ap.add_argument("--max-points", type=int, default=8)
    args = ap.parse_args()
    print("| network | points | mean changed on training images [%] | on held-out selection images [%] "
          "| on calibration images [%] | held-out / training |")
    print("|---|---|---|---|---|---|")
    for run in finished_networks(args.results, args.max_points):
        net, npz, cands, validated = run.name, run.npz, run.candidates, run.validated
        with np.load(npz) as z:
            if "x_select" not in z.files:
                print(f"| {net} | no x_select in {npz} | | | | |")
                continue
            x_train = z["x_train"]
        calib = load_split(npz, "calib")
        splits = {"train": Split(x=x_train, y=None, mean=calib.mean, std=calib.std),
                  "select": load_split(npz, "select"), "calib": calib}
        books = [cands.codebooks_of(v["choice"]) for v in validated]
        changed = {}
        for name, split in splits.items():
            ev = Evaluator(build_model(run.model_cfg), split, batch_size=500, layers=cands.layer_names,
                           corrections=["bn"], calibration=calib)
            changed[name] = float(np.mean([m.changed for m in measure_all(ev, books, f"{net} ({name})")]))
        ratio = changed["select"] / changed["train"] if changed["train"] else float("inf")
        print(f"| {net} | {len(validated)} | {100 * changed['train']:.2f} | {100 * changed['select']:.2f} "
              f"| {100 * changed['calib']:.2f} | {ratio:.1f}x |")


if __name__ == "__main__":
    main()
