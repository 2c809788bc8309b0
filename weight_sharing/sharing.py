"""Codebook granularity: one codebook per tensor (the paper's) or one per group of output channels.

``grouped_channel``: output channels [g x group, (g + 1) x group) of a layer share codebook g;
when the channel count is not a multiple of ``group`` the last group holds the rest. Each
group's codebook is the optimal 1-D k-means of that group's weights. The groups' codebooks
are the rows of one (G, size) array: a group with fewer distinct values than the others is
padded (thresholds with +inf, never crossed; centroids with their last value, never
indexed). Every stage applies and stores codebooks through this module, so the sweep, the
search, validation and the export compute the same shared weights.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .codebook import Codebook, assign
from .compression import index_bits, shared_bits


def group_count(out_channels: int, group: int) -> int:
    """Codebooks of a layer with ``out_channels`` output channels at ``group`` channels per codebook."""
    if group < 1:
        raise ValueError(f"sharing.group must be >= 1, got {group}")
    return math.ceil(int(out_channels) / int(group))


def _grouped_counts(out_channels: int, group: int) -> list[int]:
    g = group_count(out_channels, group)
    return [1] if g == 1 else [1, g]


# sharing.granularity -> the codebook counts a layer with this many output channels is swept with at
# ``sharing.group`` channels per codebook: per tensor only (the paper's), or per tensor and per group
# of output channels (the search may choose either at each bit-width)
GRANULARITIES = {
    "tensor": lambda out_channels, group: [1],
    "grouped_channel": _grouped_counts,
}


def layer_group_counts(shape, granularity: str, group: int) -> list[int]:
    """The codebook counts a layer of weight ``shape`` is swept with (see :data:`GRANULARITIES`; just [1]
    when the layer has a single group)."""
    if granularity not in GRANULARITIES:
        raise ValueError(f"sharing.granularity: {granularity!r}; allowed: {', '.join(GRANULARITIES)}")
    return GRANULARITIES[granularity](shape[0], group)


def grouped_ks(ks, n_weights: int, groups: int) -> list[int]:
    """The K of ``ks`` at which a layer's ``groups`` codebooks are worth sweeping: those that take fewer
    bits than one codebook for the tensor one index bit wider (2^(bits + 1) values). Beyond, the grouped
    codebooks cost more than a finer per-tensor codebook; with one codebook per channel and large K
    they would cost more than the indices themselves, and clustering every channel at every K of the
    grid would dominate the sweep of a wide layer."""
    return [int(k) for k in ks
            if shared_bits(n_weights, k, groups) < shared_bits(n_weights, 2 ** (index_bits(k) + 1))]


def grouped_codebooks(weight: np.ndarray, ks, group: int, max_bins: int) -> dict[int, Codebook]:
    """For every K of ``ks``: one optimal 1-D k-means codebook per group of ``group`` output channels."""
    from .kmeans import kmeans_grid  # numba, compiled on first use: only the sweep clusters

    w2 = np.asarray(weight).reshape(np.shape(weight)[0], -1)
    groups = group_count(w2.shape[0], group)
    per_group = [kmeans_grid(w2[g * group:(g + 1) * group], ks, max_bins=max_bins) for g in range(groups)]
    out = {}
    for k in sorted({int(k) for k in ks}):
        books = [pg[k] for pg in per_group]
        size = max(b.size for b in books)
        thr = np.full((groups, size - 1), np.inf)
        cent = np.empty((groups, size), dtype=np.float32)
        for g, b in enumerate(books):
            thr[g, :b.size - 1] = b.thresholds
            cent[g, :b.size] = b.centroids
            cent[g, b.size:] = b.centroids[-1]
        out[k] = Codebook(k=k, thresholds=thr, centroids=cent, inertia=float(sum(b.inertia for b in books)),
                          group=int(group))
    return out


def row_groups(out_channels: int, codebook: Codebook) -> np.ndarray:
    """The codebook row of each output channel (all 0 for a tensor codebook)."""
    if codebook.group == 0:
        return np.zeros(out_channels, dtype=np.int64)
    rows = np.arange(out_channels) // codebook.group
    if rows[-1] != codebook.groups - 1:
        raise ValueError(f"a codebook of {codebook.groups} groups of {codebook.group} channels does not fit "
                         f"{out_channels} output channels")
    return rows


def assign_weight(weight: np.ndarray, codebook: Codebook) -> np.ndarray:
    """Index of each weight into its codebook (the codebook of its channel's group), in the weight's shape."""
    w = np.asarray(weight)
    if codebook.group == 0:
        return assign(w, codebook)
    w2 = w.reshape(w.shape[0], -1)
    rows = row_groups(w.shape[0], codebook)
    idx = np.empty(w2.shape, dtype=np.int64)
    for g in range(codebook.groups):
        sel = rows == g
        idx[sel] = np.searchsorted(codebook.thresholds[g], w2[sel], side="right")
    return idx.reshape(w.shape)


def codebook_values(idx: np.ndarray, codebook: Codebook) -> np.ndarray:
    """The shared weights of an index array (in the weight's shape)."""
    cent = np.asarray(codebook.centroids)
    if codebook.group == 0:
        return cent[idx]
    i2 = idx.reshape(idx.shape[0], -1)
    return np.take_along_axis(cent[row_groups(idx.shape[0], codebook)], i2, axis=1).reshape(idx.shape)


def shared_weight(original: torch.Tensor, codebook: Codebook) -> tuple[torch.Tensor, torch.Tensor]:
    """(indices, shared weights) of a layer's original weights under ``codebook``, on their device.

    Thresholds are exact in the weights' dtype (each is the smallest weight of its cluster),
    so this reproduces the partition the codebook was made from.
    """
    thr = torch.as_tensor(np.asarray(codebook.thresholds), dtype=original.dtype, device=original.device)
    cent = torch.as_tensor(np.asarray(codebook.centroids), dtype=original.dtype, device=original.device)
    if codebook.group == 0:
        idx = torch.bucketize(original, thr, right=True)
        return idx, cent[idx]
    rows = torch.as_tensor(row_groups(original.shape[0], codebook), device=original.device)
    w2 = original.reshape(original.shape[0], -1)
    idx = torch.searchsorted(thr[rows].contiguous(), w2.contiguous(), right=True)
    return idx.view(original.shape), cent[rows].gather(1, idx).view(original.shape)
