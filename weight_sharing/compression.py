"""Compression rate of a weight-shared network (the seed paper's formula, on totals)."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

FLOAT_BITS = 32


def index_bits(k: int) -> int:
    """Bits of one index into a codebook of k entries: ceil(log2 k), 0 for k = 1."""
    if k < 1:
        raise ValueError(f"K must be >= 1, got {k}")
    return int(math.ceil(math.log2(k))) if k > 1 else 0


def shared_bits(n_weights, k, groups=1, float_bits: int = FLOAT_BITS):
    """Bits of one shared layer: an index per weight plus G codebooks of K float entries
    (element-wise over arrays of layers or candidates)."""
    w, kk, g = np.asarray(n_weights, dtype=np.int64), np.asarray(k, dtype=np.int64), np.asarray(groups, dtype=np.int64)
    if np.any(kk < 1):
        raise ValueError(f"K must be >= 1, got {kk.min()}")
    if np.any(g < 1):
        raise ValueError(f"codebook count must be >= 1, got {g.min()}")
    bits = np.where(kk > 1, np.ceil(np.log2(np.maximum(kk, 1))), 0).astype(np.int64)
    out = w * bits + g * kk * float_bits
    return int(out) if out.ndim == 0 else out


def compression_rate(n_weights: Sequence[int], ks: Sequence[int], groups: Sequence[int] | None = None,
                     float_bits: int = FLOAT_BITS) -> float:
    """CR = sum(W*B) / sum(W*ceil(log2 K) + G*K*B) over the shared layers (G = 1: the paper's formula).

    Total bits over total bits, never an average of per-layer ratios.
    """
    if len(n_weights) != len(ks) or (groups is not None and len(groups) != len(ks)):
        raise ValueError(f"{len(n_weights)} layers but {len(ks)} K values"
                         + ("" if groups is None else f" and {len(groups)} codebook counts"))
    return float(compression_rates(np.asarray(n_weights), np.asarray(ks)[None],
                                   None if groups is None else np.asarray(groups)[None], float_bits)[0])


def compression_rates(n_weights: np.ndarray, ks: np.ndarray, groups: np.ndarray | None = None,
                      float_bits: int = FLOAT_BITS) -> np.ndarray:
    """Vectorised ``compression_rate`` for a (combinations x layers) array of K (and of codebook counts)."""
    w = np.asarray(n_weights, dtype=np.int64)
    k = np.asarray(ks, dtype=np.int64)
    g = np.ones_like(k) if groups is None else np.asarray(groups, dtype=np.int64)
    comp = shared_bits(w, k, g, float_bits).sum(axis=-1)
    return (w.sum() * float_bits / np.asarray(comp, dtype=np.float64))
