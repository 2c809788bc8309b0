"""Candidate selection: per layer and index bit-width, the K that loses least while meeting the bound."""
from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa

from .sweep import codebook_from_row

log = logging.getLogger(__name__)

BOUNDS = {"heavy": 0.99, "light": 0.98}  # MLPerf: fraction of the baseline top-1 to keep


def select_layer_candidates(rows: list[dict], baseline_accuracy: float, bound: float) -> tuple[list[dict], bool]:
    """Rows kept for one layer's sweep, and whether the layer fell back to its largest K.

    Per bit-width: among rows with accuracy >= bound * baseline, the lowest AL
    (ties: the smaller K, which compresses more). If no row of the layer meets
    the bound, the layer keeps only its largest K.
    """
    if not 0 < bound <= 1:
        raise ValueError(f"bound must be in (0, 1], got {bound}")
    if not rows:
        raise ValueError("empty sweep: no K to choose from")
    threshold = bound * baseline_accuracy
    best: dict[int, dict] = {}
    for r in rows:
        if r["accuracy"] < threshold - 1e-12:
            continue
        cur = best.get(r["bits"])
        if cur is None or (r["al"], r["k"]) < (cur["al"], cur["k"]):
            best[r["bits"]] = r
    if best:
        return [best[b] for b in sorted(best)], False
    return [max(rows, key=lambda r: r["k"])], True


def select_candidates(sweeps: dict[str, list[dict]], layer_order: list[str],
                      baseline_accuracy: float, bound: float) -> pa.Table:
    """candidates.parquet: the kept rows of every layer, with ``layer_index`` and ``fallback``."""
    out = []
    for i, layer in enumerate(layer_order):
        kept, fallback = select_layer_candidates(sweeps[layer], baseline_accuracy, bound)
        if fallback:
            log.warning("layer %s: no K keeps accuracy >= %.4f x baseline; keeping its largest K=%d",
                        layer, bound, kept[0]["k"])
        for r in kept:
            out.append({**r, "layer_index": i, "fallback": fallback})
    return pa.Table.from_pylist(out)


class CandidateSet:
    """The candidates of every layer, indexed for combinations: ``choice[l]`` picks a row of layer l."""

    def __init__(self, table: pa.Table, layers: list[dict]):
        self.layer_names = [l["name"] for l in layers]
        self.n_weights = np.array([l["weights"] for l in layers], dtype=np.int64)
        energy = np.array([l.get("energy", 1.0) or 1.0 for l in layers], dtype=np.float64)
        rows = table.to_pylist()
        per_layer: list[list[dict]] = [[] for _ in layers]
        index = {n: i for i, n in enumerate(self.layer_names)}
        for r in rows:
            if r["layer"] not in index:
                raise ValueError(f"candidates: layer {r['layer']!r} is not in the layer table")
            per_layer[index[r["layer"]]].append(r)
        empty = [self.layer_names[i] for i, p in enumerate(per_layer) if not p]
        if empty:
            raise ValueError(f"candidates: no candidate for layers {empty}")
        for p in per_layer:
            p.sort(key=lambda r: r["k"])
        self.codebooks = [[codebook_from_row(r) for r in p] for p in per_layer]
        self.sizes = np.array([len(p) for p in per_layer], dtype=np.int64)
        pad = int(self.sizes.max())
        self.k = np.zeros((len(layers), pad), dtype=np.int64)
        self.al = np.zeros((len(layers), pad))
        self.inertia = np.zeros((len(layers), pad))
        for i, p in enumerate(per_layer):
            for j, r in enumerate(p):
                self.k[i, j], self.al[i, j], self.inertia[i, j] = r["k"], r["al"], r["inertia"]
        # relative quantisation noise: squared error over the layer's weight energy
        self.noise = self.inertia / energy[:, None]

    def gather(self, what: np.ndarray, choice: np.ndarray) -> np.ndarray:
        """Per-layer values (``self.k``, ``self.al``, ...) of a (N, L) array of candidate indices."""
        return what[np.arange(len(self.layer_names)), np.asarray(choice)]

    def choice_of_ks(self, ks) -> np.ndarray:
        """Candidate indices of a K vector (every K must be a candidate of its layer)."""
        out = np.empty(len(ks), dtype=np.int64)
        for i, k in enumerate(ks):
            hit = np.nonzero(self.k[i, :self.sizes[i]] == int(k))[0]
            if len(hit) == 0:
                raise ValueError(f"K={k} is not a candidate of layer {self.layer_names[i]!r}")
            out[i] = hit[0]
        return out

    def codebooks_of(self, choice) -> dict:
        return {n: self.codebooks[i][int(c)] for i, (n, c) in enumerate(zip(self.layer_names, choice))}
