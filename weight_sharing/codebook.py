"""A layer's codebook: K shared values and the thresholds that assign each weight to one of them.

The type every stage passes around (the sweep makes codebooks, the candidates store them, the
evaluator and the export apply them); light to import, unlike the k-means that computes them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Codebook:
    """A layer's shared values: ``centroids[searchsorted(thresholds, w, 'right')]`` approximates w.

    ``thresholds`` (K-1 ascending, float64; each is the smallest weight of its
    cluster, so exact in float32) split the real line into K intervals;
    ``centroids`` (float32) is the value stored for each interval. With fewer
    distinct weights than the requested K, the codebook holds one entry per
    distinct value (``len(centroids) < k``); ``k`` stays the requested count.
    ``group`` > 0: one codebook per group of ``group`` output channels (2-D arrays,
    built by ``weight_sharing.sharing.grouped_codebooks``).
    """

    k: int
    thresholds: np.ndarray
    centroids: np.ndarray
    inertia: float
    group: int = 0

    @property
    def size(self) -> int:
        """Entries per codebook (at most ``k``; the same for every group of a grouped codebook)."""
        return int(np.shape(self.centroids)[-1])

    @property
    def groups(self) -> int:
        """Codebooks stored: 1 for the tensor, one per group of ``group`` output channels otherwise
        (``thresholds``/``centroids`` then have one row per group, see ``weight_sharing.sharing``)."""
        return 1 if np.ndim(self.centroids) == 1 else int(np.shape(self.centroids)[0])


def assign(values: np.ndarray, codebook: Codebook) -> np.ndarray:
    """Index of each value's interval in ``codebook``."""
    return np.searchsorted(codebook.thresholds, values, side="right")
