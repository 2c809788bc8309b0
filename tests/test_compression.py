import numpy as np
import pytest

from weight_sharing.compression import compression_rate, compression_rates, index_bits


def test_seed_example():
    # the slides: W = 25, K = 5 -> 800 / 235 = 3.40
    assert compression_rate([25], [5]) == pytest.approx(800 / 235)
    assert round(compression_rate([25], [5]), 2) == 3.40


def test_index_bits():
    assert [index_bits(k) for k in (1, 2, 3, 4, 5, 8, 9, 256, 257, 1024)] == [0, 1, 2, 2, 3, 3, 4, 8, 9, 10]
    with pytest.raises(ValueError, match="K must be >= 1"):
        index_bits(0)


def test_totals_not_average_of_ratios():
    w, k = [1000, 10], [2, 256]
    expected = (1010 * 32) / (1000 * 1 + 2 * 32 + 10 * 8 + 256 * 32)
    assert compression_rate(w, k) == pytest.approx(expected)


def test_vectorised_matches_scalar():
    rng = np.random.default_rng(0)
    w = rng.integers(10, 10_000, size=7)
    ks = rng.integers(1, 1025, size=(50, 7))
    vec = compression_rates(w, ks)
    for row, cr in zip(ks, vec):
        assert cr == pytest.approx(compression_rate(w, row))


def test_length_mismatch():
    with pytest.raises(ValueError, match="2 layers but 1 K"):
        compression_rate([1, 2], [4])
