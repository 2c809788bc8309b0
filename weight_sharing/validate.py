"""Final validation: the predicted front measured for real on the held-out test split; the uniform reference."""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from .candidates import CandidateSet
from .compression import compression_rates
from .evaluate import Evaluator, Progress
from .kmeans import Codebook
from .pareto import pareto_mask

VALIDATED_SCHEMA = pa.schema([
    ("point", pa.int64()), ("k", pa.list_(pa.int64())), ("cr", pa.float64()),
    ("predicted_al", pa.float64()),
    ("calib_accuracy", pa.float64()), ("calib_al", pa.float64()),
    ("test_accuracy", pa.float64()), ("test_al", pa.float64()),
    ("on_front", pa.bool_()), ("within_bound", pa.bool_()),
])


def validate_front(front: pa.Table, cands: CandidateSet, calib: Evaluator, test: Evaluator,
                   baseline: dict, bound: float) -> pa.Table:
    """Every predicted point on both splits; ``on_front`` marks the Pareto set on the test split."""
    rows = []
    progress = Progress(front.num_rows, "validate")
    for i, r in enumerate(front.to_pylist()):
        books = cands.codebooks_of(r["choice"])
        calib.apply(books)
        test.apply(books)
        ca, ta = calib.accuracy(), test.accuracy()
        rows.append({"point": r["point"], "k": r["k"], "cr": r["cr"], "predicted_al": r["predicted_al"],
                     "calib_accuracy": ca, "calib_al": baseline["calib_accuracy"] - ca,
                     "test_accuracy": ta, "test_al": baseline["test_accuracy"] - ta})
        progress.step(i + 1)
    calib.restore()
    test.restore()
    if rows:
        mask = pareto_mask([r["cr"] for r in rows], [r["test_al"] for r in rows])
        for r, m in zip(rows, mask):
            r["on_front"] = bool(m)
            r["within_bound"] = r["test_accuracy"] >= bound * baseline["test_accuracy"] - 1e-12
    return pa.Table.from_pylist(rows, schema=VALIDATED_SCHEMA)


UNIFORM_SCHEMA = pa.schema([
    ("k", pa.int64()), ("cr", pa.float64()),
    ("calib_accuracy", pa.float64()), ("calib_al", pa.float64()),
    ("test_accuracy", pa.float64()), ("test_al", pa.float64()),
])


def evaluate_uniform(books_per_k: dict[int, dict[str, Codebook]], n_weights: np.ndarray,
                     calib: Evaluator, test: Evaluator, baseline: dict) -> pa.Table:
    """Every layer the same K (capped at its weight count): the reference a per-layer choice must beat."""
    rows = []
    for k, books in sorted(books_per_k.items()):
        ks = np.array([b.k for b in books.values()])
        calib.apply(books)
        test.apply(books)
        ca, ta = calib.accuracy(), test.accuracy()
        rows.append({"k": k, "cr": float(compression_rates(n_weights, ks)),
                     "calib_accuracy": ca, "calib_al": baseline["calib_accuracy"] - ca,
                     "test_accuracy": ta, "test_al": baseline["test_accuracy"] - ta})
    calib.restore()
    test.restore()
    return pa.Table.from_pylist(rows, schema=UNIFORM_SCHEMA)
