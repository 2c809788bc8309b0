"""The calibration images a sweep row needs: some layers swept again on the first n calibration images.

On a finished run, every ``--every``-th shared layer is swept again with the run's settings (grid,
codebook granularity, corrections, refit; the calibration statistics of all the run's images), on the
first ``--images`` calibration images only (BatchNorm re-estimated on those). Each row is compared with
the run's row of the same codebook: the rank correlation of their KL within the layer, whether the
refit check kept the same values, whether the row meets the bound (the candidates' filter, on each
sweep's own baseline accuracy) and whether the layer keeps the same candidates (``candidates``' rule).
The image-forwards of the rows scale with the images; this says what the ranking loses.

    python benchmarks/sweep_images.py RESULTS NET CONFIG [--images 250] [--every 5]
"""
from __future__ import annotations

import argparse
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results")
    ap.add_argument("net")
    ap.add_argument("config")
    ap.add_argument("--images", type=int, default=250, help="the first n calibration images")
    ap.add_argument("--every", type=int, default=5, help="sweep every n-th shared layer (from the first)")
    args = ap.parse_args()

    import numpy as np
    import torch
    from finished_runs import finished_run  # benchmarks/, next to this script
    from scipy.stats import spearmanr

    from weight_sharing.bound import meets_bound
    from weight_sharing.candidates import select_layer_candidates
    from weight_sharing.config import network_bound
    from weight_sharing.data import Split, load_split
    from weight_sharing.evaluate import IMAGE_FORWARDS, Evaluator
    from weight_sharing.grid import resolve_grid
    from weight_sharing.models import build_model
    from weight_sharing.sweep import refit_statistics, sweep_layers
    from weight_sharing.tables import read_sweeps

    torch.set_num_threads(1)
    run = finished_run(args.results, args.net, args.config)
    cfg, net_dir, spec, base = run.cfg, run.folder, run.spec, run.baseline
    bound = network_bound(cfg, args.net)
    signal = cfg["candidates"]["signal"]
    run_rows = read_sweeps(sorted(str(p) for p in (net_dir / "sweep").glob("*.parquet")))
    model = build_model(spec.model)
    full = load_split(spec.data, "calib")
    if not 0 < args.images < len(full):
        raise SystemExit(f"--images {args.images}: the run has {len(full)} calibration images")
    part = Split(x=np.ascontiguousarray(full.x[:args.images]), y=full.y[:args.images], mean=full.mean,
                 std=full.std)
    corrections = spec.corrections()
    probe = spec.evaluator("calib", model=model)
    names = list(probe.originals)
    probe.release()
    statistics = spec.layer_statistics(corrections, names)
    ev = Evaluator(model, part, corrections=[c() for c in corrections], statistics=statistics,
                   calibration=part, **spec.engine_kwargs())
    part_accuracy = ev.accuracy()
    layers = names[::args.every]
    refit = refit_statistics(spec, layers, ev)
    grid, sharing = resolve_grid(cfg["sweep"]), cfg["sharing"]
    before, t = IMAGE_FORWARDS["images"], time.perf_counter()
    table = sweep_layers(ev, layers, grid, part_accuracy, cfg["sweep"]["max_bins"],
                         granularity=sharing["granularity"], group=int(sharing["group"]), refit=refit)[0]
    forwards, seconds = IMAGE_FORWARDS["images"] - before, time.perf_counter() - t
    mine = {}
    for r in table.to_pylist():
        mine.setdefault(r["layer"], []).append(r)

    print(f"{args.net}: {len(layers)} of {len(names)} layers, every {args.every}th; the first {args.images} of "
          f"{len(full)} calibration images (baseline {100 * part_accuracy:.2f}% on them, "
          f"{100 * base['calib_accuracy']:.2f}% on all); bound {bound}")
    print(f"| layer | rows | KL rank correlation (Spearman) | same refit decision | same meets-bound "
          f"| same candidates ({signal}) |")
    print("|---|---|---|---|---|---|")
    totals = np.zeros(4)
    same_layers = 0
    for layer in layers:
        key = {(r["groups"], r["k"]): r for r in run_rows[layer]}
        rows = [(key[(r["groups"], r["k"])], r) for r in mine[layer]]
        rho = spearmanr([a["kl"] for a, _ in rows], [b["kl"] for _, b in rows]).statistic
        refit_same = sum(a["refit"] == b["refit"] for a, b in rows)
        bound_same = sum(meets_bound(a["accuracy"], base["calib_accuracy"], bound)
                         == meets_bound(b["accuracy"], part_accuracy, bound) for a, b in rows)
        kept_all = {(r["bits"], r["groups"], r["k"])
                    for r in select_layer_candidates(run_rows[layer], base["calib_accuracy"], bound, signal)[0]}
        kept_part = {(r["bits"], r["groups"], r["k"])
                     for r in select_layer_candidates(mine[layer], part_accuracy, bound, signal)[0]}
        same = kept_all == kept_part
        same_layers += same
        totals += [len(rows), refit_same, bound_same, rho]
        print(f"| {layer} | {len(rows)} | {rho:.3f} | {refit_same} of {len(rows)} | {bound_same} of {len(rows)} "
              f"| {'yes' if same else f'no ({len(kept_all)} / {len(kept_part)})'} |")
    n = int(totals[0])
    print(f"| all | {n} | mean {totals[3] / len(layers):.3f} | {int(totals[1])} of {n} | {int(totals[2])} of {n} "
          f"| {same_layers} of {len(layers)} layers |")
    print(f"{n} rows on {args.images} images: {forwards:,.0f} image-forwards, {seconds:.0f} s "
          f"({forwards / n:.0f} and {seconds / n:.2f} s per row)")


if __name__ == "__main__":
    main()
