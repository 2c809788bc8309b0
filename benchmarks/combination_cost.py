"""Where a sample's time goes: applying a combination's codebooks against measuring it, on a finished run.

Draws ``--n`` combinations as the sample stage does (its seed), and times, per combination, the
evaluator's ``apply`` (every layer's codebook, then the corrections' own work) and ``measure`` (the pass
over the calibration images, the BatchNorm re-estimation riding on it where it is deferred), next to a
plain eval-mode forward of the unmodified model over the same images in the same batches, one thread.

    python benchmarks/combination_cost.py RESULTS NET CONFIG [--n 5]
"""
from __future__ import annotations

import argparse
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results")
    ap.add_argument("net")
    ap.add_argument("config")
    ap.add_argument("--n", type=int, default=5, help="combinations timed")
    args = ap.parse_args()

    import numpy as np
    import torch
    from finished_runs import finished_run  # benchmarks/, next to this script

    from weight_sharing.sample import draw_combinations
    from weight_sharing.tables import CandidateSet

    torch.set_num_threads(1)
    run = finished_run(args.results, args.net, args.config)
    cfg, net_dir, spec = run.cfg, run.folder, run.spec
    cands = CandidateSet.read(str(net_dir / "candidates.parquet"), str(net_dir / "layers.parquet"))
    choices = draw_combinations(cands.sizes, args.n, cfg["sample"]["seed"])
    ev = spec.evaluator("calib", cands.layer_names)
    ev.reference()
    applied, measured = [], []
    for c in choices:
        books = cands.codebooks_of(c)
        t = time.perf_counter()
        ev.apply(books)
        applied.append(time.perf_counter() - t)
        t = time.perf_counter()
        ev.measure()
        measured.append(time.perf_counter() - t)
    ev.restore()
    with torch.inference_mode():
        batches = [ev._normalized(xb) for _, xb in ev._batches()]
        ev.model(batches[0])
        t = time.perf_counter()
        for xb in batches:
            ev.model(xb)
        plain = time.perf_counter() - t
    print(f"{args.net}: {ev.n} calibration images in batches of {ev.batch_size}, corrections "
          f"{[c.key for c in ev.corrections]}, {len(choices)} combinations, one thread")
    print("| apply [s] (median) | measure [s] (median) | plain forward [s] | apply share of a sample |")
    print("|---|---|---|---|")
    a, m = float(np.median(applied)), float(np.median(measured))
    print(f"| {a:.3f} | {m:.3f} | {plain:.3f} | {a / (a + m):.1%} |")


if __name__ == "__main__":
    main()
