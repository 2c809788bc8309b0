"""Stage uniform: every layer the same K, on both splits: the reference a per-layer choice must beat
(what a user gets from uniform palettization without any search). One codebook per tensor; the
configured corrections (refit centroids from the sweep, bias correction, BatchNorm re-estimation)
apply here too."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from .compression import compression_rates
from .evaluate import EvaluationSpec, measure_splits, splits_for
from .io import read_json, write_parquet
from .tables import UNIFORM_SCHEMA, codebook_from_row, read_layers, read_sweeps


def uniform_codebooks(sweeps: dict[str, list[dict]], layers: list[dict], k_values: list[int]) -> dict[int, dict]:
    """K -> every layer's codebook at that K (capped per layer at its weight count), from the sweep rows."""
    by_k = {layer: {r["k"]: r for r in rows if (r.get("groups") or 1) == 1} for layer, rows in sweeps.items()}
    books = {}
    for k in k_values:
        per = {}
        for l in layers:
            kk = min(int(k), l["weights"])
            if kk not in by_k[l["name"]]:
                raise ValueError(f"uniform: K={kk} is not in the sweep of layer {l['name']!r}")
            per[l["name"]] = codebook_from_row(by_k[l["name"]][kk])
        books[int(k)] = per
    return books


def run(*, spec: EvaluationSpec, sweeps: list[str], layers: str, baseline: str, k_values: list[int],
        selection: str, out: str) -> None:
    """Every K of ``k_values`` (``grid.uniform_k_values``), measured on the splits the ``selection`` rule needs."""
    layer_table = read_layers(layers)
    books = uniform_codebooks(read_sweeps(sweeps), layer_table, k_values)
    base = read_json(baseline)
    names = [l["name"] for l in layer_table]
    ks = sorted(books)
    measured = measure_splits(spec, names, [books[k] for k in ks], base, "uniform",
                              splits=splits_for(selection))
    n_weights = np.array([l["weights"] for l in layer_table])
    rows = [{"k": k, "cr": float(compression_rates(n_weights, np.array([b.k for b in books[k].values()]))), **m}
            for k, m in zip(ks, measured)]
    write_parquet(pa.Table.from_pylist(rows, schema=UNIFORM_SCHEMA), out)
