"""Sweep rows resumed after the swept layer's input, against rows of the whole network, on a finished run.

Sweeps some of a network's layers twice with the run's settings (grid, codebook granularity,
corrections, refit): once with every pass running the whole network (``Evaluator(resume=False)``),
once resumed (``Evaluator.resumed_at``, the default); prints per layer the share of the network's
multiply-accumulates the resumed rows compute, the seconds and image-forwards per row either way, and
whether the rows are identical, then the totals and the whole sweep's image-forwards extrapolated from
every layer's share (the image-forwards of a row are those of its passes, so the extrapolation needs no
timing).

    python benchmarks/resumed_sweep.py RESULTS NET CONFIG [--every 5]

CONFIG: the config file the run used (e.g. ``configs/transfer.yaml``).
"""
from __future__ import annotations

import argparse
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results")
    ap.add_argument("net")
    ap.add_argument("config")
    ap.add_argument("--every", type=int, default=5, help="sweep every n-th shared layer (from the first)")
    args = ap.parse_args()

    import torch
    from finished_runs import finished_run  # benchmarks/, next to this script

    from weight_sharing.evaluate import IMAGE_FORWARDS
    from weight_sharing.grid import resolve_grid
    from weight_sharing.models import build_model
    from weight_sharing.resume import SplitModel
    from weight_sharing.sweep import refit_statistics, sweep_layers

    torch.set_num_threads(1)
    run = finished_run(args.results, args.net, args.config)
    cfg, spec, base = run.cfg, run.spec, run.baseline
    model = build_model(spec.model)
    probe = spec.evaluator("calib", model=model)
    names = list(probe.originals)
    layers = names[::args.every]
    refit = refit_statistics(spec, layers, probe)
    probe.release()
    grid, sharing = resolve_grid(cfg["sweep"]), cfg["sharing"]
    results = {}
    for resume in (False, True):
        ev = spec.evaluator("calib", model=model, resume=resume)
        ev.reference()
        per_layer = {}
        for layer in layers:
            before, t = IMAGE_FORWARDS["images"], time.perf_counter()
            table = sweep_layers(ev, [layer], grid, base["calib_accuracy"], cfg["sweep"]["max_bins"],
                                 granularity=sharing["granularity"], group=int(sharing["group"]),
                                 refit=None if refit is None else {layer: refit[layer]})[0]
            per_layer[layer] = (table.drop(["seconds"]), time.perf_counter() - t, IMAGE_FORWARDS["images"] - before)
        results[resume] = per_layer
        ev.release()
    image_shape = tuple(spec.evaluator("calib", model=model).split.x.shape[1:])
    splits = SplitModel(model, image_shape)
    shares = {l: (s.share if (s := splits.split(l)) is not None else 1.0) for l in names}
    print(f"{args.net}: {len(layers)} of {len(names)} layers, every {args.every}th; {base['calib_images']} "
          "calibration images")
    print("| layer | share of MACs resumed | rows | s / row whole | s / row resumed | forwards / row whole "
          "| forwards / row resumed | rows identical |")
    print("|---|---|---|---|---|---|---|---|")
    totals = [0, 0.0, 0.0, 0.0, 0.0]
    for layer in layers:
        (tw, sw, fw), (tr, sr, fr) = results[False][layer], results[True][layer]
        n = tw.num_rows
        totals = [totals[0] + n, totals[1] + sw, totals[2] + sr, totals[3] + fw, totals[4] + fr]
        print(f"| {layer} | {shares[layer]:.2f} | {n} | {sw / n:.2f} | {sr / n:.2f} | {fw / n:.0f} | {fr / n:.0f} "
              f"| {tw.equals(tr)} |")
    n = totals[0]
    print(f"| all measured | | {n} | {totals[1] / n:.2f} | {totals[2] / n:.2f} | {totals[3] / n:.0f} "
          f"| {totals[4] / n:.0f} | |")
    print(f"seconds: {totals[1]:.0f} whole, {totals[2]:.0f} resumed ({totals[1] / totals[2]:.2f}x); image-forwards "
          f"{totals[4] / totals[3]:.2f}x")
    mean_share = sum(shares.values()) / len(shares)
    print(f"mean share over all {len(names)} layers: {mean_share:.2f} (a whole sweep's image-forwards resumed, "
          "at equal rows per layer, relative to whole-network rows)")


if __name__ == "__main__":
    main()
