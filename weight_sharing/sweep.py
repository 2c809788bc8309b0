"""Stage sweep: approximate one layer at a time for every K of the grid and measure the network.

Each row records the optimal 1-D k-means codebook of that K (thresholds and
centroids, so no later stage clusters again) and the network's calibration
top-1 and KL to the baseline with only that layer shared. With
``correct.centroids`` the values refit to the layer's output are stored instead
where, and only where, they give the network a lower calibration KL than the
k-means values: a least-squares fit of the layer's pre-activation output can
move the network the wrong way (a ReLU after the layer discards part of what it
fits), most at the coarsest K, so each refit is checked on the network it serves.

A row changes one layer only, so what the layer's output does not reach (its
input, the skip connections around it) is computed once per layer and each row
runs the rest of the network (``Evaluator.resumed_at``): the same measurements
for a fraction of the work, the fraction the layer's position leaves.
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Iterator

import numpy as np
import pyarrow as pa

from .codebook import Codebook
from .compression import index_bits
from .correct import refit_centroids
from .evaluate import EvaluationSpec, Evaluator, Progress, measurement_columns
from .grid import layer_grid, resolve_grid
from .io import read_json, write_parquet
from .kmeans import kmeans_grid
from .models import batchnorm_fed_layers
from .sharing import grouped_codebooks, grouped_ks, layer_group_counts, shared_weight
from .tables import SWEEP_SCHEMA

log = logging.getLogger(__name__)


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
    with evaluator.resumed_at(layer):  # only what the layer's output reaches is run per codebook
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
                         "codebook_size": cb.size, "inertia": cb.inertia,
                         **measurement_columns("", m, baseline_accuracy),
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


def refit_scope(correct: dict) -> str | None:
    """Which layers ``correct.centroids`` refits: "all" (true), "unnormalized" (those whose output goes into
    no BatchNorm that ``correct.bn`` re-estimates; every layer when it is off) or None (false)."""
    value = correct.get("centroids")
    if value is True:
        return "all"
    if value in (False, None):
        return None
    if value != "unnormalized":
        raise ValueError(f"correct.centroids: {value!r}; allowed: true, false, unnormalized")
    return value if correct.get("bn") else "all"


def refit_statistics(spec: EvaluationSpec, layers: list[str], evaluator: Evaluator) -> dict | None:
    """Per layer, what its refit reads (``sweep_layers``' ``refit``): the input second moment, and the mean
    when the bias is corrected too; None for a layer ``correct.centroids`` does not refit (every layer
    when it is off). With "unnormalized" the layers feeding a re-estimated BatchNorm keep their k-means
    values: the re-estimation takes out the per-channel shift and scale the refit would correct, and on
    the BatchNorm networks measured (benchmarks/README.md) the refit lowered their network KL in half
    the rows, at the cost of a second measurement in every row."""
    scope = refit_scope(spec.correct)
    if scope is None:
        return None
    refit = list(layers)
    if scope == "unnormalized":
        fed = set(batchnorm_fed_layers(evaluator.model, tuple(evaluator.split.x.shape[1:])))
        refit = [l for l in layers if l not in fed]
        log.info("correct.centroids: unnormalized: %d of %d layers feed a re-estimated BatchNorm and keep their "
                 "k-means values", len(layers) - len(refit), len(layers))
    moments = spec.read_statistics("second", refit) if refit else {}  # only what the refits read
    means = spec.read_statistics("mean", refit) if refit and spec.correct.get("bias") else {}
    return {l: (moments[l], means.get(l)) if l in moments else None for l in layers}


def run(*, spec: EvaluationSpec, baseline: str, layers: list[str], sweep: dict, sharing: dict, out: str,
        workers: int = 1) -> None:
    """Sweep one job's ``layers`` into one file over the grid of the ``sweep`` section, with the codebook
    granularity of the ``sharing`` section; ``workers`` threads cluster them. With ``correct.centroids``
    in the spec, the codebook values are refit on the calibration statistics (their covariance when
    the bias is corrected too)."""
    base = read_json(baseline)
    ev = spec.evaluator("calib", layers)
    refit = refit_statistics(spec, layers, ev)
    max_bins = sweep["max_bins"]
    table, cluster_s, waited = sweep_layers(ev, layers, resolve_grid(sweep), base["calib_accuracy"], max_bins,
                                            workers, granularity=sharing["granularity"], group=int(sharing["group"]),
                                            refit=refit)
    log.info("clustering %.1f s in all on %d thread(s); the evaluation waited %.1f s for it",
             sum(cluster_s.values()), workers, waited)
    write_parquet(table, out, metadata={"cluster_seconds": cluster_s, "max_bins": max_bins})
