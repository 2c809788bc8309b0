"""Stage sweep: approximate one layer at a time for every K of the grid and measure the network.

Each row records the optimal 1-D k-means codebook of that K (thresholds and
centroids, so no later stage clusters again) and the network's calibration
top-1 and KL to the baseline with only that layer shared. With
``correct.centroids`` the values refit to the layer's output are stored instead
where, and only where, they give the network a lower calibration KL than the
k-means values: a least-squares fit of the layer's pre-activation output can
move the network the wrong way (a ReLU after the layer discards part of what it
fits), most at the coarsest K, so each refit is checked on the network it serves.
"""
from __future__ import annotations

import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Iterator

import numpy as np
import pyarrow as pa

from .calibration import read_statistics
from .compression import index_bits
from .correct import refit_centroids
from .evaluate import Evaluator, Progress, evaluator_for, measurement_columns
from .io import read_json, read_parquet, write_parquet
from .kmeans import Codebook, kmeans_grid
from .sharing import grouped_codebooks, grouped_ks, layer_group_counts, shared_weight

log = logging.getLogger(__name__)

SWEEP_SCHEMA = pa.schema([
    ("layer", pa.string()), ("k", pa.int64()), ("groups", pa.int64()), ("group", pa.int64()), ("bits", pa.int64()),
    ("codebook_size", pa.int64()),
    ("inertia", pa.float64()), ("accuracy", pa.float64()), ("al", pa.float64()), ("kl", pa.float64()),
    ("changed", pa.float64()), ("broken", pa.int64()), ("fixed", pa.int64()),
    ("thresholds", pa.list_(pa.float64())), ("centroids", pa.list_(pa.float32())),
    ("refit", pa.bool_()), ("kmeans_kl", pa.float64()), ("refit_kl", pa.float64()),
    ("seconds", pa.float64()),
])


def k_grid(k_min: int, k_max: int, count: int) -> list[int]:
    """``count`` log-spaced K from k_min to k_max, rounded and de-duplicated (paper: 2..1024, 100)."""
    if k_min < 1:
        raise ValueError(f"sweep.k_min must be >= 1, got {k_min}")
    if k_max < k_min:
        raise ValueError(f"sweep.k_max ({k_max}) must be >= sweep.k_min ({k_min})")
    if count < 1:
        raise ValueError(f"sweep.k_count must be >= 1, got {count}")
    if count == 1:
        return [int(k_min)]
    vals = np.rint(np.logspace(math.log10(k_min), math.log10(k_max), count)).astype(np.int64)
    return sorted({int(v) for v in vals})


def resolve_grid(sweep_cfg: dict) -> list[int]:
    """The configured grid: an explicit ``k_values`` list, the powers of two from k_min to k_max
    (``grid: pow2``), or the log-spaced k_min/k_max/k_count one (``grid: log``, the paper's)."""
    if sweep_cfg.get("k_values"):
        ks = [int(k) for k in sweep_cfg["k_values"]]
        bad = [k for k in ks if k < 1]
        if bad:
            raise ValueError(f"sweep.k_values: K must be >= 1, got {bad}")
        return sorted(set(ks))
    if sweep_cfg.get("grid") == "pow2":
        lo, hi = int(sweep_cfg["k_min"]), int(sweep_cfg["k_max"])
        if hi < lo:
            raise ValueError(f"sweep.k_max ({hi}) must be >= sweep.k_min ({lo})")
        ks = [1 << b for b in range(max(lo - 1, 0).bit_length(), hi.bit_length()) if lo <= 1 << b <= hi]
        if not ks:
            raise ValueError(f"sweep.grid: pow2 has no power of two in k_min..k_max = {lo}..{hi}")
        return ks
    return k_grid(int(sweep_cfg["k_min"]), int(sweep_cfg["k_max"]), int(sweep_cfg["k_count"]))


def layer_grid(grid: list[int], n_weights: int) -> list[int]:
    """The grid capped at the layer's weight count (more clusters than weights means nothing)."""
    return sorted({min(int(k), int(n_weights)) for k in grid})


def codebook_from_row(row: dict) -> Codebook:
    """The codebook a sweep (or candidates) row stores; a grouped one has one row of values per group."""
    groups, group = int(row.get("groups") or 1), int(row.get("group") or 0)
    thr = np.asarray(row["thresholds"], dtype=np.float64)
    cent = np.asarray(row["centroids"], dtype=np.float32)
    if group:
        thr, cent = thr.reshape(groups, -1), cent.reshape(groups, -1)
    return Codebook(k=int(row["k"]), thresholds=thr, centroids=cent, inertia=float(row["inertia"]), group=group)


def layer_codebooks(weight: np.ndarray, grid: list[int], max_bins: int, granularity: str = "tensor",
                    group: int = 16) -> dict[tuple[int, int], Codebook]:
    """(codebooks, K) -> the layer's optimal codebook: per tensor, and per group of ``group`` output
    channels too when ``granularity`` is grouped_channel (see ``sharing.layer_group_counts``), at the
    K where the group codebooks take fewer bits than the next bit-width per tensor
    (``sharing.grouped_ks``)."""
    ks = layer_grid(grid, weight.size)
    books = {(1, k): cb for k, cb in kmeans_grid(weight.ravel(), ks, max_bins=max_bins).items()}
    for groups in layer_group_counts(weight.shape, granularity, group)[1:]:
        worth = grouped_ks(ks, weight.size, groups)
        if worth:
            books.update({(groups, k): cb for k, cb in grouped_codebooks(weight, worth, group, max_bins).items()})
    return books


def cluster_layers(weights: dict[str, np.ndarray], grid: list[int], max_bins: int, workers: int = 1,
                   granularity: str = "tensor",
                   group: int = 16) -> Iterator[tuple[str, dict[tuple[int, int], Codebook], float]]:
    """Every layer's codebooks for its grid, computed by ``workers`` threads, yielded in input order.

    The k-means DP releases the GIL, so the layers cluster in parallel and the
    caller can evaluate one layer on the accelerator while later ones are still
    clustering. Yields (layer, codebooks by (codebooks, K), clustering seconds of that layer).
    """
    if workers < 1:
        raise ValueError(f"cluster_layers: workers must be >= 1, got {workers}")

    def one(name: str):
        w = weights[name]
        t0 = time.perf_counter()
        books = layer_codebooks(w, grid, max_bins, granularity, group)
        seconds = time.perf_counter() - t0
        log.info("%s: %d weights, %d codebooks clustered in %.2f s", name, w.size, len(books), seconds)
        return books, seconds

    if workers == 1:
        for name in weights:
            yield (name, *one(name))
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kmeans") as pool:
        futures = {name: pool.submit(one, name) for name in weights}
        try:
            for name, fut in futures.items():
                yield (name, *fut.result())
        finally:  # an error (or an abandoned generator) must not leave queued layers running
            for fut in futures.values():
                fut.cancel()


def sweep_layer(evaluator: Evaluator, layer: str, books: dict[tuple[int, int], Codebook],
                baseline_accuracy: float, refit: tuple[np.ndarray, np.ndarray | None] | None = None) -> pa.Table:
    """One row per codebook: the codebook and the network's calibration accuracy with only this layer shared.

    ``refit``: (input second moment, input mean or None) of the layer: the codebook values are
    also refit to its output (``correct.centroids``; the mean is given when the bias is corrected
    too) and the refit values are kept where the network's calibration KL is lower with them
    (``refit`` column; ``kmeans_kl`` / ``refit_kl``: the KL with either set of values, the latter null
    without ``refit``).
    """
    rows = []
    progress = Progress(len(books), f"sweep {layer}")
    original = evaluator.originals[layer]
    for i, (groups, k) in enumerate(sorted(books, key=lambda key: (key[1], key[0]))):
        cb = books[groups, k]
        t = time.perf_counter()
        with evaluator.applied({layer: cb}):
            m = evaluator.measure()
        kmeans_kl, refit_kl, refitted = m.kl, None, False
        if refit is not None:
            fitted = refit_centroids(original, cb, refit[0], refit[1], device=evaluator.device)
            with evaluator.applied({layer: fitted}):
                fitted_m = evaluator.measure()
            refit_kl = fitted_m.kl
            if fitted_m.kl < m.kl:
                _, shared = shared_weight(original, fitted)  # the weight error of the refit values
                cb = replace(fitted, inertia=float(((original - shared).double() ** 2).sum()))
                m, refitted = fitted_m, True
        rows.append({"layer": layer, "k": k, "groups": groups, "group": cb.group, "bits": index_bits(k),
                     "codebook_size": cb.size, "inertia": cb.inertia, **measurement_columns("", m, baseline_accuracy),
                     "thresholds": np.ravel(cb.thresholds).tolist(), "centroids": np.ravel(cb.centroids).tolist(),
                     "refit": refitted, "kmeans_kl": kmeans_kl, "refit_kl": refit_kl,
                     "seconds": time.perf_counter() - t})
        progress.step(i + 1)
    if refit is not None:
        log.info("%s: refit values kept for %d of %d codebooks (lower calibration KL)", layer,
                 sum(r["refit"] for r in rows), len(books))
    return pa.Table.from_pylist(rows, schema=SWEEP_SCHEMA)


def sweep_layers(evaluator: Evaluator, layers: list[str], grid: list[int], baseline_accuracy: float,
                 max_bins: int, workers: int = 1, overlap: bool | None = None, granularity: str = "tensor",
                 group: int = 16, refit: dict | None = None) -> tuple[pa.Table, dict[str, float], float]:
    """Sweep several layers, clustering them on ``workers`` threads.

    On an accelerator the clustering overlaps the evaluations (layer i is
    evaluated while later layers cluster); on the CPU, where both would compete
    for the same cores, all layers are clustered first (``overlap`` overrides
    the choice; the rows do not depend on it). Returns the rows of all
    layers, each layer's clustering seconds, and the seconds the evaluation
    waited for clustering (what the overlap did not hide).
    """
    unknown = [l for l in layers if l not in evaluator.originals]
    if unknown:
        raise ValueError(f"sweep: layers {unknown} are not shared layers of the model")
    weights = {l: evaluator.originals[l].detach().cpu().numpy() for l in layers}
    tables, cluster_s = [], {}
    t = time.perf_counter()
    clustered = cluster_layers(weights, grid, max_bins, workers, granularity, group)
    if overlap is None:
        overlap = evaluator.device.type != "cpu"
    if not overlap:
        clustered = iter(list(clustered))
    waited = time.perf_counter() - t
    while True:
        t = time.perf_counter()
        item = next(clustered, None)
        waited += time.perf_counter() - t
        if item is None:
            break
        layer, books, cluster_s[layer] = item
        tables.append(sweep_layer(evaluator, layer, books, baseline_accuracy,
                                  None if refit is None else refit[layer]))
    return pa.concat_tables(tables), cluster_s, waited


def rows_by_layer(rows) -> dict[str, list[dict]]:
    """Sweep rows grouped by layer, in order."""
    by_layer: dict[str, list[dict]] = {}
    for r in rows:
        by_layer.setdefault(r["layer"], []).append(r)
    return by_layer


def read_sweeps(sweep_files: list[str]) -> dict[str, list[dict]]:
    """Sweep rows by layer, from any number of sweep files (one or several layers each)."""
    return rows_by_layer(r for f in sweep_files for r in read_parquet(f).to_pylist())


def run(*, model_cfg: dict, data_npz: str, baseline_json: str, layers: list[str], grid: list[int], max_bins: int,
        evaluation: dict, out: str, workers: int = 1, sharing: dict | None = None, correct: dict | None = None,
        calibration: str | None = None) -> None:
    """Sweep one job's layers (one layer by default) into one file; ``workers`` threads cluster them.

    ``sharing``/``correct``: the config sections; ``calibration``: the calibration stage's
    statistics file, needed when a correction is on.
    """
    sharing = sharing or {"granularity": "tensor", "group": 16}
    correct = {"bias": False, "centroids": False, "bn": False, **(correct or {})}
    if (correct["bias"] or correct["centroids"]) and not calibration:
        raise ValueError("sweep: correct.bias / correct.centroids need the calibration statistics file")
    baseline = read_json(baseline_json)
    ev = evaluator_for(model_cfg, data_npz, "calib", evaluation, layers=layers,
                       bias_statistics=calibration if correct["bias"] else None,
                       reestimate_batchnorm=bool(correct["bn"]))
    refit = None
    if correct["centroids"]:
        moments = read_statistics(calibration, layers, "second")
        means = ev.bias_means or {}  # the covariance when the bias is corrected too
        refit = {l: (moments[l], means.get(l)) for l in layers}
    table, cluster_s, waited = sweep_layers(ev, layers, grid, baseline["calib_accuracy"], max_bins, workers,
                                            granularity=sharing["granularity"], group=int(sharing["group"]),
                                            refit=refit)
    log.info("clustering %.1f s in all on %d thread(s); the evaluation waited %.1f s for it",
             sum(cluster_s.values()), workers, waited)
    write_parquet(table, out, metadata={"cluster_seconds": cluster_s, "max_bins": max_bins})
