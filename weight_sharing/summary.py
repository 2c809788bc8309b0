"""Stage summary: one row per network, as Markdown and CSV (like the paper's results table)."""

from __future__ import annotations

import csv
import io

from .bound import SPLIT_Z_WARNING
from .io import read_json, write_text
from .job import STAGES


def _surrogate_rmse(row: dict) -> str:
    """The surrogate's held-out RMSE in its target's unit: pp of accuracy loss, or KL."""
    if row.get("surrogate_target", "al") == "al":
        return f"{100 * row['surrogate_rmse']:.2f} pp; al"
    return f"{row['surrogate_rmse']:.3g}; kl"


def _fmt(v, pct=False, digits=2):
    if v is None:
        return "—"
    if pct:
        return f"{100 * v:.{digits}f}"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _flag(ok) -> str:
    return "" if ok is None or ok else " (below the bound on test)"


def _draw_flag(z) -> str:
    if z is None or abs(z) <= SPLIT_Z_WARNING:
        return ""
    return f" (calibration draw unlike test: {z:+.1f} standard errors)"


def _family(row: dict) -> str:
    """The row's select.family, with the failures the ascending walk allows where there are any."""
    failures = row.get("failures") or 0
    return f"{row['family']}, {failures} failure{'s' * (failures > 1)}" if failures else row["family"]


def summary_markdown(rows: list[dict]) -> str:
    head = ("| network | category | bound | layers | weights [MB] | baseline top-1 calib / test [%] "
            "| best CR in bound "
            "| its AL calib / test [pp] | CR range in bound | uniform CR per tensor / per channel (K) "
            "| gain over the better uniform | CR @99% / @98% "
            "| uniform CR @99% / @98% | oracle CR, selected on test | front points | surrogate R² (RMSE; target) "
            "| time [s] |")
    lines = ["# Weight-sharing exploration summary", "",
             "Every CR is **chosen without the test split**: the highest CR whose calibration loss meets the bound "
             "by the test its row names (one-sided confidence; interval: exact, an exact paired test against the "
             "baseline on the same images, or normal, its normal approximation; family: ascending, the points "
             "tested from the lowest CR up, stopping at the first that fails, so that the confidence holds for the "
             "chosen point, or, where it says 'n failures', at the n + 1-th, each point then tested at a share "
             "1 / (n + 1) of the error rate; bonferroni; or none, each point alone), or, where the row says "
             "'unlabelled', whose "
             "fraction of changed predictions on the unlabelled selection images does (top-1 can fall by at most "
             "that fraction). Its test loss is then reported as "
             "measured, flagged when the test accuracy falls below the "
             "bound. Uniform: every layer the same K, one codebook per tensor or one per group of output channels "
             "(sharing.group), with the same corrections, each chosen the same way. Gain: best CR / the better "
             "uniform CR (named). Oracle: "
             "the highest CR whose *test* accuracy meets the bound, an optimistic figure selected on test, for "
             "comparison only. Baseline top-1 on both splits: more than "
             f"{SPLIT_Z_WARNING:g} standard errors apart (flagged), the calibration draw is unlike the test "
             "images and the choices made on it are less to be trusted. Surrogate R²: on held-out samples. "
             "Time: sum of the stages' job wall times.", "",
             head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        rng = (f"{r['cr_min_in_bound']:.2f}–{r['cr_max_in_bound']:.2f}"
               if r["cr_min_in_bound"] is not None else "—")
        ub = " / ".join(f"{r[f'uniform_{g}_cr']:.2f} (K={r[f'uniform_{g}_k']})"
                        f"{_flag(r[f'uniform_{g}_test_meets_bound'])}" if r[f"uniform_{g}_cr"] else "—"
                        for g in ("tensor", "channel"))
        gain = (f"{_fmt(r['gain_over_uniform'])}x (per {r['uniform_best_granularity']})"
                if r["gain_over_uniform"] else "—")
        al = (f"{_fmt(r['best_cr_calib_al'], pct=True)} / {_fmt(r['best_cr_test_al'], pct=True)}"
              f"{_flag(r['best_cr_test_meets_bound'])}")
        lines.append(
            f"| {r['network']} | {r['category']} | {r['bound']:.0%} (conf. {r['confidence']:g}, "
            f"{'unlabelled' if r.get('selection') == 'unlabelled' else r['interval']}, {_family(r)}) | {r['layers']} "
            f"| {r['weight_mb']:.3f} | {_fmt(r['top1_calib'], pct=True)} / {_fmt(r['top1_test'], pct=True)}"
            f"{_draw_flag(r.get('baseline_split_z'))} "
            f"| {_fmt(r['best_cr'])} | {al} "
            f"| {rng} | {ub} | {gain} "
            f"| {_fmt(r['best_cr_99'])} / {_fmt(r['best_cr_98'])} "
            f"| {_fmt(r['uniform_cr_99'])} / {_fmt(r['uniform_cr_98'])} | {_fmt(r['oracle_cr_selected_on_test'])} "
            f"| {r['front_points']} | {r['surrogate_r2']:.3f} ({_surrogate_rmse(r)}) "
            f"| {r['time_total_s']:.0f} |")
    lines += ["", "## Refinement rounds (calibration only)", "",
              "Each round measures the predicted front on calibration, adds it to the surrogate's data, refits "
              "and searches again; R² is the surrogate's held-out score before the round's search.", ""]
    lines += [f"- {r['network']}: {r.get('refine_rounds', 'off')}" for r in rows]
    lines += ["", "## Exported model (the first export target, chosen as above)", "",
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
                     f"| {r['shared_float_bytes']} | {r['export_packed_shared_bytes']} "
                     f"| {_fmt(r['export_cr_on_disk'])} "
                     f"| {_fmt(r['export_cr_huffman'])} | {r['export_file_bytes']} | {_fmt(r['checkpoint_bytes'])} "
                     f"| {_fmt(r['export_file_ratio'])} |")
    lines += ["", "## Export formats (the first export target)", "",
              "Every format holds the same chosen point. Bits per weight: the shared layers' indices and codebooks "
              "as the format stores them (Core ML: LUTs padded to 2^bits entries, float16 unless "
              "export.coreml.lut_dtype is float32; ONNX: indices in uint4/uint8/uint16, float32 codebooks), over "
              "their weights; CR against float32 and against float16 weights (Core ML's convention). CR at the "
              "format's widths: the formula's CR with each layer's index widened to a width the runtime runs "
              "(the widened layers are listed). Differing: test predictions of the file against the validated "
              "model (Core ML: of the decoded weights, run in PyTorch).", "",
              "| network | format | file | file [B] | bits / shared weight | CR vs float32 | CR vs float16 "
              "| CR at the format's widths | widened layers | differing | verified |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for f in r.get("export_formats") or []:
            def col(c, f=f, r=r):
                return r.get(f"export_{f}_{c}")
            widened = col("widened_layers") or []
            lines.append(f"| {r['network']} | {f} | {col('file')} | {col('file_bytes')} "
                         f"| {_fmt(col('bits_per_weight'), digits=3)} | {_fmt(col('cr_float32'))} "
                         f"| {_fmt(col('cr_float16'))} | {_fmt(col('cr_at_format_widths'))} "
                         f"| {', '.join(widened) if widened else 'none'} | {col('predictions_differing')} "
                         f"| {col('verified')} |")
    lines += ["", "## Stage times [s]", ""]
    stage_head = "| network | " + " | ".join(STAGES) + " | total |"
    lines += [stage_head, "|" + "---|" * (len(STAGES) + 2)]
    for r in rows:
        lines.append(f"| {r['network']} | " + " | ".join(f"{r[f'time_{s}_s']:.1f}" for s in STAGES)
                     + f" | {r['time_total_s']:.1f} |")
    return "\n".join(lines) + "\n"


def run(*, summaries: list[str], out_md: str, out_csv: str) -> None:
    """The networks' summary rows (report's ``summary.json`` files) as one Markdown and one CSV table."""
    rows = [read_json(f) for f in summaries]
    write_text(summary_markdown(rows), out_md)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0].keys()))
    writer.writeheader()
    for r in rows:
        writer.writerow(r)
    write_text(buf.getvalue(), out_csv)
