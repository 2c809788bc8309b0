"""Stage calibration: the input statistics of every shared layer on the calibration images.

One pass of the unmodified network with hooks (``correct.gather_statistics``) gives, per
shared layer, the mean of its input rows (for bias correction) and, when data-aware
centroids are asked for, their second moment. Written once per network to a safetensors
file (``{layer}.mean``, ``{layer}.second``); the later stages read only the tensors they need.
"""

from __future__ import annotations

import logging
import time

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from .correct import gather_statistics
from .evaluate import evaluator_for
from .io import atomic_path, read_parquet

log = logging.getLogger(__name__)


def read_statistics(path: str, layers, what: str = "mean") -> dict[str, np.ndarray]:
    """``what`` (``mean`` or ``second``) of each of ``layers`` from a calibration file."""
    out = {}
    with safe_open(path, framework="numpy") as f:
        keys = set(f.keys())
        for name in layers:
            key = f"{name}.{what}"
            if key not in keys:
                raise ValueError(f"{path}: no {what} statistics for layer {name!r}"
                                 + (" (run with correct.centroids to gather second moments)"
                                    if what == "second" else ""))
            out[name] = f.get_tensor(key)
    return out


def run(*, model_cfg: dict, data_npz: str, layers_parquet: str, second_moment: bool, evaluation: dict,
        out: str) -> None:
    layers = [l["name"] for l in read_parquet(layers_parquet).to_pylist()]
    ev = evaluator_for(model_cfg, data_npz, "calib", {**evaluation, "compile": False}, layers=layers)  # hooks
    t = time.perf_counter()
    stats = gather_statistics(ev, second_moment=second_moment)
    ev.release()
    tensors = {f"{name}.{what}": np.ascontiguousarray(v) for name, s in stats.items() for what, v in s.items()}
    with atomic_path(out) as tmp:
        save_file(tensors, str(tmp), metadata={"images": str(ev.n), "second_moment": str(bool(second_moment))})
    log.info("input statistics of %d layers on %d calibration images in %.2f s (%.1f MB)", len(stats), ev.n,
             time.perf_counter() - t, sum(v.nbytes for v in tensors.values()) / 1e6)
