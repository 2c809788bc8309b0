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


def shared_bits(n_weights: int, k: int, float_bits: int = FLOAT_BITS) -> int:
    """Bits of one shared layer: an index per weight plus K float codebook entries."""
    return n_weights * index_bits(k) + k * float_bits


def compression_rate(n_weights: Sequence[int], ks: Sequence[int],
                     float_bits: int = FLOAT_BITS) -> float:
    """CR = sum(W*B) / sum(W*ceil(log2 K) + K*B) over the shared layers.

    Total bits over total bits, never an average of per-layer ratios.
    """
    if len(n_weights) != len(ks):
        raise ValueError(f"{len(n_weights)} layers but {len(ks)} K values")
    base = sum(int(w) * float_bits for w in n_weights)
    comp = sum(shared_bits(int(w), int(k), float_bits) for w, k in zip(n_weights, ks))
    return base / comp


def compression_rates(n_weights: np.ndarray, ks: np.ndarray,
                      float_bits: int = FLOAT_BITS) -> np.ndarray:
    """Vectorised ``compression_rate`` for a (combinations x layers) array of K."""
    w = np.asarray(n_weights, dtype=np.float64)
    k = np.asarray(ks, dtype=np.int64)
    if np.any(k < 1):
        raise ValueError("every K must be >= 1")
    bits = np.ceil(np.log2(k)).astype(np.float64)
    comp = (bits * w).sum(axis=-1) + (k * float_bits).sum(axis=-1)
    return w.sum() * float_bits / comp
