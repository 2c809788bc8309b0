"""Clustering at ImageNet scale: time of the whole K grid of a large layer, and distance to the exact optimum.

    python benchmarks/kmeans.py [--weights 2360000] [--ref-weights 400000] [--channels 512]

1. Time: every K of the paper's grid (100 log-spaced values 2..1024) for a layer of
   ``--weights`` weights (default 2.36M, GoogLeNet/ResNet-sized), one CPU core (numba),
   three runs (the first includes numba's cached compile check), and whether the
   codebooks are identical run to run.
2. Accuracy: on a layer of ``--ref-weights`` weights (more distinct values than the
   2^16 bins, so the histogram DP is used), inertia against the exact solver kmeans1d
   (O(K n) memory: 16 K n bytes) for K in 2..1024.
3. Grouped codebooks: the same layer as ``--channels`` output channels with one codebook per channel
   (``sharing: {granularity: grouped_channel, group: 1}``): which K of the grid the sweep clusters
   per channel (``sharing.grouped_ks``) and the time of the per-tensor and per-channel codebooks
   together (``sweep.layer_codebooks``), on the paper's grid and on the default one.
"""
import argparse
import time

import numpy as np

from weight_sharing.grid import k_grid, resolve_grid
from weight_sharing.kmeans import kmeans_grid
from weight_sharing.sharing import grouped_ks
from weight_sharing.sweep import layer_codebooks


def layer(n, seed):
    rng = np.random.default_rng(seed)
    # trained conv weights are heavy-tailed around 0: a Laplace body with a few outliers
    w = rng.laplace(0, 0.02, n)
    w[rng.choice(n, n // 1000, replace=False)] *= 8
    return w.astype(np.float32)


def grouped(w, channels):
    w = w[:len(w) // channels * channels].reshape(channels, -1)
    print(f"\none codebook per channel: {channels} channels of {w.shape[1]:,} weights")
    print("| grid | K clustered per tensor | K clustered per channel | per tensor only [s] | with per channel [s] |")
    print("|---|---|---|---|---|")
    for name, grid in (("log, 2..1024 (the paper's)", resolve_grid({"grid": "log", "k_min": 2, "k_max": 1024,
                                                                      "k_count": 100})),
                       ("pow2, 2..1024 (default)", resolve_grid({"grid": "pow2", "k_min": 2, "k_max": 1024}))):
        t = time.perf_counter()
        layer_codebooks(w, grid, 1 << 16)
        alone = time.perf_counter() - t
        t = time.perf_counter()
        books = layer_codebooks(w, grid, 1 << 16, "grouped_channel", 1)
        both = time.perf_counter() - t
        ks = grouped_ks(grid, w.size, channels)
        assert sorted(k for g, k in books if g == channels) == ks
        print(f"| {name} | {len(grid)} | {len(ks)} ({ks[0]}..{ks[-1]}) | {alone:.2f} | {both:.2f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=int, default=2_360_000)
    ap.add_argument("--ref-weights", type=int, default=400_000)
    ap.add_argument("--ref-k", type=int, nargs="*", default=[2, 8, 32, 128, 512, 1024])
    ap.add_argument("--channels", type=int, default=512, help="output channels of the layer for part 3")
    ap.add_argument("--skip-exact", action="store_true", help="skip part 2 (the exact reference, minutes)")
    args = ap.parse_args()
    grid = k_grid(2, 1024, 100)

    w = layer(args.weights, 0)
    times, books = [], []
    for _ in range(3):
        t = time.perf_counter()
        books.append(kmeans_grid(w, grid))
        times.append(time.perf_counter() - t)
    same = all(np.array_equal(books[0][k].centroids, b[k].centroids)
               and np.array_equal(books[0][k].thresholds, b[k].thresholds) for b in books[1:] for k in grid)
    print(f"grid of {len(grid)} K (2..1024) on {args.weights:,} weights: "
          f"{', '.join(f'{t:.2f}' for t in times)} s (runs 1-3); identical run to run: {same}")

    grouped(layer(args.weights, 0), args.channels)
    if args.skip_exact:
        return
    import kmeans1d
    w = layer(args.ref_weights, 1)
    ours = kmeans_grid(w, args.ref_k)
    wd = w.astype(np.float64)
    print(f"\naccuracy on {args.ref_weights:,} weights ({len(np.unique(w)):,} distinct, histogram of 2^16 bins)")
    print("| K | ours (inertia) | exact kmeans1d | excess | exact time [s] |")
    print("|---|---|---|---|---|")
    worst = 0.0
    for k in args.ref_k:
        t = time.perf_counter()
        labels, cent = kmeans1d.cluster(wd, k)
        dt = time.perf_counter() - t
        ref = float(((wd - np.asarray(cent)[labels]) ** 2).sum())
        excess = ours[k].inertia / ref - 1
        worst = max(worst, excess)
        print(f"| {k} | {ours[k].inertia:.6e} | {ref:.6e} | {100 * excess:+.4f}% | {dt:.1f} |")
    print(f"\nworst excess over the optimum: {100 * worst:.4f}%")


if __name__ == "__main__":
    main()
