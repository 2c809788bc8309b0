"""Stage sample: random combinations of candidates, evaluated for real on the calibration split.

They are the surrogate's training data. All combinations come from one seeded
draw and shard i evaluates its slice, so the union does not depend on the
shard count. ``sample.images`` measures each on a seeded random part of the
calibration images (BatchNorm re-estimated on that part): the KL to the baseline
(``surrogate.target: kl``) stays a usable signal on far fewer images than the
top-1 loss, which moves in steps of one image.
"""
from __future__ import annotations

import logging
import time

import numpy as np
import pyarrow as pa

from .evaluate import EvaluationSpec, Evaluator, Progress, measurement_columns
from .io import read_json, write_parquet
from .tables import SAMPLE_SCHEMA, CandidateSet

log = logging.getLogger(__name__)


def draw_combinations(sizes: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` distinct combinations (N, L) of candidate indices, uniform per layer, seeded.

    Fewer when the space holds fewer than ``n`` combinations. The draw does not
    depend on how the evaluation is sharded.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    if n < 1:
        raise ValueError(f"sample.n must be >= 1, got {n}")
    space = float(np.prod(sizes.astype(np.float64)))
    target = int(min(n, space))
    rng = np.random.default_rng(seed)
    seen: set[bytes] = set()
    out: list[np.ndarray] = []
    while len(out) < target:
        batch = rng.integers(0, sizes, size=(max(target - len(out), 16), len(sizes)))
        for row in batch:
            key = row.tobytes()
            if key not in seen:
                seen.add(key)
                out.append(row)
                if len(out) == target:
                    break
    return np.stack(out)


def shard_bounds(n: int, shards: int, shard: int) -> tuple[int, int]:
    """Rows [start, stop) of shard ``shard`` of ``shards`` over n combinations."""
    if not 0 <= shard < shards:
        raise ValueError(f"shard {shard} outside 0..{shards - 1}")
    return n * shard // shards, n * (shard + 1) // shards


def evaluate_combinations(evaluator: Evaluator, cands: CandidateSet, choices: np.ndarray,
                          baseline_accuracy: float, first_index: int = 0, what: str = "sample") -> pa.Table:
    """Apply each combination to every shared layer and measure accuracy; one row each."""
    ks = (np.stack([cands.gather(cands.k, c) for c in choices]) if len(choices)
          else np.zeros((0, len(cands.sizes)), np.int64))
    crs = cands.compression_rates(np.asarray(choices)) if len(choices) else np.zeros(0)
    rows = []
    progress = Progress(len(choices), what)
    for i, c in enumerate(choices):
        evaluator.apply(cands.codebooks_of(c))
        m = evaluator.measure()
        values = cands.layer_values(c)
        rows.append({"sample": first_index + i, "k": ks[i].tolist(), "choice": c.tolist(),
                     "layer_al": values["al"].tolist(), "layer_kl": values["kl"].tolist(),
                     "layer_inertia": values["inertia"].tolist(),
                     **measurement_columns("", m, baseline_accuracy), "cr": float(crs[i])})
        progress.step(i + 1)
    evaluator.restore()
    return pa.Table.from_pylist(rows, schema=SAMPLE_SCHEMA)


def run(*, spec: EvaluationSpec, candidates: str, layers: str, baseline: str, sample: dict, shard: int,
        out: str) -> None:
    """Shard ``shard`` of the seeded draw of ``sample.n`` combinations (``sample``: the config section),
    evaluated on the calibration split."""
    n, seed, shards = sample["n"], sample["seed"], sample["shards"]
    cands = CandidateSet.read(candidates, layers)
    choices = draw_combinations(cands.sizes, n, seed)
    start, stop = shard_bounds(len(choices), shards, shard)
    base = read_json(baseline)
    images = int(sample.get("images", 0))
    ev = spec.evaluator("calib", cands.layer_names, images=images, seed=seed)
    # the loss against the baseline on the images measured: a part of the calibration images has its own accuracy
    base_accuracy = base["calib_accuracy"] if ev.n == base["calib_images"] else ev.reference_accuracy()
    if ev.n != base["calib_images"]:
        log.info("sample: each combination measured on %d of the %d calibration images (baseline %.2f%% on them)",
                 ev.n, base["calib_images"], 100 * base_accuracy)
    t = time.perf_counter()
    table = evaluate_combinations(ev, cands, choices[start:stop], base_accuracy, first_index=start)
    dt = time.perf_counter() - t
    log.info("sample shard %d/%d: %d combinations in %.1f s (%.0f images/s)", shard, shards, stop - start, dt,
             (stop - start) * ev.n / max(dt, 1e-9))
    write_parquet(table, out, metadata={"seconds": dt, "images": (stop - start) * ev.n})
