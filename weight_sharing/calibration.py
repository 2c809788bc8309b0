"""Stage calibration: the input statistics of every shared layer on the calibration images.

One pass of the unmodified network with hooks (``correct.gather_statistics``) gives, per
shared layer, the mean of its input rows (for bias correction) and, when data-aware
centroids are asked for, their second moment. A correction whose form depends on the network
(``correct.bn: auto``) decides it here, once (``Correction.decide``). Written once per network
to a safetensors file (``{layer}.mean``, ``{layer}.second``; the forms in its metadata,
``decision.{key}``); the later stages read only what they need (``correct.read_statistics``,
``correct.read_decisions``).
"""

from __future__ import annotations

import logging
import time

import numpy as np
from safetensors.numpy import save_file

from .correct import DECISION_PREFIX, LAYER_STATISTICS, enabled_corrections, gather_statistics, needed_statistics
from .evaluate import EvaluationSpec
from .io import atomic_path
from .tables import read_layers

log = logging.getLogger(__name__)


def run(*, spec: EvaluationSpec, layers: str, correct: dict, out: str) -> None:
    """What the ``correct`` section's corrections and the centroid refit read (``correct.needed_statistics``):
    the layers' mean when any layer statistic is read, their second moment for the refit, and the forms of
    the corrections that decide theirs."""
    names = [l["name"] for l in read_layers(layers)]
    needed = needed_statistics(correct, refit=True)
    ev = spec.uncorrected().evaluator("calib", names, compile=False)  # hooks
    t = time.perf_counter()
    stats = gather_statistics(ev, second_moment="second" in needed) if set(needed) & set(LAYER_STATISTICS) else {}
    tensors = {f"{name}.{what}": np.ascontiguousarray(v) for name, s in stats.items() for what, v in s.items()}
    decisions = {f"{DECISION_PREFIX}{c.key}": c.decide(ev) for c in enabled_corrections(correct)
                 if "decision" in c.statistics}
    ev.release()
    with atomic_path(out) as tmp:
        save_file(tensors, str(tmp), metadata={"images": str(ev.n), "second_moment": str("second" in needed),
                                               **decisions})
    log.info("input statistics of %d layers on %d calibration images in %.2f s (%.1f MB)%s", len(stats), ev.n,
             time.perf_counter() - t, sum(v.nbytes for v in tensors.values()) / 1e6,
             "".join(f"; {k} = {v}" for k, v in decisions.items()))
