"""Stage export: the chosen validated points written in every configured format, each verified.

Per export target: choose the point on calibration (:func:`choose_point`), apply its codebooks and
the corrections to the in-memory model validation measured, and hand that one point to every format
(``formats.EXPORT_FORMATS``: the packed reference file first, then ``export.formats``), whose
exporter writes the file, verifies what it wrote and returns its row; the stage adds the size
columns as the field reports them (:func:`size_columns`) and, for a format whose runtime lacks an
index width the point uses, which layers were widened and the CR that cost.
"""
from __future__ import annotations

import copy
import logging
from pathlib import Path

import numpy as np

from . import __version__
from .bound import SelectRule, choose, loosened, meets_bound
from .compression import FLOAT_BITS
from .evaluate import EvaluationSpec
from .formats import ExportPoint, export_formats, stored_index_bits
from .io import read_json, read_parquet, write_parquet
from .models import architecture, build_model, file_sha256
from .tables import CandidateSet

log = logging.getLogger(__name__)

# columns only the packed format fills (null for the others): its bytes on disk and the entropy-coded figure
PACKED_ONLY = ("index_bytes", "codebook_bytes", "packed_shared_bytes", "cr_on_disk", "huffman_shared_bytes",
               "cr_huffman")

# select.split -> the column whose lowest value marks the point exported when none meets a target
FALLBACK_ORDER = {"calib": "calib_al", "unlabelled": "select_changed"}


def choose_point(validated: list[dict], baseline: dict, bound: float, target: float,
                 rule: SelectRule) -> tuple[dict, bool]:
    """Target t: the highest-CR point whose loss, by ``rule``, is at most t x the bound's allowed loss
    ((1 - bound) x baseline), judged on ``rule.split`` (the labelled calibration split, or the changed
    predictions on the unlabelled selection split); if none is, the point closest to the baseline by the
    same rule (the lowest calibration loss, or the fewest changed selection predictions), flagged (False).
    The test split is measured and reported, never used to choose."""
    best = choose(validated, baseline, loosened(bound, target), rule)
    if best is not None:
        return validated[best], True
    closest = FALLBACK_ORDER[rule.split]
    return min(validated, key=lambda v: (v[closest], -v["cr"])), False



def size_columns(row: dict, shared_weights: int, checkpoint_bytes: int | None) -> dict:
    """Sizes as the field reports them: bits per weight of the shared layers as stored (indices and
    codebooks), CR against float32 and against float16 weights (Core ML's convention), the whole file
    against the source checkpoint."""
    stored = row["index_bits"] + row["codebook_bits"]
    return {"bits_per_weight": stored / shared_weights, "cr_float32": FLOAT_BITS * shared_weights / stored,
            "cr_float16": 16 * shared_weights / stored,
            "file_ratio": (checkpoint_bytes / row["file_bytes"]) if checkpoint_bytes else None}


def cr_at_widths(cands: CandidateSet, choice, allowed: tuple[int, ...] | None) -> float:
    """The formula's CR of a choice with each index widened to the smallest width in ``allowed`` (a layer
    no allowed width holds counts dense, float32)."""
    if allowed is None:
        return float(cands.compression_rates(np.asarray(choice)[None])[0])
    k, groups = cands.gather(cands.k, np.asarray(choice)), cands.gather(cands.groups, np.asarray(choice))
    bits = 0
    for w, g, kk in zip(cands.n_weights, groups, k):
        width = stored_index_bits(kk, allowed)
        # no width the runtime runs holds the codebook: the layer is stored dense
        bits += int(w) * FLOAT_BITS if width is None else int(w) * width + int(g) * int(kk) * FLOAT_BITS
    return float(cands.n_weights.sum() * FLOAT_BITS / bits)


def run(*, spec: EvaluationSpec, candidates: str, layers: str, validated: str, baseline: str, bound: float,
        select: dict, export: dict, out_files: list[str], out_table: str) -> None:
    """Write the point chosen for each of ``export.targets`` in every format (packed first, then
    ``export.formats``); ``out_files``: target-major, in that format order."""
    targets, rule = export["targets"], SelectRule.from_config(select)
    formats = export_formats(export.get("formats") or [])
    if len(targets) * len(formats) != len(out_files):
        raise ValueError(f"export: {len(targets)} targets x {len(formats)} formats but {len(out_files)} output files")
    cands = CandidateSet.read(candidates, layers)
    base = read_json(baseline)
    points = read_parquet(validated).to_pylist()
    if not points:
        raise ValueError("export: the validated front is empty")
    ckpt = spec.model.get("checkpoint")
    ckpt_bytes = Path(ckpt).stat().st_size if ckpt else None
    shared_weights = int(cands.n_weights.sum())
    source = build_model(spec.model)  # the original weights, which the indices are computed from
    # the in-memory compressed model every file must reproduce, built once for all targets
    in_memory = spec.evaluator("test", cands.layer_names, model=copy.deepcopy(source))
    arch = architecture(spec.model)
    source_sha256 = file_sha256(ckpt) if ckpt else "pretrained"

    def predict(model) -> np.ndarray:
        ev = spec.uncorrected().evaluator("test", cands.layer_names, model=model)
        out = ev.predictions().cpu().numpy()
        ev.release()
        return out

    rows, files = [], iter(out_files)
    for target in targets:
        point, met = choose_point(points, base, bound, target, rule)
        if not met:
            log.warning("export target %.2fx: no validated point meets it on the %s split; exporting the closest "
                        "(lowest %s: %.4f)", target, rule.split, FALLBACK_ORDER[rule.split],
                        point[FALLBACK_ORDER[rule.split]])
        choice = cands.check_choice(point["choice"])
        books = cands.codebooks_of(choice)
        meta = {"k": point["k"], "groups": point["groups"], "cr": point["cr"], "test_accuracy": point["test_accuracy"],
                "calib_accuracy": point["calib_accuracy"], "baseline_test_accuracy": base["test_accuracy"],
                "source_checkpoint_sha256": source_sha256, "code_version": __version__,
                "selected_on": {"split": rule.split, "confidence": rule.confidence, "interval": rule.interval,
                                "family": rule.family, "failures": rule.failures,
                                "bound": loosened(bound, target)}}
        in_memory.apply(books)
        expected = in_memory.predictions().cpu().numpy()
        exported = ExportPoint(source=source, model=in_memory.model, books=books,
                               corrections=in_memory.export_tensors(), arch=arch, metadata=meta,
                               test=in_memory.split, expected=expected, validated_accuracy=point["test_accuracy"],
                               predict=predict)
        for fmt in formats:
            out = next(files)
            row = fmt.exporter()(exported, out, export.get(fmt.name) or {})
            acc = row["test_accuracy"]
            test_ok = bool(meets_bound(acc, base["test_accuracy"], loosened(bound, target)))
            at_widths = cr_at_widths(cands, choice, fmt.index_bits)
            if row["widened_layers"]:
                log.warning("export %s: %d layer(s) widened to the index widths %s runs (%s): CR %.2f -> %.2f at "
                            "those widths", out, len(row["widened_layers"]), fmt.name,
                            ", ".join(row["widened_layers"]), point["cr"], at_widths)
            row = {**dict.fromkeys(PACKED_ONLY), **row}
            rows.append({"target": float(target), "format": fmt.name, "meets_target": met, "file": Path(out).name,
                         "point": point["point"], "k": point["k"], "groups": point["groups"], "cr": point["cr"],
                         "cr_at_format_widths": at_widths, "calib_accuracy": point["calib_accuracy"],
                         "calib_al": point["calib_al"], "test_accuracy": acc, "test_al": base["test_accuracy"] - acc,
                         "test_meets_target": test_ok, "shared_float_bytes": shared_weights * 4,
                         "checkpoint_bytes": ckpt_bytes, **row, **size_columns(row, shared_weights, ckpt_bytes)})
            log.info("export %s (%s): CR %.2f (formula), %.2f against float32 as stored, %.2f bits per shared weight; "
                     "file %d bytes; %s", out, fmt.name, point["cr"], rows[-1]["cr_float32"],
                     rows[-1]["bits_per_weight"], row["file_bytes"], row["verified"])
    in_memory.release()
    write_parquet(rows, out_table)
