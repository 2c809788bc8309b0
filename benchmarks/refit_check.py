"""How often the sweep kept the refit centroid values (``correct.centroids``) and what the check saved.

Reads the sweep files of finished runs made with ``correct.centroids: true`` (their rows carry
``refit``, ``kmeans_kl`` and ``refit_kl``) and prints, per run and network: the codebooks swept,
how many kept the refit values, the median ratio of the stored KL to the k-means values' KL,
and the codebooks where the refit values would have raised the network's calibration KL by
more than 1.5x (the check kept the k-means values there), with the worst one.

    python benchmarks/refit_check.py results_a results_b ...
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

COLUMNS = ["layer", "k", "kl", "refit", "kmeans_kl", "refit_kl"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="+", help="results folders of finished runs")
    ap.add_argument("--worse", type=float, default=1.5, help="ratio refit / k-means KL counted as a harmful refit")
    args = ap.parse_args()
    print(f"| run | network | codebooks | refit kept | median KL stored / k-means | refit KL > {args.worse}x k-means "
          "(worst) |")
    print("|---|---|---|---|---|---|")
    for results in args.results:
        for sweep_dir in sorted(Path(results).glob("*/sweep")):
            files = [f for f in sorted(sweep_dir.glob("*.parquet")) if "refit_kl" in pq.read_schema(f).names]
            rows = [r for f in files for r in pq.read_table(f, columns=COLUMNS).to_pylist()
                    if r["refit_kl"] is not None]
            if not rows:
                continue  # a run without correct.centroids, or from before the check
            ratio = np.array([r["kl"] / r["kmeans_kl"] for r in rows if r["kmeans_kl"] > 0])
            worse = [r for r in rows if r["kmeans_kl"] > 0 and r["refit_kl"] > args.worse * r["kmeans_kl"]]
            worst = "0"
            if worse:
                w = max(worse, key=lambda r: r["refit_kl"] / r["kmeans_kl"])
                worst = f"{len(worse)} ({w['layer']} K={w['k']}: {w['refit_kl'] / w['kmeans_kl']:.1f}x)"
            print(f"| {Path(results).name} | {sweep_dir.parent.name} | {len(rows)} | {sum(r['refit'] for r in rows)} "
                  f"| {np.median(ratio):.3f} | {worst} |")


if __name__ == "__main__":
    main()
