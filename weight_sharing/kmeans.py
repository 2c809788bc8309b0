"""Optimal 1-D k-means for every K of a grid in one pass.

In 1-D an optimal k-means cluster is an interval of the sorted values, so the
optimum is a dynamic program over prefixes: D[k][i] = min_j D[k-1][j] + cost(j, i).
The argmin is monotone in i (and in k), which lets each DP row be solved by
divide and conquer in O(n log n), and rows of larger k by a scan bounded on both
sides in a few evaluations per point; one pass over k = 1..max(K) yields the
optimum of every K of the grid at once.

The DP runs on weighted points: the distinct weight values with their counts
(exact), or, for layers with more distinct values than ``max_bins``, the
non-empty bins of a histogram (half equal-width, half equal-count edges) with
their exact count, sum and sum of squares. In the binned case the clusters may only break at bin edges; Lloyd
iterations on the exact values then move the boundaries off the bin edges
(each step can only lower the inertia), which brings the result within a few
1e-5 of the optimum (see ``benchmarks/kmeans.py``).

The paper's engine (Lloyd's iterations from a linspace init) is not used: it
stops after a few iterations at 2-3x the optimal inertia for K >= 16.
"""
from __future__ import annotations

import numba
import numpy as np

from .codebook import Codebook, assign

DEFAULT_MAX_BINS = 1 << 16


def _bin_starts(uniq: np.ndarray, before: np.ndarray, max_bins: int) -> np.ndarray:
    """Index (into the sorted distinct values) of the first value of each histogram bin.

    The bin edges are the union of ``max_bins // 2`` equal-width edges (resolution in the
    sparse tails, where outliers sit) and ``max_bins // 2`` equal-count edges (resolution
    where the weights are dense): at most ``max_bins`` non-empty bins. ``before[i]`` is the
    number of weights below ``uniq[i]``.
    """
    half = max(1, max_bins // 2)
    edges = np.linspace(uniq[0], uniq[-1], half + 1)
    width = np.clip(np.searchsorted(edges, uniq, side="right") - 1, 0, half - 1)
    by_width = np.flatnonzero(np.diff(width, prepend=-1))  # width is sorted: where a new bin begins
    total = before[-1] + 1  # at least; only the spacing of the targets matters
    by_count = np.searchsorted(before, np.arange(half) * (total / half), side="left")
    return np.unique(np.concatenate(([0], by_width, np.clip(by_count, 0, len(uniq) - 1))))


def _lloyd(starts: np.ndarray, uc: np.ndarray, pw, ps, max_iter: int = 200) -> np.ndarray:
    """Lloyd iterations on the exact distinct values, from a near-optimal partition.

    Each step (assign to the nearest centroid, move centroids to the means) can only lower
    the inertia; with prefix sums a step costs O(K log n). Stops when the partition is
    stable or a cluster would empty.
    """
    n = len(uc)
    for _ in range(max_iter):
        ends = np.append(starts[1:], n)
        cent = (ps[ends] - ps[starts]) / (pw[ends] - pw[starts])
        new = np.concatenate(([0], np.searchsorted(uc, 0.5 * (cent[:-1] + cent[1:]), side="right")))
        if np.any(np.diff(new) <= 0) or new[-1] >= n or np.array_equal(new, starts):
            break
        starts = new
    return starts


@numba.njit(cache=True, nogil=True)
def _cost(cw, cs, css, j, i):
    w = cw[i] - cw[j]
    s = cs[i] - cs[j]
    c = (css[i] - css[j]) - s * s / w
    return c if c > 0.0 else 0.0


@numba.njit(cache=True, nogil=True)
def _dp(cw, cs, css, kmax):
    """DP over prefixes; returns the argmin table (kmax+1, n+1) that the clusters are backtracked from.

    Row k is solved by divide and conquer (O(n log n)) while k is small; once a
    downward scan bounded by opt[k-1][i] <= opt[k][i] <= opt[k][i+1] would cost
    less (from k of about 64 on, where it costs 2-4 evaluations per point), the
    remaining rows use that scan. Both keep the leftmost minimum, so the table
    does not depend on which solved a row.
    """
    n = len(cw) - 1
    prev = np.empty(n + 1)
    cur = np.empty(n + 1)
    opt = np.zeros((kmax + 1, n + 1), dtype=np.int32)
    for i in range(n + 1):
        prev[i] = _cost(cw, cs, css, 0, i) if i > 0 else 0.0
    stack = np.empty((4 * 64 + 8, 4), dtype=np.int64)
    knuth = False
    for k in range(2, kmax + 1):
        for i in range(k):
            cur[i] = np.inf
        if knuth:
            # opt[k-1][i] <= opt[k][i] <= opt[k][i+1]: scan i downwards
            hi_next = n - 1
            for i in range(n, k - 1, -1):
                lo = opt[k - 1, i] if opt[k - 1, i] > k - 1 else k - 1
                hi = hi_next if hi_next < i - 1 else i - 1
                if lo > hi:  # bounds crossed by rounding: never leave a row without a candidate
                    lo = hi
                bj = lo
                bv = np.inf
                for j in range(lo, hi + 1):
                    v = prev[j] + _cost(cw, cs, css, j, i)
                    if v < bv:
                        bv = v
                        bj = j
                cur[i] = bv
                opt[k, i] = bj
                hi_next = bj
        else:
            evals = 0
            stack[0, 0] = k
            stack[0, 1] = n
            stack[0, 2] = k - 1
            stack[0, 3] = n - 1
            top = 1
            while top > 0:
                top -= 1
                lo = stack[top, 0]
                hi = stack[top, 1]
                olo = stack[top, 2]
                ohi = stack[top, 3]
                if lo > hi:
                    continue
                mid = (lo + hi) // 2
                # opt[k-1][mid] <= opt[k][mid] (monotone in k too): skips most of the range
                start = opt[k - 1, mid] if k > 2 and opt[k - 1, mid] > olo else olo
                bv = np.inf
                end = ohi if ohi < mid - 1 else mid - 1
                if start > end:
                    start = end
                bj = start
                for j in range(start, end + 1):
                    v = prev[j] + _cost(cw, cs, css, j, mid)
                    if v < bv:
                        bv = v
                        bj = j
                evals += end - start + 1
                cur[mid] = bv
                opt[k, mid] = bj
                # push right then left so the left half is solved first
                stack[top, 0] = mid + 1
                stack[top, 1] = hi
                stack[top, 2] = bj
                stack[top, 3] = ohi
                top += 1
                stack[top, 0] = lo
                stack[top, 1] = mid - 1
                stack[top, 2] = olo
                stack[top, 3] = bj
                top += 1
            # what the downward scan would have cost on this row; it only shrinks as k grows
            scan = 0
            for i in range(k, n):
                lo = opt[k - 1, i] if opt[k - 1, i] > k - 1 else k - 1
                scan += opt[k, i + 1] - lo + 1
            if scan < evals:
                knuth = True
        for i in range(n + 1):
            prev[i] = cur[i]
    return opt


def _backtrack(opt: np.ndarray, k: int, n: int) -> np.ndarray:
    """Start index of each of the k clusters (ascending), from the argmin table."""
    starts = np.empty(k, dtype=np.int64)
    i = n
    for kk in range(k, 0, -1):
        j = int(opt[kk, i]) if kk > 1 else 0
        starts[kk - 1] = j
        i = j
    return starts


def kmeans_grid(values, ks, max_bins: int = DEFAULT_MAX_BINS) -> dict[int, Codebook]:
    """Optimal (or bin-aligned optimal) 1-D k-means codebooks for every K in ``ks``.

    Deterministic: the same input gives the same codebooks bit for bit. K = 1 is
    the mean; K at or above the number of distinct values gives one entry per
    distinct value (zero inertia); constant inputs give one entry.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        raise ValueError("kmeans_grid: empty input, nothing to cluster")
    if not np.all(np.isfinite(v)):
        raise ValueError("kmeans_grid: input contains NaN or infinite values")
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ValueError(f"kmeans_grid: every K must be >= 1, got {ks}")
    if max_bins < 2:
        raise ValueError(f"kmeans_grid: max_bins must be >= 2, got {max_bins}")
    shift = float(np.mean(v))  # centre before squaring: keeps prefix sums well conditioned
    uniq, counts = np.unique(v, return_counts=True)
    uc = uniq - shift
    c = counts.astype(np.float64)
    # exact prefix sums over the distinct values
    pw = np.concatenate(([0.0], np.cumsum(c)))
    ps = np.concatenate(([0.0], np.cumsum(uc * c)))
    pss = np.concatenate(([0.0], np.cumsum(uc * uc * c)))
    binned = len(uniq) > max_bins
    # DP points: the distinct values, or histogram bins (contiguous runs of distinct values),
    # whose count, sum and sum of squares are the exact prefix sums at the bin boundaries
    first = _bin_starts(uniq, pw[:-1], max_bins) if binned else np.arange(len(uniq))
    bounds = np.append(first, len(uniq))
    n = len(first)
    kmax = min(max(ks), n)
    opt = _dp(pw[bounds], ps[bounds], pss[bounds], kmax)
    out: dict[int, Codebook] = {}
    for k in ks:
        starts = first[_backtrack(opt, min(k, n), n)]
        if binned:
            starts = _lloyd(starts, uc, pw, ps)
        ends = np.append(starts[1:], len(uniq))
        w, sm = pw[ends] - pw[starts], ps[ends] - ps[starts]
        cent32 = (sm / w + shift).astype(np.float32)
        # a cluster starts at its smallest value: exact in the weights' own dtype, so
        # applying the codebook reproduces the partition
        thr = uniq[starts[1:]]
        # inertia from the prefix sums, about the stored float32 centroids
        d = cent32.astype(np.float64) - shift
        inertia = float(np.sum((pss[ends] - pss[starts]) - 2 * d * sm + d * d * w))
        out[k] = Codebook(k=k, thresholds=thr, centroids=cent32, inertia=max(inertia, 0.0))
    return out


def inertia(values: np.ndarray, codebook: Codebook) -> float:
    """Sum of squared errors of ``values`` approximated by ``codebook`` (direct, for checks)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    d = v - codebook.centroids.astype(np.float64)[assign(v, codebook)]
    return float(np.dot(d, d))
