"""Per-network plots and the cross-network summary table (like the paper's results table)."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .io import atomic_path, read_json, read_parquet, write_json, write_text  # noqa: E402
from .pareto import best_cr_within  # noqa: E402
from .sweep import read_sweeps  # noqa: E402

STAGES = ("prepare", "sweep", "candidates", "sample", "surrogate", "search", "validate", "uniform", "export")


def benchmark_seconds(files: list[str]) -> float:
    """Wall seconds summed over Snakemake ``benchmark:`` files (first column ``s``)."""
    total = 0.0
    for f in files:
        lines = Path(f).read_text().splitlines()
        if len(lines) < 2:
            continue
        header = lines[0].split("\t")
        total += float(lines[1].split("\t")[header.index("s")])
    return total


def plot_sensitivity(sweep_files: list[str], path, title: str) -> None:
    """AL vs K of every layer (the per-layer sensitivity the candidates come from)."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    sweeps = read_sweeps(sweep_files)
    for layer, rows in sweeps.items():
        ax.plot([r["k"] for r in rows], [100 * r["al"] for r in rows], lw=1, label=layer)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("K (shared values)")
    ax.set_ylabel("accuracy loss (pp, calibration)")
    ax.set_title(f"{title}: one layer shared at a time")
    _finish(fig, ax, path, legend=len(sweeps) <= 12)


def plot_fronts(predicted, validated, uniform, baseline: dict, bound: float, path, title: str) -> None:
    """Predicted vs validated fronts, with the uniform-K reference and the accuracy bound."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.scatter(predicted.column("cr").to_numpy(), 100 * predicted.column("predicted_al").to_numpy(),
               s=10, marker="x", color="grey", label="predicted (surrogate)")
    v = validated
    ax.scatter(v.column("cr").to_numpy(), 100 * v.column("calib_al").to_numpy(), s=10, color="tab:orange",
               alpha=0.6, label="measured, calibration")
    on = np.asarray(v.column("on_front").to_pylist(), dtype=bool)
    cr, tal = v.column("cr").to_numpy(), 100 * v.column("test_al").to_numpy()
    ax.scatter(cr[~on], tal[~on], s=10, color="tab:blue", alpha=0.3)
    order = np.argsort(cr[on])
    ax.plot(cr[on][order], tal[on][order], "o-", ms=4, color="tab:blue", label="validated front, test")
    ucr, ual = uniform.column("cr").to_numpy(), 100 * uniform.column("test_al").to_numpy()
    uorder = np.argsort(ucr, kind="stable")
    ax.plot(ucr[uorder], ual[uorder], "s--", ms=4, color="tab:red", lw=0.8, label="uniform K, test")
    ax.axhline(100 * (1 - bound) * baseline["test_accuracy"], color="k", lw=0.8, ls=":",
               label=f"bound ({bound:.0%} of baseline)")
    ax.set_xlabel("compression rate")
    ax.set_ylabel("accuracy loss (pp)")
    ymax = max(5.0, 300 * (1 - bound) * baseline["test_accuracy"])
    ax.set_ylim(min(-0.5, float(np.min(tal)) - 0.2) if len(tal) else -0.5, ymax)
    ax.set_title(title)
    _finish(fig, ax, path)


def _finish(fig, ax, path, legend: bool = True) -> None:
    """Legend, grid, and the PNG written atomically."""
    if legend:
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def network_summary(net: str, category: str, bound: float, baseline_json: str, layers_parquet: str,
                    surrogate_json: str, validated_parquet: str, uniform_parquet: str, export_parquet: str,
                    stage_benchmarks: dict[str, list[str]]) -> dict:
    """One row of the summary: the paper's table columns plus the uniform reference and stage times."""
    baseline = read_json(baseline_json)
    layers = read_parquet(layers_parquet)
    surrogate = read_json(surrogate_json)
    v = read_parquet(validated_parquet)
    u = read_parquet(uniform_parquet)
    base = baseline["test_accuracy"]
    vcr, vacc = v.column("cr").to_numpy(), v.column("test_accuracy").to_numpy()
    ucr, uacc = u.column("cr").to_numpy(), u.column("test_accuracy").to_numpy()
    within = vacc >= bound * base - 1e-12
    best = best_cr_within(vcr, vacc, bound * base)
    ubest = best_cr_within(ucr, uacc, bound * base)
    row = {
        "network": net, "category": category, "bound": bound,
        "layers": layers.num_rows,
        "weight_mb": float(np.sum(layers.column("weights").to_numpy()) * 4 / 1e6),
        "top1_test": base, "top1_calib": baseline["calib_accuracy"],
        "test_images": baseline["test_images"], "calib_images": baseline["calib_images"],
        "best_cr": best,
        "best_cr_test_al": float(base - vacc[within][np.argmax(vcr[within])]) if within.any() else None,
        "cr_min_in_bound": float(vcr[within].min()) if within.any() else None,
        "cr_max_in_bound": float(vcr[within].max()) if within.any() else None,
        "uniform_best_cr": ubest,
        "uniform_best_k": int(u.column("k").to_numpy()[uacc >= bound * base - 1e-12][
            np.argmax(ucr[uacc >= bound * base - 1e-12])]) if ubest is not None else None,
        "gain_over_uniform": (best / ubest) if best and ubest else None,
        "front_points": int(np.sum(v.column("on_front").to_numpy(zero_copy_only=False))),
        "validated_points": v.num_rows,
        "surrogate_r2": surrogate["r2_heldout"], "surrogate_rmse": surrogate["rmse_heldout"],
    }
    for level in (0.99, 0.98):
        tag = f"{round(level * 100)}"
        row[f"best_cr_{tag}"] = best_cr_within(vcr, vacc, level * base)
        row[f"uniform_cr_{tag}"] = best_cr_within(ucr, uacc, level * base)
    exported = read_parquet(export_parquet).to_pylist()
    first = exported[0] if exported else {}
    for column in ("target", "meets_target", "cr", "file_bytes", "packed_shared_bytes", "cr_on_disk",
                   "cr_huffman", "file_ratio"):
        row[f"export_{column}"] = first.get(column)
    for column in ("shared_float_bytes", "checkpoint_bytes"):
        row[column] = first.get(column)
    total = 0.0
    for stage in STAGES:
        s = benchmark_seconds(stage_benchmarks.get(stage, []))
        row[f"time_{stage}_s"] = s
        total += s
    row["time_total_s"] = total
    return row


def network_report(net: str, category: str, bound: float, baseline_json: str, layers_parquet: str,
                   sweep_files: list[str], surrogate_json: str, predicted_parquet: str,
                   validated_parquet: str, uniform_parquet: str, export_parquet: str,
                   stage_benchmarks: dict[str, list[str]], out_sensitivity: str, out_fronts: str,
                   out_summary: str) -> dict:
    baseline = read_json(baseline_json)
    plot_sensitivity(sweep_files, out_sensitivity, net)
    plot_fronts(read_parquet(predicted_parquet), read_parquet(validated_parquet), read_parquet(uniform_parquet),
                baseline, bound, out_fronts, f"{net} ({category}, bound {bound:.0%})")
    row = network_summary(net, category, bound, baseline_json, layers_parquet, surrogate_json,
                          validated_parquet, uniform_parquet, export_parquet, stage_benchmarks)
    write_json(row, out_summary)
    return row


def _fmt(v, pct=False, digits=2):
    if v is None:
        return "—"
    if pct:
        return f"{100 * v:.{digits}f}"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def summary_markdown(rows: list[dict]) -> str:
    head = ("| network | category | bound | layers | weights [MB] | top-1 test [%] | best CR in bound "
            "| its test AL [pp] | CR range in bound | uniform best CR (K) | gain | CR @99% / @98% "
            "| uniform CR @99% / @98% | front points | surrogate R² (RMSE pp) | time [s] |")
    lines = ["# Weight-sharing exploration summary", "",
             "Best CR: highest compression rate among validated points whose **test** top-1 stays at or "
             "above bound x baseline. Uniform: every layer the same K. Gain: best CR / uniform best CR. "
             "Surrogate R²: on held-out samples. Time: sum of the stages' job wall times.", "",
             head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        rng = (f"{r['cr_min_in_bound']:.2f}–{r['cr_max_in_bound']:.2f}"
               if r["cr_min_in_bound"] is not None else "—")
        ub = (f"{r['uniform_best_cr']:.2f} (K={r['uniform_best_k']})" if r["uniform_best_cr"] else "—")
        lines.append(
            f"| {r['network']} | {r['category']} | {r['bound']:.0%} | {r['layers']} | {r['weight_mb']:.3f} "
            f"| {_fmt(r['top1_test'], pct=True)} | {_fmt(r['best_cr'])} | {_fmt(r['best_cr_test_al'], pct=True)} "
            f"| {rng} | {ub} | {_fmt(r['gain_over_uniform'])}x "
            f"| {_fmt(r['best_cr_99'])} / {_fmt(r['best_cr_98'])} "
            f"| {_fmt(r['uniform_cr_99'])} / {_fmt(r['uniform_cr_98'])} | {r['front_points']} "
            f"| {r['surrogate_r2']:.3f} ({100 * r['surrogate_rmse']:.2f}) | {r['time_total_s']:.0f} |")
    lines += ["", "## Exported model (best CR within the bound)", "",
              "Sizes measured on disk. Shared float32: the shared layers' weights as float32 (4 bytes each); "
              "packed: their indices at ceil(log2 K) bits plus codebooks, as stored in the export; file: the whole "
              "export (with biases, normalisation and metadata) against the whole source checkpoint; Huffman: the "
              "indices entropy-coded per layer (computed, not stored).", "",
              "| network | file | CR (formula) | shared float32 [B] | packed [B] | CR on disk | CR Huffman "
              "| export file [B] | checkpoint file [B] | file ratio |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("export_file_bytes") is None:
            continue
        lines.append(f"| {r['network']} | loss_{r['export_target']}x.safetensors | {_fmt(r['export_cr'])} "
                     f"| {r['shared_float_bytes']} | {r['export_packed_shared_bytes']} | {_fmt(r['export_cr_on_disk'])} "
                     f"| {_fmt(r['export_cr_huffman'])} | {r['export_file_bytes']} | {_fmt(r['checkpoint_bytes'])} "
                     f"| {_fmt(r['export_file_ratio'])} |")
    lines += ["", "## Stage times [s]", ""]
    stage_head = "| network | " + " | ".join(STAGES) + " | total |"
    lines += [stage_head, "|" + "---|" * (len(STAGES) + 2)]
    for r in rows:
        lines.append(f"| {r['network']} | " + " | ".join(f"{r[f'time_{s}_s']:.1f}" for s in STAGES)
                     + f" | {r['time_total_s']:.1f} |")
    return "\n".join(lines) + "\n"


def write_summary(summary_jsons: list[str], out_md: str, out_csv: str) -> None:
    rows = [read_json(f) for f in summary_jsons]
    write_text(summary_markdown(rows), out_md)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0].keys()))
    writer.writeheader()
    for r in rows:
        writer.writerow(r)
    write_text(buf.getvalue(), out_csv)
