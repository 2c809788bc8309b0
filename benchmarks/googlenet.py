"""End-to-end exploration of torchvision's GoogLeNet on synthetic data, stage by stage, with the engine's throughput.

    python benchmarks/googlenet.py            # the issue's budget, on the GPU (H200 target: < 6 min)
    python benchmarks/googlenet.py --tiny     # a few seconds on a CPU

Budget (defaults): 224 px, 2,500 calibration images, sweep over K = 2, 4, ..., 1024 for all 58
layers, 1,000 samples, the surrogate on [layer_kl, layer_noise], the exact front (50 points; or
``--search nsga2``: NSGA-II, 500 generations), validation of the front on 10,000 images.
Weights and images are random: the time does not depend on the values. Runs the library's
stages in one process (the workflow adds a process start per job), and prints each stage's time,
the sample stage's images per second, and in the same run the raw inference throughput of the
same model (bf16, channels_last, no weight changes) and of a plain fp32 loop that moves each
batch from the host.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import time

import numpy as np
import torch

from weight_sharing.bound import SelectRule
from weight_sharing.candidates import select_candidates
from weight_sharing.data import Split
from weight_sharing.evaluate import Evaluator, measure_all, measurement_columns
from weight_sharing.models import create_model, layer_records
from weight_sharing.sample import draw_combinations, evaluate_combinations
from weight_sharing.search_methods import run_search
from weight_sharing.surrogate_model import design_matrix, fit_surrogate, sample_features
from weight_sharing.sweep import sweep_layers
from weight_sharing.tables import CandidateSet, rows_by_layer
from weight_sharing.validate import validate_front


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def raw_throughput(model, x_u8, batch, device, bf16_channels_last: bool, repeats: int) -> float:
    """Images/s of plain inference: resident uint8 data, bf16 + channels_last; or fp32 from the host."""
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255
    model = model.eval().to(device)
    n = len(x_u8)
    with torch.inference_mode():
        if bf16_channels_last:
            model = model.to(memory_format=torch.channels_last)
            xd, m, s = x_u8.to(device), mean.to(device), std.to(device)

            def run():
                with torch.autocast(device.type, dtype=torch.bfloat16):
                    for i in range(0, n, batch):
                        xb = ((xd[i:i + batch].float() - m) / s).contiguous(memory_format=torch.channels_last)
                        model(xb).argmax(1)
        else:
            xf = (x_u8.float() - mean) / std  # host fp32, moved per batch

            def run():
                for i in range(0, n, batch):
                    model(xf[i:i + batch].to(device)).argmax(1).cpu()
        run()  # warm-up
        sync(device)
        t = time.perf_counter()
        for _ in range(repeats):
            run()
        sync(device)
        return repeats * n / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="CPU-sized budget")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--calib", type=int, default=2500)
    ap.add_argument("--test", type=int, default=10000)
    ap.add_argument("--kmax", type=int, default=1024)
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--generations", type=int, default=500)
    ap.add_argument("--search", default="exact", choices=["exact", "nsga2"])
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--precision", default="bf16", choices=["fp32", "bf16"])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--workers", type=int, default=os.cpu_count(), help="clustering threads (default: all cores)")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    if args.tiny:
        args.size, args.calib, args.test, args.kmax = 64, 32, 64, 8
        args.samples, args.generations, args.batch, args.precision = 20, 20, 64, "fp32"
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    arch = {"source": "torchvision", "arch": "googlenet", "kwargs": {"aux_logits": False}}
    model = create_model(arch).eval()
    layers = layer_records(model, (3, args.size, args.size))
    grid = [2 ** i for i in range(1, int(np.log2(args.kmax)) + 1)]
    print(f"googlenet: {len(layers)} shared layers, {sum(l['weights'] for l in layers):,} weights; "
          f"{args.size} px; device {device}; precision {args.precision}; K grid {grid[0]}..{grid[-1]}")
    mean, std = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
    calib = Split(rng.integers(0, 256, (args.calib, 3, args.size, args.size), dtype=np.uint8),
                  rng.integers(0, 1000, args.calib), mean, std)
    test = Split(rng.integers(0, 256, (args.test, 3, args.size, args.size), dtype=np.uint8),
                 rng.integers(0, 1000, args.test), mean, std)
    times, figures = {}, {}
    ev = dict(batch_size=args.batch, device=str(device), precision=args.precision, channels_last=True)

    t = time.perf_counter()
    names = [l["name"] for l in layers]
    cal = Evaluator(copy.deepcopy(model), calib, layers=names, **ev)
    tst = Evaluator(copy.deepcopy(model), test, layers=names, **ev)
    baseline = {"calib_accuracy": cal.accuracy(), "test_accuracy": tst.accuracy(), "calib_images": args.calib,
                "test_images": args.test}
    cal.reference()  # the unmodified outputs every measurement's KL compares with (one pass)
    sync(device)
    times["prepare"] = time.perf_counter() - t

    t = time.perf_counter()
    sweep_table, cluster_s, cluster_wait = sweep_layers(cal, [l["name"] for l in layers], grid,
                                                        baseline["calib_accuracy"], 1 << 16, args.workers)
    sweeps = rows_by_layer(sweep_table.to_pylist())
    sync(device)
    times["sweep"] = time.perf_counter() - t
    figures["sweep_cluster_cpu_s"] = sum(cluster_s.values())
    figures["sweep_cluster_wait_s"] = cluster_wait
    figures["sweep_evaluations"] = sweep_table.num_rows

    t = time.perf_counter()
    # random weights: keep every K (the timing of a real run depends on the candidate count, ~10 per layer)
    cand_table = select_candidates(sweeps, [l["name"] for l in layers], baseline["calib_accuracy"], bound=1e-9)
    cands = CandidateSet(cand_table, layers)
    times["candidates"] = time.perf_counter() - t

    # applying a whole combination (every layer) and restoring the weights, without evaluating
    trial = draw_combinations(cands.sizes, 20, seed=1)
    sync(device)
    t = time.perf_counter()
    for c in trial:
        cal.apply(cands.codebooks_of(c))
        cal.restore()
    sync(device)
    figures["apply_restore_ms"] = 1000 * (time.perf_counter() - t) / len(trial)

    t = time.perf_counter()
    choices = draw_combinations(cands.sizes, args.samples, seed=0)
    samples = evaluate_combinations(cal, cands, choices, baseline["calib_accuracy"])
    sync(device)
    times["sample"] = time.perf_counter() - t
    figures["sample_images_per_s"] = len(choices) * args.calib / times["sample"]

    t = time.perf_counter()
    features = ["layer_kl", "layer_noise"]
    x = design_matrix(features, sample_features(samples, [l["energy"] for l in layers]))
    surrogate, _ = fit_surrogate(x, samples.column("al").to_numpy(), [l["name"] for l in layers], folds=5,
                                 feature_names=features, positive=True)
    times["surrogate"] = time.perf_counter() - t

    t = time.perf_counter()
    front = run_search(cands, surrogate, {"method": args.search, "exact": {"max_points": 50},
                                          "nsga2": {"pop_size": 100, "generations": args.generations, "seed": 0}})
    times["search"] = time.perf_counter() - t

    t = time.perf_counter()
    books = [cands.codebooks_of(r["choice"]) for r in front.to_pylist()]
    measured = [{**measurement_columns("calib_", mc, baseline["calib_accuracy"]),
                 **measurement_columns("test_", mt, baseline["test_accuracy"])}
                for mc, mt in zip(measure_all(cal, books, "calib"), measure_all(tst, books, "test"))]
    validate_front(front, measured, baseline, bound=0.99,
                   rule=SelectRule(confidence=0.5, split="calib", interval="normal", family="none"))
    sync(device)
    times["validate"] = time.perf_counter() - t
    figures["front_points"] = front.num_rows
    total = sum(times.values())

    raw_n = min(len(calib.x), 2500)
    xr = torch.from_numpy(calib.x[:raw_n])
    bf16 = raw_throughput(create_model(arch), xr, args.batch, device, True, 3 if not args.tiny else 1)
    fp32 = raw_throughput(create_model(arch), xr, args.batch, device, False, 3 if not args.tiny else 1)
    figures.update(raw_bf16_channels_last_images_per_s=bf16, raw_fp32_host_loop_images_per_s=fp32)

    print("\n| stage | seconds |\n|---|---|")
    for k, v in times.items():
        print(f"| {k} | {v:.1f} |")
    print(f"| **total** | **{total:.1f}** |")
    print(f"\nsweep: {figures['sweep_evaluations']} evaluations of {args.calib} images; clustering "
          f"{figures['sweep_cluster_cpu_s']:.1f} s summed over {args.workers} threads; the evaluation "
          f"waited {cluster_wait:.1f} s for it (on a GPU the rest overlaps the evaluation)")
    print(f"applying a combination of codebooks to all {len(layers)} layers and restoring: "
          f"{figures['apply_restore_ms']:.1f} ms")
    print(f"sample stage: {figures['sample_images_per_s']:,.0f} images/s")
    print(f"raw inference, bf16 + channels_last, resident data: {bf16:,.0f} images/s "
          f"(sample stage at {100 * figures['sample_images_per_s'] / bf16:.0f}% of it)")
    print(f"raw inference, plain fp32 loop from the host: {fp32:,.0f} images/s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "device": str(device), "times_s": times, "total_s": total,
                       **figures}, f, indent=2)


if __name__ == "__main__":
    main()
