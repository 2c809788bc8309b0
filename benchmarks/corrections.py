"""What each codebook correction buys: on the same points, and through the whole workflow.

``points``: the validated front points of finished runs (their K vectors and codebooks),
measured again with each correction applied to exactly those codebooks: bias correction,
data-aware centroids, both, and BatchNorm statistics re-estimated on the calibration images
instead. Prints, per network, the mean calibration KL to the baseline (the continuous
signal: how much of it each correction removes), the mean calibration and test loss, and
how many points meet the bound on calibration. A controlled comparison: the points and the
images are the same, only the correction differs. Test losses are measured, not used to
choose anything.

``runs``: finished runs of the whole workflow with different settings (``name=folder``):
per network, the CR chosen on calibration at the 99% bound (``select.confidence`` of the
report), its calibration and test loss, the uniform reference chosen the same way, and the
summed job wall time (with the calibration and sweep stages apart).

    python benchmarks/corrections.py points results_benchmark
    python benchmarks/corrections.py runs none=results_benchmark bias=results_bias ...
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pyarrow.parquet as pq
import torch
from finished_runs import (  # benchmarks/, next to this script
    baseline_of,
    default_rule,
    finished_networks,
    network_folders,
)

from weight_sharing.bound import meets_bound
from weight_sharing.correct import gather_statistics, refit_centroids
from weight_sharing.data import load_split
from weight_sharing.evaluate import Evaluator
from weight_sharing.models import build_model
from weight_sharing.report import benchmark_seconds, choices, stage_of

CORRECTIONS = ("none", "bias", "centroids", "bias+centroids", "batchnorm", "centroids+batchnorm")


def points(results: str, net_filter: list[str] | None, max_points: int, corrections=CORRECTIONS) -> None:
    print("| network | correction | points | mean calib KL | KL vs none | mean calib AL [pp] | mean test AL [pp] "
          "| meet bound on calib | seconds |")
    print("|---|---|---|---|---|---|---|---|---|")
    for run in finished_networks(results, max_points, net_filter):
        net, net_dir, model_cfg, npz = run.name, run.folder, run.model_cfg, run.npz
        baseline = baseline_of(net_dir)
        cands, validated = run.candidates, run.validated
        names = cands.layer_names
        splits = {s: load_split(npz, s) for s in ("calib", "test")}
        stats = gather_statistics(Evaluator(build_model(model_cfg), splits["calib"], batch_size=500, layers=names),
                                  second_moment=True)
        means = {n: s["mean"] for n, s in stats.items()}
        kl_none = None
        for correction in corrections:
            t0 = time.perf_counter()
            rows = [{} for _ in validated]
            for split in ("calib", "test"):
                # BatchNorm re-estimated on the calibration images, whichever split is measured
                ev = Evaluator(build_model(model_cfg), splits[split], batch_size=500, layers=names,
                               corrections=[c for c, on in (("bias", "bias" in correction),
                                                            ("bn", "batchnorm" in correction)) if on],
                               statistics={"mean": means}, calibration=splits["calib"])
                for row, v in zip(rows, validated):
                    books = cands.codebooks_of(v["choice"])
                    if "centroids" in correction:
                        books = {n: refit_centroids(ev.originals[n], cb, stats[n]["second"],
                                                    stats[n]["mean"] if "bias" in correction else None,
                                                    device=ev.device) for n, cb in books.items()}
                    with ev.applied(books):
                        m = ev.measure()
                    row[f"{split}_al"] = baseline[f"{split}_accuracy"] - m.accuracy
                    if split == "calib":
                        row["kl"] = m.kl
                        row["calib_ok"] = bool(meets_bound(m.accuracy, baseline["calib_accuracy"], 0.99))
            seconds = time.perf_counter() - t0
            kl = float(np.mean([r["kl"] for r in rows]))
            kl_none = kl if correction == "none" else kl_none
            ratio = f"{kl / kl_none:.2f}x" if kl_none else "—"
            print(f"| {net} | {correction} | {len(rows)} | {kl:.5f} | {ratio} "
                  f"| {100 * np.mean([r['calib_al'] for r in rows]):.2f} "
                  f"| {100 * np.mean([r['test_al'] for r in rows]):.2f} "
                  f"| {sum(r['calib_ok'] for r in rows)} | {seconds:.0f} |", flush=True)


def runs(named: list[str], bound: float, confidence: float) -> None:
    print("| network | run | CR chosen on calibration (calib / test AL pp) | test keeps bound | uniform CR (K) | gain "
          "| job time [s] (calibration + sweep) |")
    print("|---|---|---|---|---|---|---|")
    table = {}
    for item in named:
        name, folder = item.split("=", 1)
        for net_dir in network_folders(folder):
            table.setdefault(net_dir.name, []).append((name, net_dir))
    for net, entries in table.items():
        for name, net_dir in entries:
            baseline = baseline_of(net_dir)
            v = pq.read_table(net_dir / "front_validated.parquet").to_pylist()
            u = pq.read_table(net_dir / "uniform.parquet").to_pylist()
            pick = choices(v, u, baseline, bound, default_rule(confidence=confidence))
            files = [str(f) for f in (net_dir / "benchmarks").rglob("*.tsv") if stage_of(str(f)) not in ("demo",)]
            total = benchmark_seconds(files)
            early = benchmark_seconds([f for f in files if stage_of(f) in ("calibration", "sweep")])
            if pick["best"] is None:
                best = "none | —"
            else:
                b = v[pick["best"]]
                best = (f"{b['cr']:.2f} ({100 * b['calib_al']:.2f} / {100 * b['test_al']:.2f}) | "
                        f"{'yes' if b['test_within_bound'] else 'no'}")
            uni = (f"{u[pick['uniform']]['cr']:.2f} (K={u[pick['uniform']]['k']})"
                   if pick["uniform"] is not None else "—")
            gain = (f"{v[pick['best']]['cr'] / u[pick['uniform']]['cr']:.2f}x"
                    if pick["best"] is not None and pick["uniform"] is not None else "—")
            print(f"| {net} | {name} | {best} | {uni} | {gain} | {total:.0f} ({early:.0f}) |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("points")
    p.add_argument("results")
    p.add_argument("--networks", nargs="*")
    p.add_argument("--max-points", type=int, default=20)
    p.add_argument("--corrections", nargs="*", default=list(CORRECTIONS), choices=CORRECTIONS)
    r = sub.add_parser("runs")
    r.add_argument("named", nargs="+", help="name=results_folder")
    r.add_argument("--bound", type=float, default=0.99)
    r.add_argument("--confidence", type=float, default=0.9)
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.mode == "points":
        points(args.results, args.networks, args.max_points, args.corrections)
    else:
        runs(args.named, args.bound, args.confidence)


if __name__ == "__main__":
    main()
