"""BatchNorm re-estimation in the measuring pass: what it changes and what it saves, on a finished run.

Re-measures every validated point of a network (its codebooks from the run's candidates, the run's
``correct`` settings) on calibration and on test with the library on the Python path, and writes
per point the accuracies, the KL, the images pushed through the network and the seconds per split.
Run it once with each code version (``PYTHONPATH=<checkout>``), then compare the two files:

    PYTHONPATH=/tmp/old python benchmarks/bn_pass.py measure RESULTS NET CONFIG old.json
    python benchmarks/bn_pass.py measure RESULTS NET CONFIG new.json
    python benchmarks/bn_pass.py compare old.json new.json

CONFIG: the config file the run used (``configs/benchmark.yaml`` for the quality benchmark).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def measure(results: str, net: str, config: str, out: str) -> None:
    import torch

    from weight_sharing import evaluate
    from weight_sharing.config import load_config, model_config, network_paths
    from weight_sharing.evaluate import EvaluationSpec
    from weight_sharing.io import read_parquet
    from weight_sharing.models import build_model
    from weight_sharing.tables import CandidateSet

    torch.set_num_threads(1)
    cfg = load_config(config)
    net_dir = Path(results) / net
    spec = EvaluationSpec(model=model_config(results, net, cfg["networks"][net]),
                          data=network_paths(results, net, cfg["networks"][net])["npz"],
                          engine=dict(cfg["evaluation"]), correct=dict(cfg["correct"]),
                          statistics=str(net_dir / "calibration.safetensors"))
    cands = CandidateSet.read(str(net_dir / "candidates.parquet"), str(net_dir / "layers.parquet"))
    points = read_parquet(str(net_dir / "front_validated.parquet")).to_pylist()
    model = build_model(spec.model)
    rows = [{"point": p["point"], "cr": p["cr"]} for p in points]
    counter = getattr(evaluate, "IMAGE_FORWARDS", None)  # absent before the count existed
    for split in ("calib", "test"):
        ev = spec.evaluator(split, cands.layer_names, model=model)
        ev.reference()
        for row, p in zip(rows, points):
            before = counter["images"] if counter else 0
            t = time.perf_counter()
            ev.apply(cands.codebooks_of(p["choice"]))
            m = ev.measure()
            row[f"{split}_seconds"] = time.perf_counter() - t
            row[f"{split}_forwards"] = (counter["images"] - before) if counter else None
            row[f"{split}_accuracy"], row[f"{split}_kl"] = m.accuracy, m.kl
        ev.restore()
        ev.release()
    Path(out).write_text(json.dumps({"net": net, "rows": rows}, indent=1))


def compare(old: str, new: str) -> None:
    a, b = json.loads(Path(old).read_text()), json.loads(Path(new).read_text())
    ra, rb = a["rows"], b["rows"]
    assert [r["point"] for r in ra] == [r["point"] for r in rb], "not the same points"
    print("| network | points | split | accuracy differs (points) | max abs. accuracy difference [pp] "
          "| median KL ratio new / old | image-forwards per measurement old (by count) / new (logged) "
          "| seconds per measurement old / new |")
    print("|---|---|---|---|---|---|---|---|")
    for split in ("calib", "test"):
        diff = [abs(x[f"{split}_accuracy"] - y[f"{split}_accuracy"]) for x, y in zip(ra, rb)]
        ratio = np.median([y[f"{split}_kl"] / x[f"{split}_kl"] for x, y in zip(ra, rb) if x[f"{split}_kl"] > 0])
        fa = [x[f"{split}_forwards"] for x in ra]
        old_forwards = (f"{np.mean(fa):.0f}" if None not in fa else "—")
        print(f"| {a['net']} | {len(ra)} | {split} | {sum(d > 0 for d in diff)} | {100 * max(diff):.2f} "
              f"| {ratio:.4f} | {old_forwards} / {np.mean([y[f'{split}_forwards'] for y in rb]):.0f} "
              f"| {np.median([x[f'{split}_seconds'] for x in ra]):.3f} / "
              f"{np.median([y[f'{split}_seconds'] for y in rb]):.3f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    m = sub.add_parser("measure")
    m.add_argument("results")
    m.add_argument("net")
    m.add_argument("config")
    m.add_argument("out")
    c = sub.add_parser("compare")
    c.add_argument("old")
    c.add_argument("new")
    args = ap.parse_args()
    if args.what == "measure":
        measure(args.results, args.net, args.config, args.out)
    else:
        compare(args.old, args.new)


if __name__ == "__main__":
    main()
