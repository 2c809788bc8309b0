"""Stage uniform: every layer the same K, on both splits: the references a per-layer choice must beat
(what a user gets from uniform palettization without any search).

Two references: one codebook per tensor (the paper's) at every K, and one per group of
``sharing.group`` output channels (the per-channel palettization of coremltools and the like, at the
granularity the search may choose) at every K where its codebooks still compress, whatever
``sharing.granularity`` the search uses: the gain is stated against the better of the two, so it
measures the search and not the format. The configured corrections apply to both (bias correction
and BatchNorm re-estimation on every point; refit centroids wherever the sweep measured that
codebook and kept its refit values; a per-group codebook the sweep did not measure is the k-means
one, computed here).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from .codebook import Codebook
from .compression import compression_rates
from .evaluate import EvaluationSpec, measure_splits, splits_for
from .io import read_json, write_parquet
from .models import build_model
from .sharing import group_count, grouped_codebooks
from .tables import UNIFORM_GRANULARITIES, UNIFORM_SCHEMA, codebook_from_row, read_layers, read_sweeps


def uniform_codebooks(sweeps: dict[str, list[dict]], layers: list[dict], k_values: list[int]) -> dict[int, dict]:
    """K -> every layer's per-tensor codebook at that K (capped per layer at its weight count), from the
    sweep rows."""
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


def uniform_group_codebooks(sweeps: dict[str, list[dict]], layers: list[dict], weights: dict[str, np.ndarray],
                            k_values: list[int], group: int, max_bins: int,
                            tensor: dict[int, dict] | None = None) -> dict[int, dict]:
    """K -> every layer's codebooks at that K, one per group of ``group`` output channels: the sweep's row
    where it has one (its refit values, if kept), else the optimal k-means codebook of each group. A layer
    with a single group keeps its per-tensor sweep row (the same codebook; ``tensor``: those rows, if already
    read by :func:`uniform_codebooks`)."""
    tensor = uniform_codebooks(sweeps, layers, k_values) if tensor is None else tensor
    books: dict[int, dict[str, Codebook]] = {int(k): {} for k in k_values}
    for l in layers:
        name, groups = l["name"], group_count(l["shape"][0], group)
        swept = {r["k"]: r for r in sweeps[name] if (r.get("groups") or 1) == groups and (r.get("group") or 0)}
        ks = {int(k): min(int(k), l["weights"]) for k in k_values}
        missing = sorted({kk for kk in ks.values() if kk not in swept}) if groups > 1 else []
        computed = grouped_codebooks(weights[name], missing, group, max_bins) if missing else {}
        for k, kk in ks.items():
            if groups == 1:
                books[k][name] = tensor[k][name]
            else:
                books[k][name] = codebook_from_row(swept[kk]) if kk in swept else computed[kk]
    return books


def compressing_k(layers: list[dict], k_values: list[int], group: int) -> list[int]:
    """The K of ``k_values`` at which one codebook per group of ``group`` output channels still compresses
    (CR > 1): at larger K the codebooks outweigh the float weights, a reference no one would ship, and
    clustering every channel there is the uniform stage's largest cost."""
    n_weights = np.array([l["weights"] for l in layers])
    groups = np.array([group_count(l["shape"][0], group) for l in layers])
    return [int(k) for k in k_values
            if compression_rates(n_weights, np.minimum(int(k), n_weights), groups) > 1]


def run(*, spec: EvaluationSpec, sweeps: list[str], layers: str, baseline: str, k_values: list[int],
        group: int, max_bins: int, selection: str, out: str) -> None:
    """Every K of ``k_values`` (``grid.uniform_k_values``) per tensor and per group of ``group`` output
    channels (``sharing.group``; k-means with ``sweep.max_bins`` where the sweep has no codebook),
    measured on the splits the ``selection`` rule needs."""
    layer_table = read_layers(layers)
    swept = read_sweeps(sweeps)
    names = [l["name"] for l in layer_table]
    model = build_model(spec.model)
    modules = dict(model.named_modules())
    weights = {n: modules[n].weight.detach().cpu().numpy() for n in names}
    group = int(group)
    n_weights = np.array([l["weights"] for l in layer_table])
    tensor = uniform_codebooks(swept, layer_table, k_values)
    by_granularity = {
        "tensor": tensor,
        "channel": uniform_group_codebooks(swept, layer_table, weights, compressing_k(layer_table, k_values, group),
                                           group, int(max_bins), tensor),
    }
    points = [(g, k, books[k]) for g, books in by_granularity.items() for k in sorted(books)]
    measured = measure_splits(spec, names, [b for _, _, b in points], read_json(baseline), "uniform",
                              splits=splits_for(selection), model=model)
    rows = []
    for (granularity, k, books), m in zip(points, measured):
        groups = [books[n].groups for n in names]
        rows.append({"granularity": granularity, "k": k, "group": group if UNIFORM_GRANULARITIES[granularity] else 0,
                     "groups": groups,
                     "cr": float(compression_rates(n_weights, np.array([books[n].k for n in names]),
                                                   np.array(groups))), **m})
    write_parquet(pa.Table.from_pylist(rows, schema=UNIFORM_SCHEMA), out)
