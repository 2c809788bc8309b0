"""Pareto fronts of (compression rate: higher is better, accuracy loss: lower is better)."""
from __future__ import annotations

import numpy as np


def pareto_mask(cr, al) -> np.ndarray:
    """True for points no other point dominates (CR >= and AL <=, one strictly); duplicates all kept."""
    cr = np.asarray(cr, dtype=np.float64)
    al = np.asarray(al, dtype=np.float64)
    mask = np.ones(len(cr), dtype=bool)
    for i in range(len(cr)):
        dom = (cr >= cr[i]) & (al <= al[i]) & ((cr > cr[i]) | (al < al[i]))
        mask[i] = not dom.any()
    return mask


def best_cr_within(cr, accuracy, min_accuracy: float) -> float | None:
    """Highest CR among points whose accuracy is at least ``min_accuracy``; None if none is."""
    cr = np.asarray(cr, dtype=np.float64)
    ok = np.asarray(accuracy, dtype=np.float64) >= min_accuracy - 1e-12
    return float(cr[ok].max()) if ok.any() else None
