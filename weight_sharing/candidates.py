"""Stage candidates: per layer and index bit-width, the K that loses least while meeting the bound.

"Loses least" is judged on ``signal``: the sweep's top-1 loss (``al``, the
paper's choice) or its KL divergence to the baseline (``kl``), which is
continuous where top-1 on a few hundred images moves in steps of one image.
The bound itself is always top-1: accuracy >= bound x baseline.
"""
from __future__ import annotations

import logging

import pyarrow as pa

from .bound import meets_bound
from .formats import allowed_index_bits
from .io import read_json, write_parquet
from .tables import read_layers, read_sweeps

log = logging.getLogger(__name__)

# candidates.signal -> what "loses least" means for a sweep row (lower is better)
SIGNALS = {
    "al": lambda row: row["al"],  # the sweep's top-1 loss (the paper's)
    "kl": lambda row: row["kl"],  # its KL divergence to the baseline
}


def select_layer_candidates(rows: list[dict], baseline_accuracy: float, bound: float,
                            signal: str = "al", index_bits: set[int] | None = None) -> tuple[list[dict], bool]:
    """Rows kept for one layer's sweep, and whether the layer fell back to its largest K.

    Per bit-width (and per codebook count, when the sweep has grouped codebooks too:
    they cost more bits, so both stay for the search to weigh): among rows with
    accuracy >= bound * baseline, the lowest ``signal`` (ties: the smaller K, which
    compresses more). If no row of the layer meets the bound, the layer keeps only
    its largest K (per tensor). ``index_bits``: only rows of these index widths are kept
    (``candidates.formats``: the widths the listed export formats run natively).
    """
    if not 0 < bound <= 1:
        raise ValueError(f"bound must be in (0, 1], got {bound}")
    if signal not in SIGNALS:
        raise ValueError(f"candidates.signal: {signal!r}; allowed: {', '.join(SIGNALS)}")
    if not rows:
        raise ValueError("empty sweep: no K to choose from")
    loss = SIGNALS[signal]
    if index_bits is not None:
        layer = rows[0]["layer"]
        rows = [r for r in rows if r["bits"] in index_bits]
        if not rows:
            raise ValueError(f"candidates.formats: layer {layer!r} has no sweep row at the index widths "
                             f"{sorted(index_bits)} the formats run; widen the sweep grid")
    best: dict[tuple[int, int], dict] = {}
    for r in rows:
        if not meets_bound(r["accuracy"], baseline_accuracy, bound):
            continue
        key = (r["bits"], r.get("groups") or 1)
        cur = best.get(key)
        if cur is None or (loss(r), r["k"]) < (loss(cur), cur["k"]):
            best[key] = r
    if best:
        return [best[b] for b in sorted(best)], False
    return [max((r for r in rows if (r.get("groups") or 1) == 1), key=lambda r: r["k"])], True


def select_candidates(sweeps: dict[str, list[dict]], layer_order: list[str],
                      baseline_accuracy: float, bound: float, signal: str = "al",
                      index_bits: set[int] | None = None) -> pa.Table:
    """candidates.parquet: the kept rows of every layer, with ``layer_index`` and ``fallback``."""
    out = []
    for i, layer in enumerate(layer_order):
        kept, fallback = select_layer_candidates(sweeps[layer], baseline_accuracy, bound, signal, index_bits)
        if fallback:
            log.warning("layer %s: no K keeps accuracy >= %.4f x baseline; keeping its largest K=%d",
                        layer, bound, kept[0]["k"])
        for r in kept:
            out.append({**r, "layer_index": i, "fallback": fallback})
    return pa.Table.from_pylist(out)


def run(*, sweeps: list[str], layers: str, baseline: str, bound: float, candidates: dict, out: str) -> None:
    """candidates.parquet from the sweep files ``sweeps``, with the ``candidates`` config section."""
    layer_table = read_layers(layers)
    by_layer = read_sweeps(sweeps)
    missing = [l["name"] for l in layer_table if l["name"] not in by_layer]
    if missing:
        raise ValueError(f"candidates: no sweep for layers {missing}")
    base = read_json(baseline)
    signal = candidates["signal"]
    allowed = allowed_index_bits(candidates.get("formats") or [])
    table = select_candidates(by_layer, [l["name"] for l in layer_table], base["calib_accuracy"], bound, signal,
                              allowed)
    write_parquet(table, out)
    log.info("candidates: %d over %d layers (lowest %s per bit-width within the bound)", table.num_rows,
             len(layer_table), signal)
