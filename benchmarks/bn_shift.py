"""BatchNorm statistics after sharing, re-estimated or shifted (``correct.bn: true`` / ``shift``), on the same
codebooks: the uniform references.

On a network of a run (its checkpoint, data and baseline; no later stage needed), every layer gets the optimal
k-means codebook at each K of the uniform grid, one per tensor and one per output channel (where that still
compresses), with no other correction; each point is measured on calibration and test with the BatchNorm
statistics re-estimated on the calibration images (``true``), shifted (``shift``) and trained (``false``). Per
point: the calibration images broken / fixed, and the test loss; per mode and granularity, the CR the default
rule chooses on calibration (ascending family, exact test at 0.9, 99% bound) and its test loss. Test losses are
measured, never used to choose.

    python benchmarks/bn_shift.py RESULTS NET CONFIG [--modes true shift false] [--k-max 256]

CONFIG: the config file the run used. Cost: (points) x (modes) x (calibration + test images) image-forwards.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results")
    ap.add_argument("net")
    ap.add_argument("config")
    ap.add_argument("--modes", nargs="+", default=["true", "shift", "false"])
    ap.add_argument("--k-max", type=int, default=256)
    args = ap.parse_args()

    import numpy as np
    import torch
    from finished_runs import default_rule, finished_run  # benchmarks/, next to this script

    from weight_sharing.bound import choose
    from weight_sharing.compression import compression_rates
    from weight_sharing.config import network_bound
    from weight_sharing.evaluate import IMAGE_FORWARDS, measure_splits
    from weight_sharing.grid import resolve_grid
    from weight_sharing.kmeans import kmeans_grid
    from weight_sharing.models import build_model
    from weight_sharing.sharing import grouped_codebooks
    from weight_sharing.tables import read_layers
    from weight_sharing.uniform import compressing_k

    torch.set_num_threads(1)
    run = finished_run(args.results, args.net, args.config)
    cfg, spec, base = run.cfg, run.spec, run.baseline
    bound, rule = network_bound(cfg, args.net), default_rule()
    layers = read_layers(str(run.folder / "layers.parquet"))
    names = [l["name"] for l in layers]
    model = build_model(spec.model)
    modules = dict(model.named_modules())
    weights = {n: modules[n].weight.detach().cpu().numpy() for n in names}
    n_weights = np.array([l["weights"] for l in layers])
    ks = [k for k in resolve_grid(cfg["sweep"]) if k <= args.k_max]
    points = []
    for k in ks:
        points.append(("tensor", k, {n: kmeans_grid(weights[n].ravel(), [min(k, w.size)])[min(k, w.size)]
                                     for n, w in weights.items()}))
    for k in compressing_k(layers, ks, 1):
        points.append(("channel", k, {n: grouped_codebooks(weights[n], [min(k, weights[n][0].size)], 1,
                                                           cfg["sweep"]["max_bins"])[min(k, weights[n][0].size)]
                                      for n in names}))
    crs = [float(compression_rates(n_weights, np.array([b[n].k for n in names]),
                                   np.array([b[n].groups for n in names]))) for _, _, b in points]
    measured, costs = {}, {}
    for mode in args.modes:
        bn = {"true": True, "false": False}.get(mode, mode)
        mode_spec = replace(spec, correct={"bn": bn})
        before, t = IMAGE_FORWARDS["images"], time.perf_counter()
        measured[mode] = measure_splits(mode_spec, names, [b for _, _, b in points], base, f"bn {mode}", model=model)
        costs[mode] = (IMAGE_FORWARDS["images"] - before, time.perf_counter() - t)

    print(f"{args.net}: baseline {100 * base['calib_accuracy']:.2f}% calib / {100 * base['test_accuracy']:.2f}% test "
          f"({base['calib_images']} / {base['test_images']} images); bound {bound}, {rule}")
    print("| granularity | K | CR | " + " | ".join(f"{m}: calib broken / fixed, test AL [pp]" for m in args.modes)
          + " |")
    print("|---|---|---|" + "---|" * len(args.modes))
    for i, (g, k, _) in enumerate(points):
        cells = [f"{measured[m][i]['calib_broken']} / {measured[m][i]['calib_fixed']}, "
                 f"{100 * measured[m][i]['test_al']:.2f}" for m in args.modes]
        print(f"| {g} | {k} | {crs[i]:.2f} | " + " | ".join(cells) + " |")
    print()
    print("| mode | granularity | CR chosen on calibration (K) | its calib / test AL [pp] | image-forwards | s |")
    print("|---|---|---|---|---|---|")
    for mode in args.modes:
        for g in ("tensor", "channel"):
            idx = [i for i, p in enumerate(points) if p[0] == g]
            rows = [{**measured[mode][i], "cr": crs[i]} for i in idx]
            pick = choose(rows, base, bound, rule)
            chosen = (f"{rows[pick]['cr']:.2f} (K={points[idx[pick]][1]}) | {100 * rows[pick]['calib_al']:.2f} / "
                      f"{100 * rows[pick]['test_al']:.2f}") if pick is not None else "none | —"
            forwards, seconds = costs[mode]
            print(f"| {mode} | {g} | {chosen} | {forwards:,.0f} | {seconds:.0f} |")


if __name__ == "__main__":
    main()
