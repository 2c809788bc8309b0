"""Could the sweep's refit check skip its second network measurement? A cheap measure against the KL it decides on.

Each sweep row with ``correct.centroids`` measures the network twice, with the k-means values and with
the values refit to the layer's output, and keeps the lower KL. The cheap measure here needs no network
pass: the relative drop of the layer's own output error on the calibration statistics
(``correct.output_error``), 1 - error(refit) / error(k-means), computed offline from the row's
thresholds (k-means values: each cluster's mean; refit: ``correct.refit_centroids``, on the second moment, as
with ``correct.bias`` off, the default). Rows are binned by
that drop; per bin: how many, how often the refit values won on the network's KL, and the median and
worst ratio KL(refit) / KL(k-means). If the network's KL barely moves where the drop is small, a rule
"keep the k-means values below drop x, measure above" saves the second measurement in those rows.

    python benchmarks/refit_agreement.py RESULTS NET [--config CONFIG]

With ``--config`` (the run's config file) the rows are also split by whether the layer's output goes
straight into a BatchNorm (``models.batchnorm_fed_layers``), which ``correct.bn`` re-estimates after
sharing.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

BINS = [0.0, 0.01, 0.05, 0.2, 0.5, 1.0]


def kmeans_values(weight: np.ndarray, row: dict):
    """The row's codebook with k-means values: each cluster's mean (the row's thresholds kept)."""
    from dataclasses import replace

    from weight_sharing.sharing import assign_weight
    from weight_sharing.tables import codebook_from_row

    cb = codebook_from_row(row)
    idx = assign_weight(weight, cb)
    w2, i2 = weight.reshape(weight.shape[0], -1), idx.reshape(weight.shape[0], -1)
    cent = np.array(cb.centroids, dtype=np.float32, copy=True)
    rows = np.zeros(weight.shape[0], dtype=np.int64) if cb.group == 0 else np.arange(weight.shape[0]) // cb.group
    for g in range(cb.groups):
        sel_w, sel_i = w2[rows == g].ravel().astype(np.float64), i2[rows == g].ravel()
        sums = np.bincount(sel_i, weights=sel_w, minlength=cb.size)
        counts = np.bincount(sel_i, minlength=cb.size)
        target = cent if cb.group == 0 else cent[g]
        target[counts > 0] = (sums[counts > 0] / counts[counts > 0]).astype(np.float32)
    return replace(cb, centroids=cent)


def batchnorm_fed(results: str, net: str, config: str) -> set[str]:
    """The network's shared layers whose output goes straight into a BatchNorm."""
    from finished_runs import finished_run  # benchmarks/, next to this script

    from weight_sharing.data import check_npz
    from weight_sharing.models import batchnorm_fed_layers, build_model

    run = finished_run(results, net, config)
    shape = tuple(check_npz(run.spec.data)["image_shape"])  # from the headers, no image loaded
    return set(batchnorm_fed_layers(build_model(run.spec.model), shape))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results")
    ap.add_argument("net")
    ap.add_argument("--config", help="the run's config file: split the rows by BatchNorm-fed layers")
    args = ap.parse_args()

    import torch

    from weight_sharing.correct import output_error, read_statistics, refit_centroids
    from weight_sharing.sharing import shared_weight
    from weight_sharing.tables import read_sweeps

    torch.set_num_threads(1)
    net_dir = Path(args.results) / args.net
    sweeps = read_sweeps(sorted(str(p) for p in (net_dir / "sweep").glob("*.parquet")))
    stats = str(net_dir / "calibration.safetensors")
    checkpoint = torch.load(net_dir / "demo" / "checkpoint.pt", map_location="cpu", weights_only=True)
    fed = batchnorm_fed(args.results, args.net, args.config) if args.config else None
    drops, ratios, won, into_bn = [], [], [], []
    for layer, rows in sweeps.items():
        if any(r["refit_kl"] is None for r in rows):  # not refit (correct.centroids off or unnormalized)
            continue
        weight = checkpoint[f"{layer}.weight"].numpy()
        moment = read_statistics(stats, [layer], "second")[layer]
        for r in rows:
            km = kmeans_values(weight, r)
            refit = refit_centroids(weight, km, moment)
            errors = [output_error(weight, shared_weight(torch.from_numpy(weight), cb)[1].numpy(), moment)
                      for cb in (km, refit)]
            drops.append(1 - errors[1] / errors[0] if errors[0] > 0 else 0.0)
            ratios.append(r["refit_kl"] / r["kmeans_kl"] if r["kmeans_kl"] > 0 else 1.0)
            won.append(r["refit_kl"] < r["kmeans_kl"])
            into_bn.append(fed is not None and layer in fed)
    if not drops:
        raise SystemExit(f"{args.net}: the run's sweep has no refit measurement (correct.centroids off)")
    drops, ratios, won, into_bn = np.array(drops), np.array(ratios), np.array(won), np.array(into_bn)
    print(f"{args.net}: {len(drops)} sweep rows; drop = 1 - output error(refit) / output error(k-means) of the layer")
    print("| output-error drop | rows | refit won on network KL | median KL refit / k-means "
          "| lowest (best refit) | highest (worst refit) |")
    print("|---|---|---|---|---|---|")
    for lo, hi in zip(BINS, BINS[1:]):
        sel = (drops >= lo) & (drops < hi) if hi < 1 else (drops >= lo)
        if not sel.any():
            print(f"| {lo:.2f}-{hi:.2f} | 0 | | | | |")
            continue
        print(f"| {lo:.2f}-{hi:.2f} | {sel.sum()} | {won[sel].sum()} ({100 * won[sel].mean():.0f}%) "
              f"| {np.median(ratios[sel]):.4f} | {ratios[sel].min():.4f} | {ratios[sel].max():.4f} |")
    groups = [("all", np.ones(len(drops), dtype=bool))]
    if fed is not None:
        groups += [("layers feeding a BatchNorm", into_bn), ("other layers", ~into_bn)]
    for label, sel in groups:
        if sel.any():
            print(f"| {label} | {sel.sum()} | {won[sel].sum()} ({100 * won[sel].mean():.0f}%) "
                  f"| {np.median(ratios[sel]):.4f} | {ratios[sel].min():.4f} | {ratios[sel].max():.4f} |")


if __name__ == "__main__":
    main()
