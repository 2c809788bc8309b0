"""Stage uniform: every layer the same K, on both splits: the reference a per-layer choice must beat
(what a user gets from uniform palettization without any search). One codebook per tensor; the
configured corrections (refit centroids from the sweep, bias correction) apply here too, so the
gain over uniform measures the search."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from .compression import compression_rates
from .io import read_json, read_parquet, write_parquet
from .sweep import codebook_from_row, read_sweeps
from .validate import SELECT_COLUMNS, SPLIT_COLUMNS, measure_splits, splits_for

UNIFORM_SCHEMA = pa.schema([("k", pa.int64()), ("cr", pa.float64()), *SPLIT_COLUMNS, *SELECT_COLUMNS])


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


def run(*, model_cfg: dict, data_npz: str, sweep_files: list[str], layers_parquet: str, baseline_json: str,
        k_values: list[int], evaluation: dict, out: str, bias_statistics: str | None = None,
        reestimate_batchnorm: bool = False, selection: str = "calib") -> None:
    layers = read_parquet(layers_parquet).to_pylist()
    books = uniform_codebooks(read_sweeps(sweep_files), layers, k_values)
    baseline = read_json(baseline_json)
    names = [l["name"] for l in layers]
    ks = sorted(books)
    measured = measure_splits(model_cfg, data_npz, evaluation, names, [books[k] for k in ks], baseline, "uniform",
                              splits=splits_for(selection), bias_statistics=bias_statistics,
                              reestimate_batchnorm=reestimate_batchnorm)
    n_weights = np.array([l["weights"] for l in layers])
    rows = [{"k": k, "cr": float(compression_rates(n_weights, np.array([b.k for b in books[k].values()]))), **m}
            for k, m in zip(ks, measured)]
    write_parquet(pa.Table.from_pylist(rows, schema=UNIFORM_SCHEMA), out)
