"""Fast evaluation of a model whose shared layers are swapped for codebooks.

Every measurement gives top-1 accuracy and, from the same logits, the mean KL
divergence of the shared network's softmax from the unmodified network's on the
same images: a continuous signal where top-1 on a few hundred images moves in
steps of one image. The split is read in batches (from the .npz file itself when
it is stored uncompressed: nothing is loaded whole); on CUDA it is kept resident
on the device as uint8 when it fits, else streamed through pinned buffers with
the next batch read while the current one runs. Original weights are kept once,
so applying a combination of codebooks (one bucketize and gather per layer) and
restoring cost milliseconds. The corrections of the ``correct`` config section
(``correct.CORRECTIONS``) act after the codebooks. An :class:`EvaluationSpec`
(model, data, engine settings, corrections and their statistics) is what a job
builds once from its rule's params and hands to its stage.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .codebook import Codebook
from .correct import (
    CORRECTIONS,
    LAYER_STATISTICS,
    Correction,
    CorrectionInputs,
    enabled_corrections,
    read_decisions,
    read_statistics,
    with_bias,
)
from .data import SELECT, Split, image_subset, load_split
from .models import build_model, shared_layers
from .resume import LayerSplit, SplitModel
from .sharing import shared_weight

log = logging.getLogger(__name__)

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
RESIDENT_FRACTION = 0.25  # a split stays on the GPU when it takes at most this share of free memory
RESUMED_FRACTION = 0.25  # a resumed pass's cached prefix values take at most this share of free memory


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


# images pushed through a network by this process (every pass of every evaluator, corrections' passes
# included): what an exploration costs, whatever the machine; each job logs it at exit (``job.setup``). A
# resumed pass (``Evaluator.resumed_at``) counts each image as the share of the network's Conv/Linear
# multiply-accumulates it computes, and so does the one pass computing its cached prefix
IMAGE_FORWARDS = {"images": 0}


class Evaluator:
    """Top-1 accuracy and KL to the unmodified model on one split, with codebooks applied in place.

    ``corrections``: keys of ``correct.CORRECTIONS`` (or Correction instances) applied after every
    combination of codebooks; ``statistics``: the calibration statistics they read (what -> layer ->
    array); ``calibration``: the calibration split, for corrections that pass over its images
    (BatchNorm re-estimation; the evaluated split itself when it is the same object); ``resume``: False
    runs the whole network in every pass, also inside ``resumed_at`` (the same measurements, for comparing).
    """

    def __init__(self, model: nn.Module, split: Split, batch_size: int = 1000, device: str = "auto",
                 precision: str = "fp32", channels_last: bool = False, compile: bool = False,
                 layers=None, resident: bool | None = None, corrections: Sequence[str | Correction] = (),
                 statistics: Mapping[str, Mapping[str, np.ndarray]] | None = None, calibration: Split | None = None,
                 resume: bool = True):
        if precision not in PRECISIONS:
            raise ValueError(f"evaluation.precision: {precision!r}; allowed: {', '.join(PRECISIONS)}")
        if batch_size < 1:
            raise ValueError(f"evaluation.batch_size must be >= 1, got {batch_size}")
        self.device = resolve_device(device)
        self.dtype = PRECISIONS[precision]
        self.batch_size = batch_size
        self.resume = resume
        self.channels_last = channels_last and split.x.ndim == 4
        model = model.eval().to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.layers = dict(shared_layers(model, layers))
        # contiguous copies (bucketize wants them; channels_last weights are not)
        self.originals = {n: m.weight.detach().clone(memory_format=torch.contiguous_format)
                          for n, m in self.layers.items()}
        self.forward = torch.compile(model) if compile else model
        self.model = model
        self.split = split
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
        self._split_model: SplitModel | None = None
        # resumed passes: the split, and the prefix values of its measurement passes and of its corrections'
        # statistics passes (``taking_statistics``), per batch
        self._resumed: tuple[LayerSplit, list[tuple[int, tuple]], list[tuple[int, tuple]]] | None = None
        self._taking_statistics = False
        self._set_tensors: dict[str, torch.Tensor] = {}  # model tensors ``set_tensors`` replaced: their values
        self.corrections = [CORRECTIONS[c]() if isinstance(c, str) else c for c in corrections]

        def calibration_evaluator():
            if calibration is None:
                raise ValueError("corrections: a correction passes over the calibration images, but none were given")
            if calibration is split:
                return self
            return Evaluator(model, calibration, batch_size=batch_size, device=device, precision=precision,
                             channels_last=channels_last, layers=layers, resident=resident)

        inputs = CorrectionInputs(statistics=statistics or {}, calibration=calibration_evaluator)
        for c in self.corrections:
            c.prepare(self, inputs)

    def release(self) -> None:
        """Free the device memory held for the split and the reference outputs."""
        self.x = self._reference = self._resumed = None
        for c in self.corrections:
            c.release()
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

    def _normalized(self, xb: torch.Tensor) -> torch.Tensor:
        """A batch as the model takes it: float, normalised, in the memory format the passes use."""
        xb = (xb.float() - self.mean) / self.std
        return xb.contiguous(memory_format=torch.channels_last) if self.channels_last else xb

    @torch.inference_mode()
    def _pass(self, reduce) -> None:
        """One pass over the split: ``reduce(start, logits)`` for every batch (a correction may ride on it:
        ``Correction.during_pass``)."""
        with self._autocast(), contextlib.ExitStack() as riding:
            for c in self.corrections:
                riding.enter_context(c.during_pass(self))
            if self._resumed is not None:
                split, measured, statistics = self._resumed
                for i, values in statistics if self._taking_statistics else measured:
                    logits = split.suffix(*values).float()
                    reduce(i, logits)
                    IMAGE_FORWARDS["images"] += len(logits) * split.share
                return
            for i, xb in self._batches():
                xb = self._normalized(xb)
                reduce(i, self.forward(xb).float())
                IMAGE_FORWARDS["images"] += len(xb)

    def _free_bytes(self) -> int:
        if self.device.type == "cuda":
            return torch.cuda.mem_get_info(self.device)[0]
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):  # not a POSIX system that says
            return 0

    def _split_at(self, layer: str) -> LayerSplit | None:
        """The model split at ``layer`` where resumed passes measure what whole ones do, else None (logged)."""
        why = None
        if not self.resume:
            why = "switched off (resume=False)"
        elif self.forward is not self.model:
            why = "the forward is compiled"
        elif not all(c.resumable for c in self.corrections):
            why = "a correction takes its statistics from other images"
        if why is None:
            if self._split_model is None:
                self._split_model = SplitModel(self.model, tuple(self.split.x.shape[1:]))
            split = self._split_model.split(layer)
            if split is None:
                return None
            copies = 2 if any(c.statistics_pass for c in self.corrections) else 1
            need, free = split.bytes_per_image * self.n * copies, self._free_bytes()
            if need <= RESUMED_FRACTION * free:
                return split
            why = f"its cached values would take {need / 2**20:.0f} MiB of {free / 2**20:.0f} MiB free"
        log.info("resumed passes off for %s: %s", layer, why)
        return None

    @contextlib.contextmanager
    def resumed_at(self, layer: str):
        """Passes in this context compute only what ``layer``'s output reaches: the rest of the forward
        (the layer's input, the skip connections around it) is computed once on entering, with the model
        as it is then, and cached for the split (``resume``). Only ``layer`` and the layers after it may be
        applied inside; where the model cannot be split, the passes run the whole network."""
        split = self._split_at(layer)
        if split is None:
            yield self
            return
        self.reference()  # with the whole network, before the passes resume
        statistics = None
        if any(c.statistics_pass for c in self.corrections):  # first: it leaves the statistics it takes
            statistics = self._prefix_values(split, statistics=True)
        measured = self._prefix_values(split)
        self._resumed = (split, measured, measured if statistics is None else statistics)
        try:
            yield self
        finally:
            self._resumed = None

    def _prefix_values(self, split: LayerSplit, statistics: bool = False) -> list[tuple[int, tuple]]:
        """Per batch, what ``split.suffix`` takes, computed as the measurement passes (or, ``statistics``,
        the corrections' statistics passes) of the whole network compute it."""
        values = []
        with torch.inference_mode(), self._autocast(), contextlib.ExitStack() as riding:
            for c in self.corrections:
                riding.enter_context(c.prefix_pass(self, statistics=statistics))
            for i, xb in self._batches():
                xb = self._normalized(xb)
                values.append((i, split.prefix(xb)))
                IMAGE_FORWARDS["images"] += len(xb) * (1.0 - split.share)
        return values

    @contextlib.contextmanager
    def taking_statistics(self):
        """Passes in this context are a correction's statistics pass (``Correction.statistics_pass``)."""
        self._taking_statistics = True
        try:
            yield
        finally:
            self._taking_statistics = False

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
        """Log-softmax and top-1 of the unmodified model (computed once, with the original weights; the
        model's state, codebooks and corrections included, is put back after)."""
        if self._reference is None:
            current = [t.detach().clone() for t in self.model.state_dict().values()]
            replaced = dict(self._set_tensors)  # the model's own values of tensors set now: still to put back
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
            for t, saved in zip(self.model.state_dict().values(), current):
                t.copy_(saved)
            self._set_tensors = replaced
            self._reference = (logp, pred)
        return self._reference

    def reference_accuracy(self) -> float:
        """Top-1 accuracy of the unmodified model on this split (from :meth:`reference`, no pass of its own
        once that is computed)."""
        if self.y is None:
            raise ValueError("accuracy: this split has no labels (the unlabelled selection images)")
        return int((self.reference()[1] == self.y).sum()) / self.n

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
        """Replace each named layer's weights by its codebook values (others untouched), then correct."""
        if self._reference is None and any(c.defers_to_pass for c in self.corrections):
            self.reference()  # before a correction waits for the next pass, which the reference's must not be
        if self._resumed is not None and not set(codebooks) <= self._resumed[0].modules:
            raise RuntimeError(f"apply: {sorted(set(codebooks) - self._resumed[0].modules)} come before the layer "
                               f"the passes resume at ({self._resumed[0].layer})")
        for name, cb in codebooks.items():
            _, shared = shared_weight(self.originals[name], cb)
            self.layers[name].weight.copy_(shared)
        for c in self.corrections:
            c.apply(self, list(codebooks))

    @torch.no_grad()
    def set_tensors(self, tensors: Mapping[str, np.ndarray]) -> None:
        """Put state_dict tensors into the model: what ``export_tensors`` gave for the codebooks applied now
        (corrected biases, re-estimated BatchNorm statistics), in place of the corrections' work and their
        passes. ``restore`` puts the model's own back."""
        for name in tensors:  # a corrected bias of a layer built without one (``BiasCorrection`` adds it)
            layer = self.layers.get(name.removesuffix(".bias")) if name.endswith(".bias") else None
            if layer is not None:
                with_bias(layer)
        state = self.model.state_dict()
        unknown = sorted(set(tensors) - set(state))
        if unknown:
            raise KeyError(f"set_tensors: {unknown[:3]} are not tensors of the model")
        for name, value in tensors.items():
            self._set_tensors.setdefault(name, state[name].detach().clone())
            state[name].copy_(torch.as_tensor(np.asarray(value)))

    @torch.no_grad()
    def restore(self, names=None) -> None:
        names = list(self.originals if names is None else names)
        for name in names:
            self.layers[name].weight.copy_(self.originals[name])
        for c in self.corrections:
            c.restore(self, names)
        if self._set_tensors:
            state = self.model.state_dict()
            for name, value in self._set_tensors.items():
                state[name].copy_(value)
            self._set_tensors = {}

    @contextlib.contextmanager
    def applied(self, codebooks: Mapping[str, Codebook]):
        self.apply(codebooks)
        try:
            yield self
        finally:
            self.restore(codebooks.keys())

    def export_tensors(self) -> dict[str, np.ndarray]:
        """The state_dict tensors the corrections changed (corrected biases, re-estimated BatchNorm
        statistics), as the export stores them next to the shared weights."""
        out: dict[str, np.ndarray] = {}
        for c in self.corrections:
            out.update(c.export_tensors(self))
        return out


ENGINE_KEYS = ("batch_size", "device", "precision", "channels_last", "compile")


@dataclass(frozen=True)
class EvaluationSpec:
    """Everything an evaluating stage measures with, built once per job from its rule's params.

    ``model``: the model config (checkpoint resolved); ``data``: the evaluation .npz; ``engine``:
    the ``evaluation`` config section (batch size, device, precision, ...); ``correct``: the
    ``correct`` section (which corrections act after the codebooks); ``statistics``: the
    calibration stage's file when they need one, else None.
    """

    model: dict
    data: str
    engine: dict = field(default_factory=dict)
    correct: dict = field(default_factory=dict)
    statistics: str | None = None

    def engine_kwargs(self) -> dict:
        e = self.engine
        return {"batch_size": int(e.get("batch_size", 1000)), "device": e.get("device", "auto"),
                "precision": e.get("precision", "fp32"), "channels_last": bool(e.get("channels_last", False)),
                "compile": bool(e.get("compile", False))}

    def read_statistics(self, what: str, layers) -> dict[str, np.ndarray]:
        """``what`` (mean, second) of each of ``layers`` from the calibration file."""
        if not self.statistics:
            raise ValueError(f"evaluation: the corrections read the calibration statistics ({what}), but no "
                             "calibration statistics file was given")
        return read_statistics(self.statistics, layers, what)

    def corrections(self) -> list[type[Correction]]:
        """The ``correct`` section's corrections, each in the form the calibration stage decided for this network
        where its form depends on the network (``Correction.decide``, e.g. ``correct.bn: auto``)."""
        enabled = enabled_corrections(self.correct)
        if not any("decision" in c.statistics for c in enabled):
            return enabled
        if not self.statistics:
            raise ValueError("evaluation: a correction's form is decided by the calibration stage "
                             f"({', '.join(c.key for c in enabled if 'decision' in c.statistics)}), but no "
                             "calibration statistics file was given")
        decisions = read_decisions(self.statistics)
        return [c.resolve(decisions.get(c.key)) if "decision" in c.statistics else c for c in enabled]

    def layer_statistics(self, corrections, layers) -> dict[str, dict[str, np.ndarray]]:
        """What ``corrections`` read of ``layers`` from the calibration file (what -> layer -> array)."""
        return {what: self.read_statistics(what, layers)
                for what in sorted({w for c in corrections for w in c.statistics if w in LAYER_STATISTICS})}

    def uncorrected(self) -> EvaluationSpec:
        """The same model, data and engine without corrections (a reloaded export carries them)."""
        return replace(self, correct={}, statistics=None)

    def evaluator(self, split: str, layers=None, model: nn.Module | None = None, images: int = 0, seed: int = 0,
                  **engine) -> Evaluator:
        """An evaluator of ``split`` (calib, test, select) with the corrections; ``model``: a built model to
        use (else one is built from the config); ``images``: at most that many of the split's images, a seeded
        random choice (``data.image_subset``; 0: all), on which a calibration evaluator's corrections also take
        their statistics; ``engine``: settings overriding the spec's."""
        if model is None:
            model = build_model(self.model)
        corrections = self.corrections()
        statistics = self.layer_statistics(corrections, [n for n, _ in shared_layers(model, layers)])
        data = image_subset(load_split(self.data, split), images, seed)
        calib = None
        if corrections:
            calib = data if split == "calib" else load_split(self.data, "calib")
        return Evaluator(model, data, layers=layers, corrections=[c() for c in corrections], statistics=statistics,
                         calibration=calib, **{**self.engine_kwargs(), **engine})


def measurement_columns(prefix: str, m: Measurement, baseline_accuracy: float) -> dict:
    """The columns every evaluated table records for one split: accuracy, loss, KL, changed predictions,
    and the images the shared network breaks (baseline right, now wrong) and fixes."""
    return {f"{prefix}accuracy": m.accuracy, f"{prefix}al": baseline_accuracy - m.accuracy, f"{prefix}kl": m.kl,
            f"{prefix}changed": m.changed, f"{prefix}broken": m.broken, f"{prefix}fixed": m.fixed}


def measure_all(evaluator: Evaluator, books: list[dict], what: str, tensors: list[dict] | None = None,
                kept: list[dict] | None = None) -> list[Measurement]:
    """Each combination of codebooks applied in turn and measured; the weights restored after.

    ``tensors``: per combination, the model tensors its corrections gave (``Evaluator.export_tensors``,
    kept by an earlier ``measure_all`` in ``kept``), set instead of correcting again (the evaluator has no
    corrections then): the same measurement without the corrections' passes over the calibration images.
    ``kept``: a list that receives each combination's ``export_tensors()``."""
    if tensors is not None and (len(tensors) != len(books) or evaluator.corrections):
        raise ValueError("measure_all: tensors need one entry per combination and an evaluator without corrections")
    out = []
    progress = Progress(len(books), what)
    for i, b in enumerate(books):
        evaluator.apply(b)
        if tensors is not None:
            evaluator.set_tensors(tensors[i])
        out.append(evaluator.measure())
        if kept is not None:  # copies: the arrays may share the model's memory, which the next point changes
            kept.append({k: np.array(v, copy=True) for k, v in evaluator.export_tensors().items()})
        progress.step(i + 1)
    evaluator.restore()
    return out


def splits_for(selection: str) -> tuple[str, ...]:
    """The splits validate and uniform measure: calibration, test, and the selection images if they choose."""
    return ("calib", "test", SELECT) if selection == "unlabelled" else ("calib", "test")


def measure_splits(spec: EvaluationSpec, layers: list[str], books: list[dict], baseline: dict, what: str,
                   splits=("calib", "test"), model: nn.Module | None = None,
                   tensors: list[dict] | None = None) -> list[dict]:
    """The measurement columns of every combination on each split in turn (one split on the device
    at a time; the model is built once, or ``model`` is the one ``spec.model`` builds). The unlabelled
    ``select`` split gives ``select_kl``, ``select_changed`` and ``select_images``. ``tensors``: what the
    corrections gave each combination on calibration (``measure_all``), set instead of correcting again;
    when the calibration split is measured here with corrections, it is measured first and what they give
    there is set on the other splits (the same statistics, without their passes over the calibration images)."""
    rows = [{} for _ in books]
    model = build_model(spec.model) if model is None else model
    if tensors is None and "calib" in splits and enabled_corrections(spec.correct):
        splits = ("calib", *(s for s in splits if s != "calib"))
    for split in splits:
        kept = [] if tensors is None and split == "calib" and enabled_corrections(spec.correct) else None
        ev = (spec if tensors is None else spec.uncorrected()).evaluator(split, layers, model=model)
        measured = measure_all(ev, books, f"{what} ({split})", tensors=tensors, kept=kept)
        if kept is not None:
            tensors = kept
        for row, m in zip(rows, measured):
            if split == SELECT:
                row.update(select_kl=m.kl, select_changed=m.changed, select_images=m.n)
            else:
                row.update(measurement_columns(f"{split}_", m, baseline[f"{split}_accuracy"]))
        ev.release()
    return rows


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
