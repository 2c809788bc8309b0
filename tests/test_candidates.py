import numpy as np
import pyarrow as pa
import pytest

from weight_sharing.candidates import select_candidates, select_layer_candidates
from weight_sharing.compression import index_bits
from weight_sharing.tables import CandidateSet


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
    assert cs.check_choice([1, 0]).tolist() == [1, 0]
    for bad in ([2, 0], [0], [-1, 0]):
        with pytest.raises(ValueError, match="does not index"):
            cs.check_choice(bad)
    # CR from the candidates: (100 + 50) x 32 bits over 100 x 2 + 4 x 32 + 50 x 3 + 8 x 32 bits
    assert cs.compression_rates(np.array([[1, 0]]))[0] == pytest.approx(150 * 32 / (200 + 128 + 150 + 256))
    assert isinstance(table, pa.Table)


def test_grouped_and_tensor_candidates_kept_per_bit_width():
    rows = [dict(row(4, 0.9), groups=1, kl=0.3), dict(row(4, 0.9), groups=5, kl=0.1),
            dict(row(3, 0.9), groups=5, kl=0.2), dict(row(8, 0.9), groups=1, kl=0.05)]
    kept, fallback = select_layer_candidates(rows, 0.9, 0.99, "kl")
    # 2 bits: tensor K=4 and grouped (K=4 beats K=3 on KL); 3 bits: tensor K=8
    assert not fallback
    assert [(r["k"], r["groups"]) for r in kept] == [(4, 1), (4, 5), (8, 1)]
    # nothing in bound: the largest per-tensor K, never a grouped one
    kept, fallback = select_layer_candidates([dict(row(4, 0.5), groups=1), dict(row(8, 0.5), groups=5)], 0.9, 0.99)
    assert fallback and [(r["k"], r["groups"]) for r in kept] == [(4, 1)]


def test_candidates_restricted_to_the_index_widths_of_a_format():
    """candidates.formats [coreml]: no 5-, 7-, 9- or 10-bit candidate; the fallback keeps the largest allowed K."""
    from weight_sharing.formats import allowed_index_bits

    bits = allowed_index_bits(["coreml"])
    assert bits == {1, 2, 3, 4, 6, 8} and allowed_index_bits([]) is None and allowed_index_bits(["onnx"]) is None
    rows = [{"layer": "l", "k": 2 ** b, "bits": b, "accuracy": 0.9 + 0.001 * b, "al": 0.1 - 0.001 * b,
             "kl": 1.0 / b, "groups": 1} for b in range(1, 11)]
    kept, fallback = select_layer_candidates(rows, 0.905, 0.999, "kl", bits)  # within the bound: 5 bits and up
    assert not fallback and sorted(r["bits"] for r in kept) == [6, 8]
    kept, fallback = select_layer_candidates(rows, 1.0, 0.99, "kl", bits)  # nothing within the bound
    assert fallback and kept[0]["k"] == 256
    kept, _ = select_layer_candidates(rows, 1.0, 0.99, "kl")
    assert kept[0]["k"] == 1024
    with pytest.raises(ValueError, match="layer 'l' has no sweep row at the index widths"):
        select_layer_candidates([r for r in rows if r["bits"] in (5, 7)], 0.91, 0.99, "kl", bits)
