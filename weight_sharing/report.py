"""Stage report: per-network plots and the network's row of the summary (like the paper's results table)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .bound import SelectRule, allowed_loss, best_within, choose, meets_bound, split_difference_z  # noqa: E402
from .io import atomic_path, read_json, read_parquet, write_json  # noqa: E402
from .job import STAGES  # noqa: E402
from .tables import UNIFORM_GRANULARITIES, read_sweeps  # noqa: E402

# per export format, the columns of the first target's file the summary shows
FORMAT_COLUMNS = ("file", "file_bytes", "bits_per_weight", "cr_float32", "cr_float16", "cr_at_format_widths",
                  "widened_layers", "predictions_differing", "max_logit_difference", "verified")


def stage_of(benchmark_file: str) -> str:
    """The stage a benchmark file times: ``.../benchmarks/{stage}.tsv`` or ``.../benchmarks/{stage}/{job}.tsv``
    (judged from the end of the path: the results folder may itself lie under a folder named benchmarks)."""
    path = Path(benchmark_file)
    if path.parent.name == "benchmarks":
        return path.stem
    if path.parent.parent.name == "benchmarks":
        return path.parent.name
    raise ValueError(f"{benchmark_file!r} is not a benchmark file of a stage (.../benchmarks/STAGE[/JOB].tsv)")


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
    """AL vs K of every layer, one codebook per tensor (the per-layer sensitivity the candidates come from)."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    sweeps = read_sweeps(sweep_files)
    for layer, rows in sweeps.items():
        rows = [r for r in rows if (r.get("groups") or 1) == 1]
        ax.plot([r["k"] for r in rows], [100 * r["al"] for r in rows], lw=1, label=layer)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("K (shared values)")
    ax.set_ylabel("accuracy loss (pp, calibration)")
    ax.set_title(f"{title}: one layer shared at a time")
    _finish(fig, ax, path, legend=len(sweeps) <= 12)


def plot_fronts(predicted, validated, uniform, baseline: dict, bound: float, path, title: str,
                chosen=None, chosen_on: str = "calibration", target: str = "al") -> None:
    """Predicted vs validated fronts, the uniform-K references (per tensor, per channel group), the accuracy
    bound, and the point chosen on ``chosen_on`` (``chosen``: its ``point`` number in the validated table;
    a K vector alone is ambiguous, two points may differ only in their codebook counts) at its test loss.
    The predicted front is drawn where the surrogate predicts the accuracy loss (``target`` al); a predicted
    KL has no place on this axis."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if target == "al":
        ax.scatter(predicted.column("cr").to_numpy(), 100 * predicted.column("predicted").to_numpy(),
                   s=10, marker="x", color="grey", label="predicted (surrogate)")
    v = validated
    ax.scatter(v.column("cr").to_numpy(), 100 * v.column("calib_al").to_numpy(), s=10, color="tab:orange",
               alpha=0.6, label="measured, calibration")
    on = np.asarray(v.column("on_front").to_pylist(), dtype=bool)
    cr, tal = v.column("cr").to_numpy(), 100 * v.column("test_al").to_numpy()
    ax.scatter(cr[~on], tal[~on], s=10, color="tab:blue", alpha=0.3)
    order = np.argsort(cr[on])
    ax.plot(cr[on][order], tal[on][order], "o-", ms=4, color="tab:blue", label="validated front, test")
    granularity = uniform.column("granularity").to_pylist()
    for name, marker, color in (("tensor", "s--", "tab:red"), ("channel", "^--", "tab:purple")):
        sel = np.array([g == name for g in granularity], dtype=bool)
        ucr, ual = uniform.column("cr").to_numpy()[sel], 100 * uniform.column("test_al").to_numpy()[sel]
        if len(ucr):
            uorder = np.argsort(ucr, kind="stable")
            ax.plot(ucr[uorder], ual[uorder], marker, ms=4, color=color, lw=0.8,
                    label=f"uniform K per {name}, test")
    ax.axhline(100 * allowed_loss(baseline["test_accuracy"], bound), color="k", lw=0.8, ls=":",
               label=f"bound ({bound:.0%} of baseline)")
    ids = v.column("point").to_pylist()
    if chosen is not None and chosen in ids:
        i = ids.index(chosen)
        ax.scatter([cr[i]], [tal[i]], s=160, marker="*", color="gold", edgecolor="k", zorder=5,
                   label=f"chosen on {chosen_on}: CR {cr[i]:.2f}, test AL {tal[i]:.2f} pp")
    ax.set_xlabel("compression rate")
    ax.set_ylabel("accuracy loss (pp)")
    ymax = max(5.0, 300 * allowed_loss(baseline["test_accuracy"], bound))
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


def choices(validated: list[dict], uniform: list[dict], baseline: dict, bound: float, rule: SelectRule) -> dict:
    """Every point the report names, chosen by ``rule`` (on the calibration or the unlabelled selection
    split; and the test-selected oracle, labelled)."""
    out = {"best": choose(validated, baseline, bound, rule),
           "uniform": better_uniform(uniform, baseline, bound, rule),
           "oracle": best_within([v["cr"] for v in validated],
                                 meets_bound([v["test_accuracy"] for v in validated], baseline["test_accuracy"],
                                             bound))}
    for granularity in UNIFORM_GRANULARITIES:
        out[f"uniform_{granularity}"] = choose_uniform(uniform, granularity, baseline, bound, rule)
    for level in (0.99, 0.98):
        out[f"best_{round(level * 100)}"] = choose(validated, baseline, level, rule)
        out[f"uniform_{round(level * 100)}"] = better_uniform(uniform, baseline, level, rule)
    return out


def choose_uniform(uniform: list[dict], granularity: str, baseline: dict, bound: float, rule: SelectRule) -> int | None:
    """The row of ``uniform`` chosen by ``rule`` among the references of one granularity (each its own family:
    a user tries per tensor or per channel)."""
    rows = [i for i, r in enumerate(uniform) if r["granularity"] == granularity]
    pick = choose([uniform[i] for i in rows], baseline, bound, rule)
    return None if pick is None else rows[pick]


def better_uniform(uniform: list[dict], baseline: dict, bound: float, rule: SelectRule) -> int | None:
    """The better of the uniform references: the higher CR of the two granularities' choices. Not one choice
    over both in a single ascending order, which stops at the first failure of either and can report a
    reference below what either granularity reaches on its own."""
    picks = [i for g in UNIFORM_GRANULARITIES if (i := choose_uniform(uniform, g, baseline, bound, rule)) is not None]
    return max(picks, key=lambda i: uniform[i]["cr"], default=None)


def network_summary(net: str, category: str, bound: float, rule: SelectRule, baseline_json: str,
                    layers_parquet: str, surrogate_json: str, validated_parquet: str, uniform_parquet: str,
                    export_parquet: str, benchmark_files: list[str]) -> dict:
    """One row of the summary: the paper's table columns plus the uniform reference and stage times.

    Every CR is chosen on calibration, or on the unlabelled selection images, by ``rule``; its test
    accuracy is then reported as
    measured, and ``*_test_meets_bound`` says whether it holds there. ``oracle_cr_selected_on_test``
    is the highest CR whose *test* accuracy meets the bound: a selected, optimistic figure, shown
    only for comparison.
    """
    baseline = read_json(baseline_json)
    layers = read_parquet(layers_parquet)
    surrogate = read_json(surrogate_json)
    v = read_parquet(validated_parquet).to_pylist()
    u = read_parquet(uniform_parquet).to_pylist()
    base = baseline["test_accuracy"]
    pick = choices(v, u, baseline, bound, rule)

    def at(rows, i, key):
        return None if i is None else rows[i][key]

    best, ubest = at(v, pick["best"], "cr"), at(u, pick["uniform"], "cr")
    ok = [x for x in v if x["selectable"]]
    row = {
        "network": net, "category": category, "bound": bound, "confidence": rule.confidence, "selection": rule.split,
        "interval": rule.interval, "family": rule.family, "failures": rule.failures,
        "layers": layers.num_rows,
        "weight_mb": float(np.sum(layers.column("weights").to_numpy()) * 4 / 1e6),
        "top1_test": base, "top1_calib": baseline["calib_accuracy"],
        "test_images": baseline["test_images"], "calib_images": baseline["calib_images"],
        "baseline_split_z": split_difference_z(baseline["calib_accuracy"], baseline["calib_images"], base,
                                               baseline["test_images"]),
        "best_cr": best, "best_point": at(v, pick["best"], "point"), "best_k": at(v, pick["best"], "k"),
        "best_groups": at(v, pick["best"], "groups"),
        "best_cr_calib_al": at(v, pick["best"], "calib_al"),
        "best_cr_test_al": at(v, pick["best"], "test_al"),
        "best_cr_test_meets_bound": at(v, pick["best"], "test_within_bound"),
        "cr_min_in_bound": min((x["cr"] for x in ok), default=None),
        "cr_max_in_bound": max((x["cr"] for x in ok), default=None),
        "uniform_best_cr": ubest, "uniform_best_k": at(u, pick["uniform"], "k"),
        "uniform_best_granularity": at(u, pick["uniform"], "granularity"),
        "uniform_best_cr_test_al": at(u, pick["uniform"], "test_al"),
        "uniform_best_cr_test_meets_bound": (None if pick["uniform"] is None else bool(
            meets_bound(u[pick["uniform"]]["test_accuracy"], base, bound))),
        "gain_over_uniform": (best / ubest) if best and ubest else None,
        "oracle_cr_selected_on_test": at(v, pick["oracle"], "cr"),
        "front_points": sum(bool(x["on_front"]) for x in v),
        "validated_points": len(v),
        "surrogate_r2": surrogate["r2_heldout"], "surrogate_rmse": surrogate["rmse_heldout"],
        "surrogate_target": surrogate.get("target", "al"),
        "surrogate_spearman": surrogate.get("spearman_heldout"),
    }
    for granularity in UNIFORM_GRANULARITIES:
        i = pick[f"uniform_{granularity}"]
        row[f"uniform_{granularity}_cr"], row[f"uniform_{granularity}_k"] = at(u, i, "cr"), at(u, i, "k")
        row[f"uniform_{granularity}_test_meets_bound"] = (None if i is None else bool(
            meets_bound(u[i]["test_accuracy"], base, bound)))
    for level in (99, 98):
        row[f"best_cr_{level}"] = at(v, pick[f"best_{level}"], "cr")
        row[f"best_cr_{level}_test_al"] = at(v, pick[f"best_{level}"], "test_al")
        row[f"uniform_cr_{level}"] = at(u, pick[f"uniform_{level}"], "cr")
    exported = read_parquet(export_parquet).to_pylist()
    first = exported[0] if exported else {}  # the packed reference file of the first target
    row["export_formats"] = [r["format"] for r in exported if r["target"] == first.get("target")]
    for r in exported:
        if r["target"] == first.get("target"):
            for column in FORMAT_COLUMNS:
                row[f"export_{r['format']}_{column}"] = r.get(column)
    for column in ("target", "meets_target", "test_meets_target", "cr", "file_bytes", "packed_shared_bytes",
                   "cr_on_disk", "cr_huffman", "file_ratio"):
        row[f"export_{column}"] = first.get(column)
    for column in ("shared_float_bytes", "checkpoint_bytes"):
        row[column] = first.get(column)
    seconds = dict.fromkeys(STAGES, 0.0)
    for f in benchmark_files:
        seconds[stage_of(f)] += benchmark_seconds([f])
    for stage in STAGES:
        row[f"time_{stage}_s"] = seconds[stage]
    row["time_total_s"] = float(sum(seconds.values()))
    return row


def run(*, net: str, category: str, bound: float, select: dict, baseline: str, layers: str, sweeps: list[str],
        surrogate: str, predicted: str, refine: str, validated: str, uniform: str, export: str,
        benchmarks: list[str], out_sensitivity: str, out_fronts: str, out_summary: str) -> dict:
    """The network's plots and summary row; every point named is chosen by the ``select`` section."""
    rule = SelectRule.from_config(select)
    base = read_json(baseline)
    plot_sensitivity(sweeps, out_sensitivity, net)
    row = network_summary(net, category, bound, rule, baseline, layers, surrogate, validated, uniform, export,
                          benchmarks)
    rounds = read_json(refine)["rounds"]
    row["refine_rounds"] = "; ".join(
        f"round {r['round']}: R² {r['r2_heldout']:.3f}, best CR "
        + (f"{r['best_calib_cr']:.2f}" if r["best_calib_cr"] else "none") for r in rounds) or "off"
    plot_fronts(read_parquet(predicted), read_parquet(validated), read_parquet(uniform), base, bound, out_fronts,
                f"{net} ({category}, bound {bound:.0%})", chosen=row["best_point"],
                chosen_on="unlabelled images" if rule.split == "unlabelled" else "calibration",
                target=read_json(surrogate).get("target", "al"))
    write_json(row, out_summary)
    return row
