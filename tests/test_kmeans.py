import itertools

import kmeans1d
import numpy as np
import pytest

from weight_sharing.codebook import assign
from weight_sharing.kmeans import inertia, kmeans_grid


def brute_force(x, k):
    """Optimal inertia over every partition of the sorted values into k intervals."""
    x = np.sort(np.asarray(x, dtype=np.float64))
    best = np.inf
    for cuts in itertools.combinations(range(1, len(x)), k - 1):
        parts = np.split(x, cuts)
        best = min(best, sum(float(((p - p.mean()) ** 2).sum()) for p in parts))
    return best


@pytest.mark.parametrize("seed", range(6))
def test_matches_brute_force_on_small_inputs(seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(9).astype(np.float32)
    books = kmeans_grid(x, [1, 2, 3, 4, 5])
    for k, cb in books.items():
        assert cb.inertia == pytest.approx(brute_force(x, k), rel=1e-9, abs=1e-12)
        # the stored thresholds reproduce the optimal partition
        assert inertia(x, cb) == pytest.approx(cb.inertia, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("dist", ["normal", "laplace", "bimodal"])
def test_within_0_1_percent_of_exact_solver(dist):
    rng = np.random.default_rng(1)
    n = 3000
    x = {"normal": rng.standard_normal(n), "laplace": rng.laplace(size=n),
         "bimodal": np.concatenate([rng.normal(-1, 0.1, n // 2), rng.normal(2, 0.3, n - n // 2)])}[dist]
    x = (0.05 * x).astype(np.float32)
    ks = [2, 3, 7, 16, 33, 100, 256, 1024]
    books = kmeans_grid(x, ks)
    for k in ks:
        labels, cent = kmeans1d.cluster(x.astype(np.float64), k)
        ref = float(((x.astype(np.float64) - np.asarray(cent)[labels]) ** 2).sum())
        assert books[k].inertia <= ref * 1.001 + 1e-15, (k, books[k].inertia, ref)
        assert inertia(x, books[k]) == pytest.approx(books[k].inertia, rel=1e-6, abs=1e-12)


def test_histogram_mode_stays_close_to_optimum():
    rng = np.random.default_rng(2)
    x = (0.02 * rng.standard_normal(40_000)).astype(np.float32)
    ks = [2, 8, 32, 64]
    exact = kmeans_grid(x, ks, max_bins=1 << 20)
    binned = kmeans_grid(x, ks, max_bins=4096)  # forces the histogram DP
    for k in ks:
        assert binned[k].inertia >= exact[k].inertia * (1 - 1e-9)
        assert binned[k].inertia <= exact[k].inertia * 1.001
        assert inertia(x, binned[k]) == pytest.approx(binned[k].inertia, rel=1e-6)


def test_histogram_mode_above_k_64_against_the_exact_dp():
    """K beyond 64 in the binned path (rows solved by the bounded scan) stays within 0.05% of the exact DP
    at 64 bins per cluster (the ratio of 2^16 bins at K = 1024)."""
    rng = np.random.default_rng(4)
    x = (0.02 * rng.standard_t(4, 40_000)).astype(np.float32)
    ks = [96, 128, 200, 256]
    exact = kmeans_grid(x, ks, max_bins=1 << 20)
    binned = kmeans_grid(x, ks, max_bins=16384)
    for k in ks:
        assert exact[k].inertia * (1 - 1e-9) <= binned[k].inertia <= exact[k].inertia * 1.0005, k
        assert inertia(x, binned[k]) == pytest.approx(binned[k].inertia, rel=1e-6)


def test_deterministic():
    x = np.random.default_rng(3).standard_normal(5000).astype(np.float32)
    a, b = kmeans_grid(x, [4, 64]), kmeans_grid(x.copy(), [4, 64])
    for k in (4, 64):
        assert np.array_equal(a[k].centroids, b[k].centroids)
        assert np.array_equal(a[k].thresholds, b[k].thresholds)
        assert a[k].inertia == b[k].inertia


def test_edge_cases():
    x = np.array([0.5, -1.0, 2.0, 0.5], dtype=np.float32)
    books = kmeans_grid(x, [1, 3, 4, 10])
    assert books[1].centroids.tolist() == [pytest.approx(0.5)]
    assert len(books[1].thresholds) == 0
    # K >= distinct values: one entry per distinct value, zero inertia, K kept as requested
    for k in (3, 4, 10):
        assert books[k].k == k
        assert books[k].size == 3
        assert books[k].inertia == 0.0
        assert np.array_equal(books[k].centroids[assign(x, books[k])], x)
    const = np.full(100, 0.25, dtype=np.float32)
    cb = kmeans_grid(const, [1, 2, 16])[16]
    assert cb.size == 1 and cb.inertia == 0.0 and cb.centroids[0] == np.float32(0.25)


def test_bad_input():
    with pytest.raises(ValueError, match="empty"):
        kmeans_grid(np.array([], dtype=np.float32), [2])
    with pytest.raises(ValueError, match="K must be >= 1"):
        kmeans_grid(np.ones(4), [0, 2])
    with pytest.raises(ValueError, match="NaN"):
        kmeans_grid(np.array([1.0, np.nan]), [2])
