"""Stage prepare: the baseline on both splits, and the table of shared layers.

The shared layers are the Conv/Linear modules that the evaluated (eval-mode)
forward pass calls; layers it never calls (training-only heads) stay as they
are and are listed in ``baseline.json`` as ``unshared_layers``.
"""

from __future__ import annotations

import logging
import time

from . import __version__
from .data import check_npz
from .evaluate import EvaluationSpec
from .io import write_json, write_parquet
from .models import build_model, layer_records, unshared_layers

log = logging.getLogger(__name__)


def run(*, spec: EvaluationSpec, out_baseline: str, out_layers: str) -> None:
    """Baseline top-1 on both splits (no codebooks, no corrections) and the shared-layer table."""
    info = check_npz(spec.data)
    model = build_model(spec.model)
    layers = layer_records(model, info["image_shape"])
    unshared = unshared_layers(model, info["image_shape"])
    if unshared:
        log.info("not shared (never called by the evaluated forward pass): %s", unshared)
    baseline = {"code_version": __version__, "calib_images": info["calib"], "test_images": info["test"]}
    for split in ("calib", "test"):
        ev = spec.uncorrected().evaluator(split, [l["name"] for l in layers], model=model)
        t = time.perf_counter()
        baseline[f"{split}_accuracy"] = ev.accuracy()
        log.info("baseline %s accuracy %.4f (%d images, %.2f s, %s)", split, baseline[f"{split}_accuracy"],
                 ev.n, time.perf_counter() - t, ev.device)
        ev.release()
    baseline["shared_weights"] = int(sum(l["weights"] for l in layers))
    baseline["layers"] = len(layers)
    baseline["unshared_layers"] = unshared
    write_parquet(layers, out_layers)
    write_json(baseline, out_baseline)
