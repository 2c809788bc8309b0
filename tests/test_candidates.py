import pyarrow as pa
import pytest

from weight_sharing.candidates import CandidateSet, select_candidates, select_layer_candidates
from weight_sharing.compression import index_bits


def row(k, acc, base=0.9):
    return {"layer": "l", "k": k, "bits": index_bits(k), "accuracy": acc, "al": base - acc, "inertia": 1.0 / k,
            "thresholds": [0.0] * (k - 1), "centroids": [0.0] * k, "codebook_size": k}


def test_best_per_bit_width_within_bound():
    rows = [row(2, 0.80), row(3, 0.895), row(4, 0.897), row(5, 0.899), row(6, 0.899), row(8, 0.898)]
    kept, fallback = select_layer_candidates(rows, 0.9, 0.99)  # threshold 0.891
    assert not fallback
    # bits 1: K=2 fails the bound; bits 2: K=4 best; bits 3: K=5 and 6 tie -> smaller K
    assert [r["k"] for r in kept] == [4, 5]


def test_fallback_keeps_largest_k():
    rows = [row(2, 0.5), row(4, 0.6), row(16, 0.7)]
    kept, fallback = select_layer_candidates(rows, 0.9, 0.99)
    assert fallback and [r["k"] for r in kept] == [16]


def test_bound_checked():
    with pytest.raises(ValueError, match="bound"):
        select_layer_candidates([row(2, 0.9)], 0.9, 1.5)


def test_candidate_set_indexing():
    sweeps = {"a": [dict(row(2, 0.9), layer="a"), dict(row(4, 0.9), layer="a")],
              "b": [dict(row(8, 0.9), layer="b")]}
    table = select_candidates(sweeps, ["a", "b"], 0.9, 0.99)
    cs = CandidateSet(table, [{"name": "a", "weights": 100}, {"name": "b", "weights": 50}])
    assert cs.sizes.tolist() == [2, 1]
    assert cs.gather(cs.k, [1, 0]).tolist() == [4, 8]
    assert cs.choice_of_ks([4, 8]).tolist() == [1, 0]
    with pytest.raises(ValueError, match="not a candidate"):
        cs.choice_of_ks([3, 8])
    assert isinstance(table, pa.Table)
