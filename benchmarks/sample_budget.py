"""The sample budget: the surrogate's held-out R² and the CR chosen on calibration against the number of samples.

On a finished run, for each budget n the surrogate is fitted on the run's first n samples (the seeded
draw's order, which a smaller ``sample.n`` draws first), scored out of fold (as the surrogate stage
reports) and on the run's last ``--held-out`` samples, never fitted on; then the search, refinement and
choice run as the workflow runs them (the run's config: search, refine rounds, select rule), on the
calibration split. The chosen point's test loss is measured and printed, never used. The run's own
budget (all its samples) is read from its files (``front_refined.parquet``, ``front_validated.parquet``)
rather than recomputed.

    python benchmarks/sample_budget.py RESULTS NET CONFIG [--n 100 200 300] [--held-out 100]

CONFIG: the config file the run used. Cost: each budget's refinement measures up to ``refine.rounds``
+ 1 fronts of up to ``search.exact.max_points`` points on calibration (its image-forwards are printed).
"""
from __future__ import annotations

import argparse
import time


def r2(y, p):
    import numpy as np

    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    return float(1 - ((y - p) ** 2).sum() / ((y - y.mean()) ** 2).sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results")
    ap.add_argument("net")
    ap.add_argument("config")
    ap.add_argument("--n", type=int, nargs="+", default=[100, 200, 300], help="sample budgets to refit on")
    ap.add_argument("--held-out", type=int, default=100, help="the run's last samples, for scoring only")
    args = ap.parse_args()

    import numpy as np
    import torch
    from finished_runs import finished_run  # benchmarks/, next to this script

    from weight_sharing.bound import SelectRule, choose
    from weight_sharing.config import network_bound
    from weight_sharing.evaluate import IMAGE_FORWARDS, measure_all
    from weight_sharing.io import read_json, read_parquet
    from weight_sharing.models import build_model
    from weight_sharing.refine import refine_front
    from weight_sharing.search_methods import run_search
    from weight_sharing.surrogate_model import design_matrix, fit_surrogate, predict, sample_features
    from weight_sharing.tables import CandidateSet, read_samples

    torch.set_num_threads(1)
    run = finished_run(args.results, args.net, args.config)
    cfg, net_dir, spec, base = run.cfg, run.folder, run.spec, run.baseline
    bound = network_bound(cfg, args.net)
    rule = SelectRule.from_config({**cfg["select"], "split": "calib"})
    cands = CandidateSet.read(str(net_dir / "candidates.parquet"), str(net_dir / "layers.parquet"))
    samples = read_samples(sorted(str(p) for p in (net_dir / "samples").glob("shard_*.parquet")))
    samples = samples.sort_by("sample")
    total = samples.num_rows
    sur = cfg["surrogate"]
    features = list(sur["features"])
    x_all = design_matrix(features, sample_features(samples, cands.energy))
    y_all = np.asarray(samples.column("al").to_numpy(), dtype=np.float64)
    held = slice(total - args.held_out, total)

    model = build_model(spec.model)
    calib = spec.evaluator("calib", cands.layer_names, model=model)
    test = spec.evaluator("test", cands.layer_names, model=model)
    rows = []
    for n in sorted(args.n):
        if n > total - args.held_out:
            raise SystemExit(f"--n {n}: the run has {total} samples, {args.held_out} of them held out")
        fitted, _ = fit_surrogate(x_all[:n], y_all[:n], cands.layer_names, folds=sur["folds"], seed=sur["seed"],
                                  feature_names=features, positive=sur["positive"])
        held_r2 = r2(y_all[held], predict(fitted, x_all[held]))
        before, t = IMAGE_FORWARDS["images"], time.perf_counter()
        front = run_search(cands, fitted, cfg["search"])
        refined, _, history = refine_front(calib, cands, samples.slice(0, n), fitted, front, base, bound, rule,
                                           cfg["refine"]["rounds"], cfg["search"])
        points = refined.to_pylist()
        pick = choose(points, base, bound, rule)
        forwards, seconds = IMAGE_FORWARDS["images"] - before, time.perf_counter() - t
        chosen = points[pick] if pick is not None else None
        test_al = None
        if chosen is not None:
            m = measure_all(test, [cands.codebooks_of(chosen["choice"])], "chosen point (test)")[0]
            test_al = base["test_accuracy"] - m.accuracy
        rows.append((n, fitted["r2_heldout"], held_r2, len(history) - 1, len(points), chosen, test_al, forwards,
                     seconds))
    # the run's own budget, from its files
    own = read_json(net_dir / "surrogate.json")
    fitted_own = fit_surrogate(x_all, y_all, cands.layer_names, folds=sur["folds"], seed=sur["seed"],
                               feature_names=features, positive=sur["positive"])[0]
    refined = read_parquet(net_dir / "front_refined.parquet").to_pylist()
    validated_file = net_dir / "front_validated.parquet"  # absent while the run's validation has not run
    validated = read_parquet(validated_file).to_pylist() if validated_file.exists() else []
    pick = choose(refined, base, bound, rule)
    chosen = refined[pick] if pick is not None else None
    test_al = next((v["test_al"] for v in validated if chosen and v["choice"] == chosen["choice"]), None)
    rounds = len(read_json(net_dir / "refine.json")["rounds"]) - 1
    rows.append((total, own["r2_heldout"], None, rounds, len(refined), chosen, test_al, None, None))
    if abs(fitted_own["r2_heldout"] - own["r2_heldout"]) > 1e-9:
        raise SystemExit("the surrogate refitted here on all samples differs from the run's: other settings?")

    print(f"{args.net}: {total} samples, the last {args.held_out} held out for the second R²; bound {bound}, "
          f"select {rule}")
    print("| samples | R² out of fold | R² on the held-out samples | refine rounds | points measured "
          "| CR chosen on calibration | calib / test AL [pp] | image-forwards (refine) | seconds (refine) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n, oof, held_r2, rounds, measured, chosen, test_al, forwards, seconds in rows:
        cr = f"{chosen['cr']:.2f}" if chosen else "none"
        al = (f"{100 * chosen['calib_al']:.2f} / {'—' if test_al is None else f'{100 * test_al:.2f}'}" if chosen
              else "—")
        print(f"| {n}{' (the run)' if n == total else ''} | {oof:.3f} | "
              f"{'—' if held_r2 is None else f'{held_r2:.3f}'} | {rounds} | {measured} | {cr} | {al} | "
              f"{'—' if forwards is None else f'{forwards:,.0f}'} | {'—' if seconds is None else f'{seconds:.0f}'} |")


if __name__ == "__main__":
    main()
