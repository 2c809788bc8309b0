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
