"""Peak host memory of the prepare and validate stages on an ImageNet-sized split.

A synthetic evaluation .npz of 224-px images (``--test`` test images, ``--calib``
calibration images, uint8, stored uncompressed as the decode stage writes it) and
a small timm model (the memory held for the data does not depend on the model).
Each stage runs in its own process; the figure is that process's maximum resident
set size (``ru_maxrss`` from ``os.wait4``, what ``/usr/bin/time -v`` reports).

    python benchmarks/memory.py                       # this code
    python benchmarks/memory.py --code /path/to/old   # another checkout (stages.py API), for a before/after

The .npz (about 1.6 GB at the defaults) is written once under ``--work``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

MODEL = {"source": "timm", "arch": "mobilenetv3_small_050", "kwargs": {"num_classes": 10}, "checkpoint": None}
EVALUATION = {"device": "cpu", "precision": "fp32", "batch_size": 100, "channels_last": False, "compile": False}

NEW = """
import json, sys
from weight_sharing import prepare, validate
a = json.loads(sys.argv[1])
if a["stage"] == "prepare":
    prepare.run(model_cfg=a["model"], data_npz=a["npz"], evaluation=a["evaluation"], out_baseline=a["baseline"],
                out_layers=a["layers"])
else:
    validate.run(model_cfg=a["model"], data_npz=a["npz"], candidates_parquet=a["candidates"],
                 layers_parquet=a["layers"], front_parquet=a["front"], baseline_json=a["baseline"], bound=0.99,
                 confidence=0.5, evaluation=a["evaluation"], out=a["out"])
"""

OLD = """
import json, sys
from weight_sharing import stages
a = json.loads(sys.argv[1])
if a["stage"] == "prepare":
    stages.prepare(a["model"], a["npz"], a["evaluation"], a["baseline"], a["layers"])
else:
    stages.validate(a["model"], a["npz"], a["candidates"], a["layers"], a["front"], a["baseline"], 0.99,
                    a["evaluation"], a["out"])
"""


def make_inputs(work: Path, calib: int, test: int, size: int) -> dict:
    """The .npz, a checkpoint, and the tables validate reads (one front point: every layer at K = 16)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    from weight_sharing.kmeans import kmeans_grid
    from weight_sharing.models import create_model, layer_records

    work.mkdir(parents=True, exist_ok=True)
    npz = work / f"split_{calib}_{test}_{size}.npz"
    if not npz.exists():
        rng = np.random.default_rng(0)
        tmp = npz.with_suffix(".tmp.npz")
        np.savez(tmp, x_calib=rng.integers(0, 256, (calib, 3, size, size), dtype=np.uint8),
                 y_calib=rng.integers(0, 10, calib),
                 x_test=rng.integers(0, 256, (test, 3, size, size), dtype=np.uint8),
                 y_test=rng.integers(0, 10, test),
                 mean=np.array([0.485, 0.456, 0.406], np.float32), std=np.array([0.229, 0.224, 0.225], np.float32))
        tmp.rename(npz)
    torch.manual_seed(0)
    model = create_model(MODEL).eval()
    ckpt = work / "model.pt"
    torch.save(model.state_dict(), ckpt)
    layers = layer_records(model, (3, size, size))
    pq.write_table(pa.Table.from_pylist(layers), work / "layers_in.parquet")
    modules = dict(model.named_modules())
    rows = []
    for i, layer in enumerate(layers):
        cb = kmeans_grid(modules[layer["name"]].weight.detach().numpy().ravel(), [16])[16]
        rows.append({"layer": layer["name"], "k": 16, "bits": 4, "codebook_size": cb.size, "inertia": cb.inertia,
                     "accuracy": 0.1, "al": 0.0, "kl": 0.0, "thresholds": cb.thresholds.tolist(),
                     "centroids": cb.centroids.tolist(), "layer_index": i, "fallback": False})
    pq.write_table(pa.Table.from_pylist(rows), work / "candidates.parquet")
    pq.write_table(pa.Table.from_pylist([{"point": 0, "k": [16] * len(layers), "choice": [0] * len(layers),
                                          "predicted": 0.0, "cr": 7.0}]), work / "front.parquet")
    return {"npz": str(npz), "model": {**MODEL, "checkpoint": str(ckpt)}, "evaluation": EVALUATION,
            "candidates": str(work / "candidates.parquet"), "front": str(work / "front.parquet"),
            "baseline": str(work / "baseline.json"), "layers": str(work / "layers.parquet"),
            "out": str(work / "validated.parquet"), "work": str(work)}


def peak_rss_mb(code: str, pythonpath: str | None, args: dict) -> tuple[float, float]:
    """(max RSS in MB, wall seconds) of one stage run in a fresh process."""
    env = dict(os.environ, OMP_NUM_THREADS="2")
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code, json.dumps(args)], env=env, cwd=args["work"])
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{args['stage']} failed")
    return usage.ru_maxrss / 1024, time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calib", type=int, default=1000)
    ap.add_argument("--test", type=int, default=10000)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--work", default="/tmp/ws-memory")
    ap.add_argument("--code", help="an older checkout (weight_sharing.stages API) to measure instead")
    args = ap.parse_args()
    inputs = make_inputs(Path(args.work), args.calib, args.test, args.size)
    size_mb = Path(inputs["npz"]).stat().st_size / 1e6
    code, path = (OLD, args.code) if args.code else (NEW, None)
    print(f"split: {args.calib} calibration + {args.test} test images of 3x{args.size}x{args.size} uint8 "
          f"({size_mb:,.0f} MB .npz); model {MODEL['arch']}; code: {args.code or 'this checkout'}")
    print("| stage | peak RSS [MB] | wall [s] |\n|---|---|---|")
    for stage in ("prepare", "validate"):
        if stage == "validate" and not Path(inputs["layers"]).exists():
            continue
        rss, wall = peak_rss_mb(code, path, {**inputs, "stage": stage})
        print(f"| {stage} | {rss:,.0f} | {wall:.1f} |")


if __name__ == "__main__":
    main()
