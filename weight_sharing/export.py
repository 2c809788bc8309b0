"""Stage export: the chosen validated points as packed files (``packed``), reloaded and verified.

Per export target: choose the point on calibration (:func:`choose_point`), write it with the
corrections' tensors as validation computed them (:func:`write_point`), reload the file alone and
check that it predicts what the validated model predicts on every test image (:func:`verify_point`),
and record its sizes on disk (:func:`size_row`).
"""
from __future__ import annotations

import copy
import logging
from pathlib import Path

import torch

from . import __version__
from .bound import choose, loosened, meets_bound
from .evaluate import EvaluationSpec, Evaluator
from .io import read_json, read_parquet, write_parquet
from .models import architecture, build_model, file_sha256
from .packed import export_compressed, load_compressed
from .tables import CandidateSet

log = logging.getLogger(__name__)


def choose_point(validated: list[dict], baseline: dict, bound: float, target: float,
                 confidence: float, selection: str = "calib") -> tuple[dict, bool]:
    """Target t: the highest-CR point whose loss, at ``confidence``, is at most t x the bound's allowed
    loss ((1 - bound) x baseline), judged by ``selection`` (the labelled calibration split, or the changed
    predictions on the unlabelled selection split); if none is, the lowest calibration-loss point, flagged
    (False). The test split is measured and reported, never used to choose."""
    best = choose(validated, baseline, loosened(bound, target), confidence, selection)
    if best is not None:
        return validated[best], True
    return min(validated, key=lambda v: (v["calib_al"], -v["cr"])), False


def write_point(source: torch.nn.Module, in_memory: Evaluator, books: dict, arch: dict, out: str,
                metadata: dict) -> dict:
    """Apply ``books`` to the in-memory model (with its corrections) and write the packed file of the source
    model with those codebooks and the corrections' tensors (corrected biases, re-estimated BatchNorm
    statistics) exactly as validation computed them; returns the file's size figures."""
    in_memory.apply(books)
    return export_compressed(source, books, arch, out, extra_metadata=metadata, overrides=in_memory.export_tensors())


def verify_point(spec: EvaluationSpec, in_memory: Evaluator, out: str, layers: list[str], y_test,
                 validated_accuracy: float) -> float:
    """Reload ``out`` alone and compare its predictions on every test image with the in-memory model's;
    the file is removed and the stage fails if one differs. Returns the reloaded model's test top-1."""
    expected = in_memory.predictions().cpu()
    reloaded_model, _ = load_compressed(out)
    reloaded = spec.uncorrected().evaluator("test", layers, model=reloaded_model)
    got = reloaded.predictions().cpu()
    reloaded.release()
    acc = float((got.numpy() == y_test).mean())
    if not torch.equal(expected, got) or abs(acc - validated_accuracy) > 1e-12:
        Path(out).unlink(missing_ok=True)
        raise RuntimeError(f"export {out}: the reloaded model differs from the validated one "
                           f"({int((expected != got).sum())} predictions differ; accuracy {acc:.4f} vs "
                           f"validated {validated_accuracy:.4f})")
    return acc


def size_row(sizes: dict, shared_float_bytes: int, checkpoint_bytes: int | None) -> dict:
    """The export table's size columns: packed shared layers against float32, the whole file against
    the source checkpoint, and the indices entropy-coded (computed, not stored)."""
    packed = sizes["index_bytes"] + sizes["codebook_bytes"]
    huff = sizes["huffman_index_bytes"] + sizes["codebook_bytes"]
    return {"file_bytes": sizes["file_bytes"], "index_bytes": sizes["index_bytes"],
            "codebook_bytes": sizes["codebook_bytes"], "packed_shared_bytes": packed,
            "shared_float_bytes": shared_float_bytes, "checkpoint_bytes": checkpoint_bytes,
            "cr_on_disk": shared_float_bytes / packed,
            "file_ratio": (checkpoint_bytes / sizes["file_bytes"]) if checkpoint_bytes else None,
            "huffman_shared_bytes": huff, "cr_huffman": shared_float_bytes / huff}


def run(*, spec: EvaluationSpec, candidates: str, layers: str, validated: str, baseline: str, bound: float,
        select: dict, export: dict, out_files: list[str], out_table: str) -> None:
    """Write the point chosen for each of ``export.targets`` as a packed file, verified by reloading."""
    targets, confidence, selection = export["targets"], select["confidence"], select["split"]
    if len(targets) != len(out_files):
        raise ValueError(f"export: {len(targets)} targets but {len(out_files)} output files")
    cands = CandidateSet.read(candidates, layers)
    base = read_json(baseline)
    points = read_parquet(validated).to_pylist()
    if not points:
        raise ValueError("export: the validated front is empty")
    ckpt = spec.model.get("checkpoint")
    ckpt_bytes = Path(ckpt).stat().st_size if ckpt else None
    shared_float_bytes = int(cands.n_weights.sum()) * 4
    source = build_model(spec.model)  # the original weights, read by export_compressed
    # the in-memory compressed model the file must reproduce, built once for all targets
    in_memory = spec.evaluator("test", cands.layer_names, model=copy.deepcopy(source))
    y_test = in_memory.y.cpu().numpy()
    arch = architecture(spec.model)
    source_sha256 = file_sha256(ckpt) if ckpt else "pretrained"
    rows = []
    for target, out in zip(targets, out_files):
        point, met = choose_point(points, base, bound, target, confidence, selection)
        if not met:
            log.warning("export target %.2fx: no validated point within the allowed calibration loss; exporting "
                        "the lowest-loss point (calibration AL %.4f)", target, point["calib_al"])
        books = cands.codebooks_of(cands.check_choice(point["choice"]))
        meta = {"k": point["k"], "groups": point["groups"], "cr": point["cr"], "test_accuracy": point["test_accuracy"],
                "calib_accuracy": point["calib_accuracy"], "baseline_test_accuracy": base["test_accuracy"],
                "source_checkpoint_sha256": source_sha256, "code_version": __version__,
                "selected_on": {"split": selection, "confidence": confidence, "bound": loosened(bound, target)}}
        sizes = write_point(source, in_memory, books, arch, out, meta)
        acc = verify_point(spec, in_memory, out, cands.layer_names, y_test, point["test_accuracy"])
        test_ok = bool(meets_bound(acc, base["test_accuracy"], loosened(bound, target)))
        if not test_ok:
            log.warning("export target %.2fx: the point chosen on calibration loses %.4f on test, beyond the "
                        "target (reported, not used to choose)", target, base["test_accuracy"] - acc)
        row = size_row(sizes, shared_float_bytes, ckpt_bytes)
        rows.append({"target": float(target), "meets_target": met, "file": Path(out).name, "point": point["point"],
                     "k": point["k"], "groups": point["groups"],
                     "cr": point["cr"], "calib_accuracy": point["calib_accuracy"], "calib_al": point["calib_al"],
                     "test_accuracy": acc, "test_al": base["test_accuracy"] - acc, "test_meets_target": test_ok,
                     **row})
        log.info("export %s: CR %.2f (formula), %.2f (packed on disk), %.2f (Huffman); file %d bytes vs "
                 "checkpoint %s bytes; reloaded predictions identical on %d test images", out, point["cr"],
                 row["cr_on_disk"], row["cr_huffman"], sizes["file_bytes"], ckpt_bytes, len(y_test))
    in_memory.release()
    write_parquet(rows, out_table)
