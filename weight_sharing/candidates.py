"""Stage candidates: per layer and index bit-width, the K that loses least while meeting the bound.

"Loses least" is judged on ``signal``: the sweep's top-1 loss (``al``, the
paper's choice) or its KL divergence to the baseline (``kl``), which is
continuous where top-1 on a few hundred images moves in steps of one image.
The bound itself is always top-1: accuracy >= bound x baseline.
"""
from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa

from .bound import meets_bound
from .compression import compression_rates, shared_bits
from .io import read_json, read_parquet, write_parquet
from .sweep import codebook_from_row, read_sweeps

log = logging.getLogger(__name__)

SIGNALS = ("al", "kl")


def select_layer_candidates(rows: list[dict], baseline_accuracy: float, bound: float,
                            signal: str = "al") -> tuple[list[dict], bool]:
    """Rows kept for one layer's sweep, and whether the layer fell back to its largest K.

    Per bit-width (and per codebook count, when the sweep has grouped codebooks too:
    they cost more bits, so both stay for the search to weigh): among rows with
    accuracy >= bound * baseline, the lowest ``signal`` (ties: the smaller K, which
    compresses more). If no row of the layer meets the bound, the layer keeps only
    its largest K (per tensor).
    """
    if not 0 < bound <= 1:
        raise ValueError(f"bound must be in (0, 1], got {bound}")
    if signal not in SIGNALS:
        raise ValueError(f"candidates.signal: {signal!r}; allowed: {', '.join(SIGNALS)}")
    if not rows:
        raise ValueError("empty sweep: no K to choose from")
    best: dict[tuple[int, int], dict] = {}
    for r in rows:
        if not meets_bound(r["accuracy"], baseline_accuracy, bound):
            continue
        key = (r["bits"], r.get("groups") or 1)
        cur = best.get(key)
        if cur is None or (r[signal], r["k"]) < (cur[signal], cur["k"]):
            best[key] = r
    if best:
        return [best[b] for b in sorted(best)], False
    return [max((r for r in rows if (r.get("groups") or 1) == 1), key=lambda r: r["k"])], True


def select_candidates(sweeps: dict[str, list[dict]], layer_order: list[str],
                      baseline_accuracy: float, bound: float, signal: str = "al") -> pa.Table:
    """candidates.parquet: the kept rows of every layer, with ``layer_index`` and ``fallback``."""
    out = []
    for i, layer in enumerate(layer_order):
        kept, fallback = select_layer_candidates(sweeps[layer], baseline_accuracy, bound, signal)
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
        energy = np.array([l.get("energy", 1.0) for l in layers], dtype=np.float64)
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
            p.sort(key=lambda r: (r["k"], r.get("groups") or 1))
        self.codebooks = [[codebook_from_row(r) for r in p] for p in per_layer]
        self.sizes = np.array([len(p) for p in per_layer], dtype=np.int64)
        pad = int(self.sizes.max())
        self.k = np.zeros((len(layers), pad), dtype=np.int64)
        self.groups = np.ones((len(layers), pad), dtype=np.int64)  # codebooks of each candidate
        self.al = np.zeros((len(layers), pad))
        self.kl = np.zeros((len(layers), pad))
        self.inertia = np.zeros((len(layers), pad))
        for i, p in enumerate(per_layer):
            for j, r in enumerate(p):
                self.k[i, j], self.al[i, j], self.inertia[i, j] = r["k"], r["al"], r["inertia"]
                self.groups[i, j] = r.get("groups") or 1
                self.kl[i, j] = r.get("kl") or 0.0
        self.energy = energy

    def gather(self, what: np.ndarray, choice: np.ndarray) -> np.ndarray:
        """Per-layer values (``self.k``, ``self.al``, ...) of a (N, L) array of candidate indices."""
        return what[np.arange(len(self.layer_names)), np.asarray(choice)]

    def bits(self) -> np.ndarray:
        """(L, C) bits of each candidate: W x ceil(log2 K) index bits plus G x K float codebook entries."""
        return shared_bits(self.n_weights[:, None], np.maximum(self.k, 1), self.groups)  # padding: K = 0

    def compression_rates(self, choice) -> np.ndarray:
        """CR of (N, L) candidate indices (the formula with each candidate's codebook count)."""
        c = np.asarray(choice, dtype=np.int64)
        return compression_rates(self.n_weights, self.gather(self.k, c), self.gather(self.groups, c))

    def check_choice(self, choice) -> np.ndarray:
        """A stored choice vector, checked against the candidates (a table from other candidates fails)."""
        c = np.asarray(choice, dtype=np.int64)
        if c.shape != (len(self.layer_names),) or np.any(c < 0) or np.any(c >= self.sizes):
            raise ValueError(f"choice {c.tolist()} does not index these candidates (sizes {self.sizes.tolist()})")
        return c

    def layer_values(self, choice) -> dict[str, np.ndarray]:
        """Per-layer sweep values of (N, L) candidate indices: what the surrogate's features are made of."""
        c = np.asarray(choice, dtype=np.int64)
        rows = np.arange(len(self.layer_names))
        return {"al": self.al[rows, c], "kl": self.kl[rows, c], "inertia": self.inertia[rows, c]}

    def codebooks_of(self, choice) -> dict:
        return {n: self.codebooks[i][int(c)] for i, (n, c) in enumerate(zip(self.layer_names, choice))}


def run(*, sweep_files: list[str], layers_parquet: str, baseline_json: str, bound: float, signal: str,
        out: str) -> None:
    layers = read_parquet(layers_parquet).to_pylist()
    sweeps = read_sweeps(sweep_files)
    missing = [l["name"] for l in layers if l["name"] not in sweeps]
    if missing:
        raise ValueError(f"candidates: no sweep for layers {missing}")
    baseline = read_json(baseline_json)
    table = select_candidates(sweeps, [l["name"] for l in layers], baseline["calib_accuracy"], bound, signal)
    write_parquet(table, out)
    log.info("candidates: %d over %d layers (lowest %s per bit-width within the bound)", table.num_rows,
             len(layers), signal)
