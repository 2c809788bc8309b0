"""Fast evaluation of a model whose shared layers are swapped for codebooks.

Every measurement gives top-1 accuracy and, from the same logits, the mean KL
divergence of the shared network's softmax from the unmodified network's on the
same images: a continuous signal where top-1 on a few hundred images moves in
steps of one image. The split is read in batches (from the .npz file itself when
it is stored uncompressed: nothing is loaded whole); on CUDA it is kept resident
on the device as uint8 when it fits, else streamed through pinned buffers with
the next batch read while the current one runs. Original weights are kept once,
so applying a combination of codebooks (one bucketize and gather per layer) and
restoring cost milliseconds.
"""

from __future__ import annotations

import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch
from torch import nn

from .correct import bias_shift
from .data import Split, load_split
from .kmeans import Codebook
from .models import build_model, shared_layers
from .sharing import shared_weight

log = logging.getLogger(__name__)

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
RESIDENT_FRACTION = 0.25  # a split stays on the GPU when it takes at most this share of free memory


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"evaluation.device: {device!r} requested but CUDA is not available; use 'auto' or 'cpu'")
    return dev


@dataclass(frozen=True)
class Measurement:
    """One evaluation of the (possibly shared) network on a split.

    ``kl``: mean over images of KL(p_baseline || p_shared) in nats; ``changed``:
    fraction of images whose top-1 differs from the unmodified network's (an upper
    bound on the accuracy it can lose, known without labels); ``broken``/``fixed``:
    images the baseline got right and this gets wrong, and the reverse.
    """

    accuracy: float
    kl: float
    changed: float
    broken: int
    fixed: int
    n: int


class Evaluator:
    """Top-1 accuracy and KL to the unmodified model on one split, with codebooks applied in place."""

    def __init__(self, model: nn.Module, split: Split, batch_size: int = 1000, device: str = "auto",
                 precision: str = "fp32", channels_last: bool = False, compile: bool = False,
                 layers=None, resident: bool | None = None, bias_means: Mapping[str, np.ndarray] | None = None,
                 batchnorm_split: Split | None = None):
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
        self.layers = dict(shared_layers(model, layers))
        # contiguous copies (bucketize wants them; channels_last weights are not)
        self.originals = {n: m.weight.detach().clone(memory_format=torch.contiguous_format)
                          for n, m in self.layers.items()}
        # bias correction (``correct.bias``): every shared layer gets a bias (zero where it had none,
        # which changes no output) to which the mean output shift of its codebook is added
        self.bias_means = None
        if bias_means is not None:
            missing = [n for n in self.layers if n not in bias_means]
            if missing:
                raise ValueError(f"bias correction: no input statistics for layers {missing}")
            self.bias_means = {n: torch.as_tensor(np.asarray(bias_means[n]), device=self.device) for n in self.layers}
            for m in self.layers.values():
                if m.bias is None:
                    m.bias = nn.Parameter(torch.zeros(m.weight.shape[0], dtype=m.weight.dtype, device=self.device),
                                          requires_grad=False)
            self.original_biases = {n: m.bias.detach().clone() for n, m in self.layers.items()}
        self.forward = torch.compile(model) if compile else model
        self.model = model
        self.host_x = split.x
        self.y = None if split.y is None else torch.from_numpy(np.asarray(split.y)).to(self.device)
        shape = (1, -1) + (1,) * (split.x.ndim - 2)
        self.mean = torch.from_numpy(split.mean).to(self.device).view(shape) * 255.0
        self.std = torch.from_numpy(split.std).to(self.device).view(shape) * 255.0
        self.n = len(split)
        if resident is None:
            resident = self.device.type == "cuda" and split.x.nbytes <= RESIDENT_FRACTION * torch.cuda.mem_get_info(
                self.device)[0]
        self.x = torch.from_numpy(np.array(split.x)).to(self.device) if resident else None
        self._reference: tuple[torch.Tensor, torch.Tensor] | None = None
        # BatchNorm re-estimation (``correct.bn``): after codebooks are applied, the running statistics
        # of every BatchNorm layer are re-estimated on ``batchnorm_split`` (the calibration images)
        self.batchnorms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                           and m.track_running_stats] if batchnorm_split is not None else []
        self._bn_source = None
        if self.batchnorms:
            self._bn_source = self if batchnorm_split is split else Evaluator(
                model, batchnorm_split, batch_size=batch_size, device=device, precision=precision,
                channels_last=channels_last, layers=layers, resident=resident)
            self._bn_saved = self._batchnorm_state()

    def _batchnorm_state(self) -> list[tuple[torch.Tensor, ...]]:
        return [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
                for m in self.batchnorms]

    @torch.no_grad()
    def _set_batchnorm_state(self, state) -> None:
        for m, (mean, var, count) in zip(self.batchnorms, state):
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
            m.num_batches_tracked.copy_(count)

    def _reestimate_batchnorm(self) -> None:
        """One pass over the calibration images in training mode with a cumulative average (momentum None)."""
        momenta = [m.momentum for m in self.batchnorms]
        for m in self.batchnorms:
            m.reset_running_stats()
            m.momentum = None
            m.train()
        try:
            self._bn_source.predictions()
        finally:
            for m, momentum in zip(self.batchnorms, momenta):
                m.momentum = momentum
                m.eval()

    def release(self) -> None:
        """Free the device memory held for the split and the reference outputs."""
        self.x = self._reference = None
        if self._bn_source is not None and self._bn_source is not self:
            self._bn_source.release()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def _host_batch(self, i: int) -> torch.Tensor:
        t = torch.from_numpy(np.array(self.host_x[i:i + self.batch_size]))  # a writable copy of the batch
        return t.pin_memory() if self.device.type == "cuda" else t

    def _batches(self):
        """(start, normalised float batch) over the split, in order."""
        starts = range(0, self.n, self.batch_size)
        if self.x is not None:
            for i in starts:
                yield i, self.x[i:i + self.batch_size]
            return
        with ThreadPoolExecutor(1, thread_name_prefix="split-reader") as pool:
            pending = pool.submit(self._host_batch, 0)
            for i in starts:
                host = pending.result()
                if i + self.batch_size < self.n:
                    pending = pool.submit(self._host_batch, i + self.batch_size)
                yield i, host.to(self.device, non_blocking=True)

    @torch.inference_mode()
    def _pass(self, reduce) -> None:
        """One pass over the split: ``reduce(start, logits)`` for every batch."""
        with self._autocast():
            for i, xb in self._batches():
                xb = (xb.float() - self.mean) / self.std
                if self.channels_last:
                    xb = xb.contiguous(memory_format=torch.channels_last)
                reduce(i, self.forward(xb).float())

    def predictions(self) -> torch.Tensor:
        """Top-1 class of every image (int64, on the device)."""
        out = torch.empty(self.n, dtype=torch.int64, device=self.device)

        def keep(i, logits):
            out[i:i + len(logits)] = logits.argmax(dim=1)

        self._pass(keep)
        return out

    def accuracy(self) -> float:
        """Top-1 accuracy as a fraction of the split."""
        if self.y is None:
            raise ValueError("accuracy: this split has no labels (the unlabelled selection images)")
        return int((self.predictions() == self.y).sum()) / self.n

    @torch.no_grad()
    def reference(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-softmax and top-1 of the unmodified model (computed once, with the original weights)."""
        if self._reference is None:
            current = {n: (m.weight.detach().clone(), None if m.bias is None else m.bias.detach().clone())
                       for n, m in self.layers.items()}
            current_bn = self._batchnorm_state() if self.batchnorms else None
            self.restore()
            logp = None
            pred = torch.empty(self.n, dtype=torch.int64, device=self.device)

            def keep(i, logits):
                nonlocal logp
                if logp is None:  # float64: KL of a mild perturbation is a small difference of large terms
                    logp = torch.empty(self.n, logits.shape[1], dtype=torch.float64, device=self.device)
                logp[i:i + len(logits)] = torch.log_softmax(logits.double(), dim=1)
                pred[i:i + len(logits)] = logits.argmax(dim=1)

            self._pass(keep)
            for n, m in self.layers.items():
                m.weight.copy_(current[n][0])
                if current[n][1] is not None:
                    m.bias.copy_(current[n][1])
            if current_bn is not None:
                self._set_batchnorm_state(current_bn)
            self._reference = (logp, pred)
        return self._reference

    def measure(self) -> Measurement:
        """Accuracy, KL to the unmodified model and changed predictions, in one pass."""
        ref_logp, ref_pred = self.reference()
        kl = torch.zeros((), dtype=torch.float64, device=self.device)
        pred = torch.empty(self.n, dtype=torch.int64, device=self.device)

        def reduce(i, logits):
            nonlocal kl
            ref = ref_logp[i:i + len(logits)]
            logp = torch.log_softmax(logits.double(), dim=1)
            kl += (ref.exp() * (ref - logp)).sum()
            pred[i:i + len(logits)] = logits.argmax(dim=1)

        self._pass(reduce)
        fidelity = {"kl": max(float(kl) / self.n, 0.0), "changed": int((pred != ref_pred).sum()) / self.n, "n": self.n}
        if self.y is None:  # unlabelled: fidelity to the baseline only
            return Measurement(accuracy=float("nan"), broken=0, fixed=0, **fidelity)
        right, base_right = pred == self.y, ref_pred == self.y
        return Measurement(accuracy=int(right.sum()) / self.n, broken=int((base_right & ~right).sum()),
                           fixed=int((~base_right & right).sum()), **fidelity)

    @torch.no_grad()
    def apply(self, codebooks: Mapping[str, Codebook]) -> None:
        """Replace each named layer's weights by its codebook values (others untouched)."""
        for name, cb in codebooks.items():
            orig = self.originals[name]
            _, shared = shared_weight(orig, cb)
            self.layers[name].weight.copy_(shared)
            if self.bias_means is not None:
                shift = bias_shift(orig, shared, self.bias_means[name])
                self.layers[name].bias.copy_(self.original_biases[name] + shift.to(orig.dtype))
        if self.batchnorms and codebooks:
            self._reestimate_batchnorm()

    @torch.no_grad()
    def restore(self, names=None) -> None:
        for name in (self.originals if names is None else names):
            self.layers[name].weight.copy_(self.originals[name])
            if self.bias_means is not None:
                self.layers[name].bias.copy_(self.original_biases[name])
        if self.batchnorms:
            self._set_batchnorm_state(self._bn_saved)

    @contextlib.contextmanager
    def applied(self, codebooks: Mapping[str, Codebook]):
        self.apply(codebooks)
        try:
            yield self
        finally:
            self.restore(codebooks.keys())


def evaluator_for(model: nn.Module | dict, data_npz: str, split: str, evaluation: dict, layers=None,
                  bias_statistics: str | None = None, reestimate_batchnorm: bool = False) -> Evaluator:
    """An evaluator with the configured engine settings (``evaluation``: the config section),
    for a built model or a model config; ``bias_statistics``: the calibration stage's file when
    the bias is corrected (``correct.bias``), else None; ``reestimate_batchnorm``: BatchNorm
    statistics re-estimated on the calibration split after each combination (``correct.bn``)."""
    if isinstance(model, dict):
        model = build_model(model)
    means = None
    if bias_statistics:
        from .calibration import read_statistics

        names = [n for n, _ in shared_layers(model, layers)]
        means = read_statistics(bias_statistics, names, "mean")
    data = load_split(data_npz, split)
    calib = (data if split == "calib" else load_split(data_npz, "calib")) if reestimate_batchnorm else None
    return Evaluator(model, data, batch_size=int(evaluation["batch_size"]),
                     device=evaluation["device"], precision=evaluation["precision"],
                     channels_last=bool(evaluation["channels_last"]), compile=bool(evaluation["compile"]),
                     layers=layers, bias_means=means, batchnorm_split=calib)


def measurement_columns(prefix: str, m: Measurement, baseline_accuracy: float) -> dict:
    """The columns every evaluated table records for one split: accuracy, loss, KL, changed predictions,
    and the images the shared network breaks (baseline right, now wrong) and fixes."""
    return {f"{prefix}accuracy": m.accuracy, f"{prefix}al": baseline_accuracy - m.accuracy, f"{prefix}kl": m.kl,
            f"{prefix}changed": m.changed, f"{prefix}broken": m.broken, f"{prefix}fixed": m.fixed}


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
