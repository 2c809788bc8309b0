"""Corrected tensors set on the test split instead of correcting again, checked against a finished run.

Since 0e126ce/4edca17, what the corrections give a combination on calibration (corrected biases,
re-estimated BatchNorm statistics) is kept and set when the same combination is measured on the test
split, where each combination used to take its own BatchNorm statistics pass over the calibration images.
On a run made before, this measures again, with the current code, the uniform stage (all its
references) and the first ``--points`` validated front points (calibration as refine measures them,
then test with their kept tensors), and prints the image-forwards of each and whether every measurement
column equals the run's.

    python benchmarks/corrected_tensors.py RESULTS NET CONFIG [--points 10]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results")
    ap.add_argument("net")
    ap.add_argument("config")
    ap.add_argument("--points", type=int, default=10, help="validated front points to measure again")
    args = ap.parse_args()

    import torch
    from finished_runs import finished_run  # benchmarks/, next to this script

    from weight_sharing import uniform
    from weight_sharing.evaluate import IMAGE_FORWARDS, measure_all, measure_splits, splits_for
    from weight_sharing.grid import uniform_k_values
    from weight_sharing.io import read_parquet
    from weight_sharing.models import build_model
    from weight_sharing.tables import CandidateSet

    torch.set_num_threads(1)
    run = finished_run(args.results, args.net, args.config)
    cfg, net_dir, spec, base = run.cfg, run.folder, run.spec, run.baseline
    columns = [f"{s}_{c}" for s in ("calib", "test") for c in ("accuracy", "al", "kl", "changed", "broken", "fixed")]
    report = []

    # the uniform stage, whole
    before, t = IMAGE_FORWARDS["images"], time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "uniform.parquet")
        uniform.run(spec=spec, sweeps=sorted(str(p) for p in (net_dir / "sweep").glob("*.parquet")),
                    layers=str(net_dir / "layers.parquet"), baseline=str(net_dir / "baseline.json"),
                    k_values=uniform_k_values(cfg["sweep"], cfg["uniform"]), group=int(cfg["sharing"]["group"]),
                    max_bins=int(cfg["sweep"]["max_bins"]), selection=cfg["select"]["split"], out=out)
        new = read_parquet(out).to_pylist()
    old = read_parquet(net_dir / "uniform.parquet").to_pylist()
    same = len(new) == len(old) and all(a[c] == b[c] for a, b in zip(old, new) for c in columns)
    report.append(("uniform", len(new), IMAGE_FORWARDS["images"] - before, time.perf_counter() - t, same))

    # validated points: calibration as refine measures them (tensors kept), then test with those tensors
    cands = CandidateSet.read(str(net_dir / "candidates.parquet"), str(net_dir / "layers.parquet"))
    validated_file = net_dir / "front_validated.parquet"  # absent where the run stopped before validation
    validated = read_parquet(validated_file).to_pylist()[:args.points] if validated_file.exists() else []
    books = [cands.codebooks_of(v["choice"]) for v in validated]
    model = build_model(spec.model)
    before, t = IMAGE_FORWARDS["images"], time.perf_counter()
    kept = []
    calib = measure_all(spec.evaluator("calib", cands.layer_names, model=model), books, "calibration", kept=kept)
    test = measure_splits(spec, cands.layer_names, books, base, "test", splits=("test",), model=model, tensors=kept)
    same = all(m.kl == v["calib_kl"] and m.accuracy == v["calib_accuracy"] and
               all(r[c] == v[c] for c in columns if c.startswith("test_")) for m, r, v in zip(calib, test, validated))
    report.append(("validate (with refine's calibration pass)", len(validated), IMAGE_FORWARDS["images"] - before,
                   time.perf_counter() - t, same))

    calib_images, test_images = base["calib_images"], base["test_images"]
    # before, only the BatchNorm re-estimation passed over the calibration images on another split
    batchnorm = bool(cfg["correct"].get("bn")) and any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                                                        for m in model.modules())
    other_splits = {"uniform": len(splits_for(cfg["select"]["split"])) - 1}
    print(f"{args.net}: {calib_images} calibration and {test_images} test images; before, each combination's "
          "measurement on another split than calibration " + (f"also took a BatchNorm statistics pass over the "
                                                              f"{calib_images} calibration images" if batchnorm
                                                              else "took nothing more (no BatchNorm re-estimated)"))
    print("| stage | combinations | image-forwards now | the same before | seconds now "
          "| every measurement as in the run |")
    print("|---|---|---|---|---|---|")
    for stage, n, forwards, seconds, same in report:
        extra = n * calib_images * other_splits.get(stage, 1) if batchnorm else 0
        print(f"| {stage} | {n} | {forwards:,} | {forwards + extra:,} | {seconds:.0f} | {same} |")


if __name__ == "__main__":
    main()
