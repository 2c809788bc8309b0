"""What a finished run cost, stage by stage: network evaluations and images, next to the job wall times.

Wall times depend on the machine and on what else ran beside the jobs; the number of
images pushed through the network does not. For every network under each results
folder, counts the evaluations each evaluating stage made (sweep: one per swept K, two where the
refit centroid values were measured too (``refit_kl``, ``correct.centroids``);
sample: one per combination; refine: one per front point measured; validate and
uniform: one per point on each split) and the images they measured, and, from the jobs'
logs (``job.IMAGE_FORWARDS_LOG``, written since the jobs count them), every image pushed through the
network, the BatchNorm re-estimation passes and the references included; it prints them with
the stage's summed job wall time (Snakemake benchmark files).

    python benchmarks/cost.py results_benchmark results_previous ...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pyarrow.parquet as pq

from weight_sharing.job import IMAGE_FORWARDS_LOG, STAGES
from weight_sharing.report import benchmark_seconds, stage_of


def evaluations(net: Path) -> dict[str, tuple[int, int]]:
    """Stage -> (evaluations, images)."""
    base = json.loads((net / "baseline.json").read_text())
    calib, test = base["calib_images"], base["test_images"]
    sweep = 0
    for f in (net / "sweep").glob("*.parquet"):
        rows = pq.read_metadata(f).num_rows
        refit = (rows - pq.read_table(f, columns=["refit_kl"]).column(0).null_count
                 if "refit_kl" in pq.read_schema(f).names else 0)
        sweep += rows + refit
    samples = sum(pq.read_metadata(f).num_rows for f in (net / "samples").glob("*.parquet"))
    out = {"sweep": (sweep, sweep * calib), "sample": (samples, samples * calib)}
    if (net / "refine.json").exists():
        refined = sum(r["measured"] for r in json.loads((net / "refine.json").read_text())["rounds"])
        out["refine"] = (refined, refined * calib)
    for stage, table in (("validate", "front_validated.parquet"), ("uniform", "uniform.parquet")):
        n = pq.read_metadata(net / table).num_rows
        out[stage] = (2 * n, n * (calib + test))
    return out


def logged_forwards(net: Path) -> dict[str, int]:
    """Stage -> image-forwards summed over its jobs' logs (stages whose logs predate the count: absent)."""
    out: dict[str, int] = {}
    for stage in STAGES:
        logs = [net / "logs" / f"{stage}.log", *(net / "logs" / stage).glob("*.log")]
        counts = [int(line.rsplit(" ", 1)[1]) for f in logs if f.exists()
                  for line in f.read_text().splitlines() if IMAGE_FORWARDS_LOG in line]
        if counts:
            out[stage] = sum(counts)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="+")
    args = ap.parse_args()
    print("| run | network | stage | evaluations | images measured | image-forwards (logged) | job wall time [s] |")
    print("|---|---|---|---|---|---|---|")
    for results in args.results:
        for net in sorted(p.parent for p in Path(results).glob("*/baseline.json")):
            seconds = dict.fromkeys(STAGES, 0.0)
            for f in (net / "benchmarks").rglob("*.tsv"):
                stage = stage_of(str(f))
                if stage in seconds:
                    seconds[stage] += benchmark_seconds([str(f)])
            counts, forwards = evaluations(net), logged_forwards(net)
            total_images = sum(images for _, images in counts.values())
            for stage in STAGES:
                evals, images = counts.get(stage, (0, 0))
                logged = f"{forwards[stage]:,}" if stage in forwards else "—"
                print(f"| {Path(results).name} | {net.name} | {stage} | {evals:,} | {images:,} | {logged} "
                      f"| {seconds[stage]:.1f} |")
            total_logged = f"**{sum(forwards.values()):,}**" if forwards else "—"
            print(f"| {Path(results).name} | {net.name} | **total** | | **{total_images:,}** | {total_logged} "
                  f"| **{sum(seconds.values()):.1f}** |")


if __name__ == "__main__":
    main()
