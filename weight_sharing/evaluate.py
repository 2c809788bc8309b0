"""Fast top-1 evaluation of a model whose shared layers are swapped for codebooks.

The split stays resident on the device as uint8 and is normalised per batch;
original weights are kept once, so applying a combination of codebooks (one
bucketize and gather per layer) and restoring cost milliseconds.
"""
from __future__ import annotations

import contextlib
import logging
import time
from typing import Mapping

import numpy as np
import torch
from torch import nn

from .data import Split
from .kmeans import Codebook
from .models import shared_layers

log = logging.getLogger(__name__)

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"evaluation.device: {device!r} requested but CUDA is not available; use 'auto' or 'cpu'")
    return dev


class Evaluator:
    """Top-1 accuracy of ``model`` on one split, with codebooks applied in place."""

    def __init__(self, model: nn.Module, split: Split, batch_size: int = 1000,
                 device: str = "auto", precision: str = "fp32",
                 channels_last: bool = False, compile: bool = False):
        if precision not in PRECISIONS:
            raise ValueError(f"evaluation.precision: {precision!r}; allowed: {', '.join(PRECISIONS)}")
        if batch_size < 1:
            raise ValueError(f"evaluation.batch_size must be >= 1, got {batch_size}")
        self.device = resolve_device(device)
        self.dtype = PRECISIONS[precision]
        self.batch_size = batch_size
        self.channels_last = channels_last and split.x.ndim == 4
        model = model.eval().to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.layers = dict(shared_layers(model))
        # contiguous copies (bucketize wants them; channels_last weights are not)
        self.originals = {n: m.weight.detach().clone(memory_format=torch.contiguous_format)
                          for n, m in self.layers.items()}
        self.forward = torch.compile(model) if compile else model
        self.model = model
        self.x = torch.from_numpy(split.x).to(self.device)
        self.y = torch.from_numpy(split.y).to(self.device)
        shape = (1, -1) + (1,) * (split.x.ndim - 2)
        self.mean = torch.from_numpy(split.mean).to(self.device).view(shape) * 255.0
        self.std = torch.from_numpy(split.std).to(self.device).view(shape) * 255.0
        self.n = len(split)

    def _autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    @torch.inference_mode()
    def predictions(self) -> torch.Tensor:
        """Top-1 class of every image (int64, on the device)."""
        out = torch.empty(self.n, dtype=torch.int64, device=self.device)
        with self._autocast():
            for i in range(0, self.n, self.batch_size):
                xb = (self.x[i:i + self.batch_size].float() - self.mean) / self.std
                if self.channels_last:
                    xb = xb.contiguous(memory_format=torch.channels_last)
                out[i:i + self.batch_size] = self.forward(xb).argmax(dim=1)
        return out

    def correct(self) -> int:
        return int((self.predictions() == self.y).sum())

    def accuracy(self) -> float:
        """Top-1 accuracy as a fraction of the split."""
        return self.correct() / self.n

    @torch.no_grad()
    def apply(self, codebooks: Mapping[str, Codebook]) -> None:
        """Replace each named layer's weights by its codebook values (others untouched)."""
        for name, cb in codebooks.items():
            orig = self.originals[name]
            thr = torch.as_tensor(np.asarray(cb.thresholds), dtype=orig.dtype, device=self.device)
            cent = torch.as_tensor(np.asarray(cb.centroids), dtype=orig.dtype, device=self.device)
            idx = torch.bucketize(orig, thr, right=True)
            self.layers[name].weight.copy_(cent[idx])

    @torch.no_grad()
    def restore(self, names=None) -> None:
        for name in (self.originals if names is None else names):
            self.layers[name].weight.copy_(self.originals[name])

    @contextlib.contextmanager
    def applied(self, codebooks: Mapping[str, Codebook]):
        self.apply(codebooks)
        try:
            yield self
        finally:
            self.restore(codebooks.keys())


class Progress:
    """Logs done/total with the time left, at most every ``every`` seconds."""

    def __init__(self, total: int, what: str, every: float = 10.0):
        self.total, self.what, self.every = total, what, every
        self.start = self.last = time.perf_counter()

    def step(self, done: int) -> None:
        now = time.perf_counter()
        if now - self.last < self.every and done < self.total:
            return
        self.last = now
        rate = done / max(now - self.start, 1e-9)
        left = (self.total - done) / rate if rate > 0 else float("nan")
        log.info("%s: %d/%d (%.1f/s, %.0f s left)", self.what, done, self.total, rate, left)
