"""One function per workflow stage: read input files, compute with the library, write output files atomically.

The workflow's scripts call these with the paths and params Snakemake gives
them; tests call them directly. Nothing here knows about Snakemake.
"""
from __future__ import annotations

import copy
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from . import __version__
from .candidates import CandidateSet, select_candidates
from .data import check_npz, load_split, mnist_demo_splits
from .evaluate import Evaluator
from .io import atomic_path, read_json, read_parquet, write_json, write_parquet
from .models import build_model, layer_records
from .sampling import draw_combinations, evaluate_combinations, shard_bounds
from .search import run_nsga2
from .surrogate import design_matrix, fit_surrogate, plot_fit, sample_features
from .sweep import codebook_from_row, read_sweeps, sweep_layers
from .train import train_lenet5
from .validate import evaluate_uniform, validate_front

log = logging.getLogger("weight_sharing")


def setup_logging(log_path: str | Path | None = None) -> None:
    """Log to the rule's log file and to stderr."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def log_failure(kind, value, tb):  # the error goes to the rule's log file too
        log.error("%s: %s", kind.__name__, value, exc_info=(kind, value, tb) if log_path else None)
        if not log_path:
            sys.__excepthook__(kind, value, tb)

    sys.excepthook = log_failure


def set_threads(threads: int) -> None:
    torch.set_num_threads(max(1, int(threads)))


def _evaluator(model_cfg: dict, data_npz: str, split: str, evaluation: dict) -> Evaluator:
    return _evaluate_model(build_model(model_cfg), load_split(data_npz, split), evaluation)


def _evaluate_model(model, split, evaluation: dict) -> Evaluator:
    """An evaluator with the configured engine settings."""
    return Evaluator(model, split, batch_size=int(evaluation["batch_size"]), device=evaluation["device"],
                     precision=evaluation["precision"], channels_last=bool(evaluation["channels_last"]),
                     compile=bool(evaluation["compile"]))


def _layers(path) -> list[dict]:
    return read_parquet(path).to_pylist()


# --- demo ---------------------------------------------------------------------------------------

def demo_data(out_npz: str, n_train: int, n_calib: int, n_test: int, seed: int) -> None:
    """The shipped MNIST digits split into train/calib/test, saved as the evaluation .npz format."""
    arrays = mnist_demo_splits(n_train, n_calib, n_test, seed)
    with atomic_path(out_npz) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    log.info("demo data: %s", {k: v.shape for k, v in arrays.items()})


def demo_train(data_npz: str, out_checkpoint: str, epochs: int, batch_size: int, lr: float, seed: int,
               dropout: float) -> None:
    with np.load(data_npz) as z:
        x, y, mean, std = z["x_train"], z["y_train"], z["mean"], z["std"]
    model = train_lenet5(x, y, mean, std, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                         dropout=dropout)
    with atomic_path(out_checkpoint) as tmp:
        torch.save(model.state_dict(), tmp)


def decode_data(model_cfg: dict, data_cfg: dict, out_npz: str, workers: int) -> None:
    """An image folder decoded once with the model's preprocessing into the evaluation .npz."""
    from .imagefolder import decode_images, list_images, model_preprocessing, split_per_class

    pre = model_preprocessing(build_model(model_cfg), model_cfg, data_cfg.get("image_size"))
    paths, labels, classes = list_images(data_cfg)
    calib, test = split_per_class(labels, int(data_cfg["calib_per_class"]), int(data_cfg["seed"]))
    log.info("%d images in %d classes: %d calibration, %d test; resize %d, crop %d, %s", len(paths),
             len(classes), len(calib), len(test), pre.resize, pre.crop, pre.interpolation)
    t = time.perf_counter()
    x = decode_images(paths, pre, workers=workers)
    log.info("decoded in %.1f s", time.perf_counter() - t)
    with atomic_path(out_npz) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, x_calib=x[calib], y_calib=labels[calib], x_test=x[test], y_test=labels[test],
                     mean=np.asarray(pre.mean, np.float32), std=np.asarray(pre.std, np.float32),
                     calib_paths=np.asarray([paths[i] for i in calib]), test_paths=np.asarray([paths[i] for i in test]))


# --- stages -------------------------------------------------------------------------------------

def prepare(model_cfg: dict, data_npz: str, evaluation: dict, out_baseline: str, out_layers: str) -> None:
    """Baseline top-1 on both splits and the table of shared layers."""
    info = check_npz(data_npz)
    model = build_model(model_cfg)
    layers = layer_records(model)
    baseline = {"code_version": __version__, "calib_images": info["calib"], "test_images": info["test"]}
    for split in ("calib", "test"):
        ev = _evaluator(model_cfg, data_npz, split, evaluation)
        t = time.perf_counter()
        baseline[f"{split}_accuracy"] = ev.accuracy()
        log.info("baseline %s accuracy %.4f (%d images, %.2f s, %s)", split, baseline[f"{split}_accuracy"],
                 ev.n, time.perf_counter() - t, ev.device)
    baseline["shared_weights"] = int(sum(l["weights"] for l in layers))
    baseline["layers"] = len(layers)
    write_parquet(layers, out_layers)
    write_json(baseline, out_baseline)


def sweep(model_cfg: dict, data_npz: str, baseline_json: str, layers: list[str], grid: list[int],
          max_bins: int, evaluation: dict, out: str, workers: int = 1) -> None:
    """Sweep one job's layers (one layer by default) into one file; ``workers`` threads cluster them."""
    baseline = read_json(baseline_json)
    ev = _evaluator(model_cfg, data_npz, "calib", evaluation)
    table, cluster_s, waited = sweep_layers(ev, layers, grid, baseline["calib_accuracy"], max_bins, workers)
    log.info("clustering %.1f s in all on %d thread(s); the evaluation waited %.1f s for it",
             sum(cluster_s.values()), workers, waited)
    write_parquet(table, out, metadata={"cluster_seconds": cluster_s, "max_bins": max_bins})


def candidates(sweep_files: list[str], layers_parquet: str, baseline_json: str, bound: float, out: str) -> None:
    layers = _layers(layers_parquet)
    sweeps = read_sweeps(sweep_files)
    missing = [l["name"] for l in layers if l["name"] not in sweeps]
    if missing:
        raise ValueError(f"candidates: no sweep for layers {missing}")
    baseline = read_json(baseline_json)
    table = select_candidates(sweeps, [l["name"] for l in layers], baseline["calib_accuracy"], bound)
    write_parquet(table, out)
    log.info("candidates: %d over %d layers", table.num_rows, len(layers))


def sample(model_cfg: dict, data_npz: str, candidates_parquet: str, layers_parquet: str, baseline_json: str,
           n: int, seed: int, shards: int, shard: int, evaluation: dict, out: str) -> None:
    """Shard ``shard`` of the seeded draw of ``n`` combinations, evaluated on the calibration split."""
    cands = CandidateSet(read_parquet(candidates_parquet), _layers(layers_parquet))
    choices = draw_combinations(cands.sizes, n, seed)
    start, stop = shard_bounds(len(choices), shards, shard)
    baseline = read_json(baseline_json)
    ev = _evaluator(model_cfg, data_npz, "calib", evaluation)
    t = time.perf_counter()
    table = evaluate_combinations(ev, cands, choices[start:stop], baseline["calib_accuracy"], first_index=start)
    dt = time.perf_counter() - t
    log.info("sample shard %d/%d: %d combinations in %.1f s (%.0f images/s)", shard, shards, stop - start, dt,
             (stop - start) * ev.n / max(dt, 1e-9))
    write_parquet(table, out, metadata={"seconds": dt, "images": (stop - start) * ev.n})


def merge_samples(shard_files: list[str], out: str) -> None:
    tables = [read_parquet(f) for f in shard_files]
    table = pa.concat_tables(tables).sort_by("sample")
    write_parquet(table, out)


def surrogate(samples_parquet: str, layers_parquet: str, features: list[str], positive: bool, folds: int,
              seed: int, out_json: str, out_png: str, title: str) -> None:
    samples = read_parquet(samples_parquet)
    layer_table = _layers(layers_parquet)
    layers = [l["name"] for l in layer_table]
    x = design_matrix(features, sample_features(samples, [l["energy"] for l in layer_table]))
    y = np.asarray(samples.column("al").to_numpy(), dtype=np.float64)
    model, oof = fit_surrogate(x, y, layers, folds=folds, seed=seed, feature_names=features, positive=positive)
    log.info("surrogate: held-out R2 %.3f, RMSE %.4f on %d samples", model["r2_heldout"],
             model["rmse_heldout"], model["n_samples"])
    with atomic_path(out_png) as tmp:
        plot_fit(y, oof, model, tmp, title)
    write_json(model, out_json)


def search(candidates_parquet: str, layers_parquet: str, surrogate_json: str, pop_size: int,
           generations: int, seed: int, out: str) -> None:
    cands = CandidateSet(read_parquet(candidates_parquet), _layers(layers_parquet))
    table = run_nsga2(cands, read_json(surrogate_json), pop_size, generations, seed)
    log.info("search: %d non-dominated points, CR %.2f..%.2f", table.num_rows,
             min(table.column("cr").to_pylist()), max(table.column("cr").to_pylist()))
    write_parquet(table, out)


def validate(model_cfg: dict, data_npz: str, candidates_parquet: str, layers_parquet: str,
             front_parquet: str, baseline_json: str, bound: float, evaluation: dict, out: str) -> None:
    cands = CandidateSet(read_parquet(candidates_parquet), _layers(layers_parquet))
    baseline = read_json(baseline_json)
    calib = _evaluator(model_cfg, data_npz, "calib", evaluation)
    test = _evaluator(model_cfg, data_npz, "test", evaluation)
    table = validate_front(read_parquet(front_parquet), cands, calib, test, baseline, bound)
    write_parquet(table, out)


def uniform(model_cfg: dict, data_npz: str, sweep_files: list[str], layers_parquet: str, baseline_json: str,
            k_values: list[int], evaluation: dict, out: str) -> None:
    """Every layer the same K, for each K of ``k_values`` (capped per layer at its weight count)."""
    layers = _layers(layers_parquet)
    rows_by_layer = {layer: {r["k"]: r for r in rows} for layer, rows in read_sweeps(sweep_files).items()}
    books = {}
    for k in k_values:
        per = {}
        for l in layers:
            kk = min(int(k), l["weights"])
            if kk not in rows_by_layer[l["name"]]:
                raise ValueError(f"uniform: K={kk} is not in the sweep of layer {l['name']!r}")
            per[l["name"]] = codebook_from_row(rows_by_layer[l["name"]][kk])
        books[int(k)] = per
    baseline = read_json(baseline_json)
    calib = _evaluator(model_cfg, data_npz, "calib", evaluation)
    test = _evaluator(model_cfg, data_npz, "test", evaluation)
    n_weights = np.array([l["weights"] for l in layers])
    write_parquet(evaluate_uniform(books, n_weights, calib, test, baseline), out)


def export(model_cfg: dict, data_npz: str, candidates_parquet: str, layers_parquet: str, validated_parquet: str,
           baseline_json: str, bound: float, targets: list[float], evaluation: dict,
           out_files: list[str], out_table: str) -> None:
    """Write the chosen validated points as packed files, reload each and verify it predicts the same.

    Target t picks the highest-CR validated point whose test AL is at most t x the
    bound's allowed loss ((1 - bound) x baseline). A target no point meets exports
    the point with the lowest test AL instead, flagged ``meets_target = false``.
    """
    from .export import export_compressed, load_compressed
    from .models import file_sha256

    if len(targets) != len(out_files):
        raise ValueError(f"export: {len(targets)} targets but {len(out_files)} output files")
    cands = CandidateSet(read_parquet(candidates_parquet), _layers(layers_parquet))
    baseline = read_json(baseline_json)
    validated = read_parquet(validated_parquet).to_pylist()
    if not validated:
        raise ValueError("export: the validated front is empty")
    base = baseline["test_accuracy"]
    ckpt = model_cfg.get("checkpoint")
    ckpt_bytes = Path(ckpt).stat().st_size if ckpt else None
    shared_float_bytes = int(cands.n_weights.sum()) * 4
    test_split = load_split(data_npz, "test")
    source = build_model(model_cfg)  # the original weights, read by export_compressed
    # the in-memory compressed model the file must reproduce, built once for all targets
    in_memory = _evaluate_model(copy.deepcopy(source), test_split, evaluation)
    arch = {k: model_cfg[k] for k in ("source", "arch")} | {"kwargs": model_cfg.get("kwargs") or {}}
    source_sha256 = file_sha256(ckpt) if ckpt else "pretrained"
    rows = []
    for target, out in zip(targets, out_files):
        max_loss = target * (1 - bound) * base
        eligible = [v for v in validated if base - v["test_accuracy"] <= max_loss + 1e-12]
        met = bool(eligible)
        point = (max(eligible, key=lambda v: (v["cr"], v["test_accuracy"])) if met
                 else min(validated, key=lambda v: (v["test_al"], -v["cr"])))
        if not met:
            log.warning("export target %.2fx: no validated point within %.4f test AL; exporting the lowest-loss "
                        "point (test AL %.4f)", target, max_loss, point["test_al"])
        books = cands.codebooks_of(cands.choice_of_ks(point["k"]))
        meta = {"k": point["k"], "cr": point["cr"], "test_accuracy": point["test_accuracy"],
                "calib_accuracy": point["calib_accuracy"], "baseline_test_accuracy": base,
                "source_checkpoint_sha256": source_sha256,
                "code_version": __version__}
        sizes = export_compressed(source, books, arch, out, extra_metadata=meta)
        # verify: the file alone must compute what the in-memory compressed model computes
        in_memory.apply(books)
        expected = in_memory.predictions().cpu()
        reloaded_model, _ = load_compressed(out)
        got = _evaluate_model(reloaded_model, test_split, evaluation).predictions().cpu()
        acc = float((got.numpy() == test_split.y).mean())
        if not torch.equal(expected, got) or abs(acc - point["test_accuracy"]) > 1e-12:
            Path(out).unlink(missing_ok=True)
            raise RuntimeError(f"export {out}: the reloaded model differs from the validated one "
                               f"({int((expected != got).sum())} predictions differ; accuracy {acc:.4f} vs "
                               f"validated {point['test_accuracy']:.4f})")
        packed = sizes["index_bytes"] + sizes["codebook_bytes"]
        huff = sizes["huffman_index_bytes"] + sizes["codebook_bytes"]
        rows.append({"target": float(target), "meets_target": met, "file": Path(out).name, "k": point["k"],
                     "cr": point["cr"], "test_accuracy": acc, "test_al": base - acc,
                     "file_bytes": sizes["file_bytes"], "index_bytes": sizes["index_bytes"],
                     "codebook_bytes": sizes["codebook_bytes"], "packed_shared_bytes": packed,
                     "shared_float_bytes": shared_float_bytes, "checkpoint_bytes": ckpt_bytes,
                     "cr_on_disk": shared_float_bytes / packed,
                     "file_ratio": (ckpt_bytes / sizes["file_bytes"]) if ckpt_bytes else None,
                     "huffman_shared_bytes": huff, "cr_huffman": shared_float_bytes / huff,
                     "predictions_equal": True})
        log.info("export %s: CR %.2f (formula), %.2f (packed on disk), %.2f (Huffman); file %d bytes vs "
                 "checkpoint %s bytes; reloaded predictions identical", out, point["cr"],
                 shared_float_bytes / packed, shared_float_bytes / huff, sizes["file_bytes"], ckpt_bytes)
    write_parquet(rows, out_table)
