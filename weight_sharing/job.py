"""What every workflow job does first: log to its rule's log file, and use its thread count."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import torch

log = logging.getLogger("weight_sharing")


def optional_input(inputs, name: str) -> str | None:
    """The path of a named rule input that may be absent (an input function returning [] or [path])."""
    value = getattr(inputs, name, None)
    if isinstance(value, str):
        return value or None
    value = list(value or [])
    return str(value[0]) if value else None


def setup(log_path: str | Path | None = None, threads: int = 1) -> None:
    """Log to the rule's log file and to stderr (errors included); use ``threads`` CPU threads."""
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
