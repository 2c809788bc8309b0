"""One layer shared alone: one codebook for the tensor against one per group of output channels,
with k-means values and with values refit to the layer's output (``correct.centroids``).

For each finished run (a results folder of ``configs/benchmark.yaml``) and network, the layer is
shared at K with each codebook granularity and each set of values, everything else left as
trained, and the network measured on the calibration and the test images: loss against the
baseline [pp] and KL to the baseline. Test losses are measured here, not used to choose.

    python benchmarks/per_channel.py results_a results_b --network lenet5_mnist --layer fc1 --k 2
"""

from __future__ import annotations

import argparse

from finished_runs import baseline_of, finished_networks  # benchmarks/, next to this script

from weight_sharing.correct import gather_statistics, refit_centroids
from weight_sharing.data import load_split
from weight_sharing.evaluate import Evaluator
from weight_sharing.kmeans import kmeans_grid
from weight_sharing.models import build_model
from weight_sharing.sharing import group_count, grouped_codebooks


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="+", help="results folders of finished runs")
    ap.add_argument("--network", default="lenet5_mnist")
    ap.add_argument("--layer", default="fc1")
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--groups", type=int, nargs="+", default=[0, 16, 4, 1],
                    help="output channels per codebook (0: one codebook for the tensor)")
    args = ap.parse_args()
    print("| run | channels per codebook | codebooks | values | calib AL [pp] | calib KL | test AL [pp] | test KL |")
    print("|---|---|---|---|---|---|---|---|")
    for results in args.results:
        for run in finished_networks(results, 1, [args.network]):
            baseline = baseline_of(run.folder)
            model = build_model(run.model_cfg)
            evaluators = {s: Evaluator(model, load_split(run.npz, s), layers=[args.layer]) for s in ("calib", "test")}
            moment = gather_statistics(evaluators["calib"], second_moment=True)[args.layer]["second"]
            weight = evaluators["calib"].originals[args.layer]
            w = weight.numpy()
            for group in args.groups:
                cb = (kmeans_grid(w.ravel(), [args.k]) if group == 0
                      else grouped_codebooks(w, [args.k], group, 1 << 16))[args.k]
                for values, book in (("k-means", cb), ("refit", refit_centroids(weight, cb, moment))):
                    m = {}
                    for split, ev in evaluators.items():
                        with ev.applied({args.layer: book}):
                            m[split] = ev.measure()
                    print(f"| {results} | {group or 'all (tensor)'} | {group_count(w.shape[0], group) if group else 1} "
                          f"| {values} | {100 * (baseline['calib_accuracy'] - m['calib'].accuracy):.2f} "
                          f"| {m['calib'].kl:.4f} | {100 * (baseline['test_accuracy'] - m['test'].accuracy):.2f} "
                          f"| {m['test'].kl:.4f} |")


if __name__ == "__main__":
    main()
