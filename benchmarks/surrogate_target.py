"""The surrogate's target: the samples' top-1 loss or their KL to the baseline, and on how many images.

On a finished run, the surrogate (the run's features and settings) is fitted out of fold on each target
of the run's samples: ``al``, the top-1 loss on all calibration images (what the workflow fits), and
``kl``, the network's KL divergence to the baseline on the same images. With ``--images m`` the
samples are measured again on the first m calibration images (BatchNorm re-estimated on those, as a
sample stage on m images would) and their KL there is a third target, ``kl@m``. What the search needs
of a target is that its prediction ranks the combinations by their real loss, so each fit is scored by
the rank correlation (Spearman) of its out-of-fold prediction with the top-1 loss on all calibration
images: over every sample, and over the better half (the samples whose measured loss is at most the
median, nearer the front).

    python benchmarks/surrogate_target.py RESULTS NET CONFIG [--images 100 250]

CONFIG: the config file the run used. Cost: ``--images m`` measures every sample once on m images.
"""
from __future__ import annotations

import argparse
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results")
    ap.add_argument("net")
    ap.add_argument("config")
    ap.add_argument("--images", type=int, nargs="*", default=[], help="also measure the samples' KL on the first m")
    args = ap.parse_args()

    import numpy as np
    import torch
    from finished_runs import finished_run  # benchmarks/, next to this script
    from scipy.stats import spearmanr

    from weight_sharing.data import Split, load_split
    from weight_sharing.evaluate import IMAGE_FORWARDS, Evaluator
    from weight_sharing.models import build_model
    from weight_sharing.sample import evaluate_combinations
    from weight_sharing.surrogate_model import design_matrix, fit_surrogate, sample_features
    from weight_sharing.tables import CandidateSet, read_samples

    torch.set_num_threads(1)
    run = finished_run(args.results, args.net, args.config)
    cfg, net_dir, spec = run.cfg, run.folder, run.spec
    cands = CandidateSet.read(str(net_dir / "candidates.parquet"), str(net_dir / "layers.parquet"))
    samples = read_samples(sorted(str(p) for p in (net_dir / "samples").glob("shard_*.parquet"))).sort_by("sample")
    sur = cfg["surrogate"]
    features = list(sur["features"])
    x = design_matrix(features, sample_features(samples, cands.energy))
    al = np.asarray(samples.column("al").to_numpy(), dtype=np.float64)
    targets = {"al": al, "kl": np.asarray(samples.column("kl").to_numpy(), dtype=np.float64)}
    costs = {}

    if args.images:
        model = build_model(spec.model)
        full = load_split(spec.data, "calib")
        corrections = spec.corrections()
        probe = spec.evaluator("calib", model=model)
        names = list(probe.originals)
        probe.release()
        statistics = spec.layer_statistics(corrections, names)
        choices = np.array(samples.column("choice").to_pylist(), dtype=np.int64)
        for m in args.images:
            if not 0 < m < len(full):
                raise SystemExit(f"--images {m}: the run has {len(full)} calibration images")
            part = Split(x=np.ascontiguousarray(full.x[:m]), y=full.y[:m], mean=full.mean, std=full.std)
            ev = Evaluator(model, part, corrections=[c() for c in corrections], statistics=statistics,
                           calibration=part, **spec.engine_kwargs())
            before, t = IMAGE_FORWARDS["images"], time.perf_counter()
            table = evaluate_combinations(ev, cands, choices, ev.accuracy(), what=f"samples on {m} images")
            costs[f"kl@{m}"] = (IMAGE_FORWARDS["images"] - before, time.perf_counter() - t)
            targets[f"kl@{m}"] = np.asarray(table.column("kl").to_numpy(), dtype=np.float64)
            ev.release()

    better = al <= np.median(al)
    print(f"{args.net}: {len(al)} samples, features {features}, positive {sur['positive']}, {sur['folds']} folds; "
          f"measured top-1 loss on all calibration images: median {100 * np.median(al):.2f} pp")
    print("| target | R² out of fold (own target) | Spearman with top-1 loss, all samples | better half "
          "| image-forwards (sample stage) | seconds |")
    print("|---|---|---|---|---|---|")
    for name, y in targets.items():
        model, oof = fit_surrogate(x, y, cands.layer_names, folds=sur["folds"], seed=sur["seed"],
                                   feature_names=features, positive=sur["positive"])
        forwards, seconds = costs.get(name, (None, None))
        print(f"| {name} | {model['r2_heldout']:.3f} | {spearmanr(oof, al).statistic:.3f} "
              f"| {spearmanr(oof[better], al[better]).statistic:.3f} "
              f"| {'(the run)' if forwards is None else f'{forwards:,.0f}'} "
              f"| {'' if seconds is None else f'{seconds:.0f}'} |")


if __name__ == "__main__":
    main()
