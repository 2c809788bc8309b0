"""What every workflow job shares: logging to its rule's log file, its thread count, the evaluation
spec built from its rule's params, and the list of timed stages."""

from __future__ import annotations

import atexit
import logging
import sys
from pathlib import Path

log = logging.getLogger("weight_sharing")

# the timed stages of one network, in workflow order (their Snakemake benchmark files are
# benchmarks/{stage}.tsv, or benchmarks/{stage}/{job}.tsv for stages of several jobs; calibration
# runs only when a stage needs its statistics, and counts 0 s otherwise)
STAGES = ("prepare", "calibration", "sweep", "candidates", "sample", "surrogate", "search", "refine", "validate",
          "uniform", "export")


def optional_input(inputs, name: str) -> str | None:
    """The path of a named rule input that may be absent (an input function returning [] or [path])."""
    value = getattr(inputs, name, None)
    if isinstance(value, str):
        return value or None
    value = list(value or [])
    return str(value[0]) if value else None


def evaluation_spec(inputs, params):
    """The job's :class:`~weight_sharing.evaluate.EvaluationSpec` from its rule's params (``model``, the
    ``evaluation`` and, where the stage corrects, ``correct`` sections) and inputs (``data``, the .npz,
    and ``calibration``, the statistics file when the corrections read one)."""
    from .evaluate import EvaluationSpec

    return EvaluationSpec(model=dict(params.model), data=str(inputs.data), engine=dict(params.evaluation),
                          correct=dict(getattr(params, "correct", None) or {}),
                          statistics=optional_input(inputs, "calibration"))


def setup(log_path: str | Path | None = None, threads: int = 1) -> None:
    """Log to the rule's log file and to stderr (errors included); use ``threads`` CPU threads."""
    import torch

    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def log_failure(kind, value, tb):  # the error goes to the rule's log file too
        log.error("%s: %s", kind.__name__, value, exc_info=(kind, value, tb) if log_path else None)
        if not log_path:
            sys.__excepthook__(kind, value, tb)

    sys.excepthook = log_failure
    torch.set_num_threads(max(1, int(threads)))
    if log_image_forwards not in _AT_EXIT:
        _AT_EXIT.append(log_image_forwards)
        atexit.register(log_image_forwards)


_AT_EXIT: list = []


def log_image_forwards() -> None:
    """The job's image-forwards (``evaluate.IMAGE_FORWARDS``), in its log: ``benchmarks/cost.py`` reads them."""
    from .evaluate import IMAGE_FORWARDS

    log.info("%s %d", IMAGE_FORWARDS_LOG, IMAGE_FORWARDS["images"])


IMAGE_FORWARDS_LOG = "image-forwards of this job:"
