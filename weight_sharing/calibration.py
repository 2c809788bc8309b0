"""Stage calibration: the input statistics of every shared layer on the calibration images.

One pass of the unmodified network with hooks (``correct.gather_statistics``) gives, per
shared layer, the mean of its input rows (for bias correction) and, when data-aware
centroids are asked for, their second moment. Written once per network to a safetensors
file (``{layer}.mean``, ``{layer}.second``); the later stages read only the tensors they need
(``correct.read_statistics``).
"""

from __future__ import annotations

import logging
import time

import numpy as np
from safetensors.numpy import save_file

from .correct import gather_statistics, needed_statistics
from .evaluate import EvaluationSpec
from .io import atomic_path
from .tables import read_layers

log = logging.getLogger(__name__)


def run(*, spec: EvaluationSpec, layers: str, correct: dict, out: str) -> None:
    """The statistics the ``correct`` section's corrections and the centroid refit read
    (``correct.needed_statistics``): the mean always, the second moment for the refit."""
    names = [l["name"] for l in read_layers(layers)]
    second_moment = "second" in needed_statistics(correct, refit=True)
    ev = spec.uncorrected().evaluator("calib", names, compile=False)  # hooks
    t = time.perf_counter()
    stats = gather_statistics(ev, second_moment=second_moment)
    ev.release()
    tensors = {f"{name}.{what}": np.ascontiguousarray(v) for name, s in stats.items() for what, v in s.items()}
    with atomic_path(out) as tmp:
        save_file(tensors, str(tmp), metadata={"images": str(ev.n), "second_moment": str(bool(second_moment))})
    log.info("input statistics of %d layers on %d calibration images in %.2f s (%.1f MB)", len(stats), ev.n,
             time.perf_counter() - t, sum(v.nbytes for v in tensors.values()) / 1e6)
