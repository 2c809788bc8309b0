"""Corrections of a shared layer computed from its inputs on the calibration images, without retraining.

Statistics (gathered once per network by the ``calibration`` stage, one pass with hooks on the
unmodified network): for every shared layer, the mean and the second moment of the vectors the
layer multiplies by its weight rows: the input features of a Linear layer, the receptive-field
patches (as ``F.unfold`` lays them out, padding included) of a convolution, per convolution group.

- Bias correction: sharing moves output channel c by (W - W_shared)[c] . x on average
  (W - W_shared)[c] . E[x]; that amount is added to the channel's bias, so the layer's mean
  output is the unshared layer's (a layer without a bias gets one).
- Data-aware centroids: for the k-means assignment fixed, the K codebook values that minimise
  the layer's output error sum_r (w_r - A_r c)^T S (w_r - A_r c) over its weight rows r (A_r: the
  row's one-hot assignment, S: the input second moment, or the input covariance when the bias is
  corrected too, since the correction removes the mean error): the K x K normal equations
  (sum_r A_r^T S A_r) c = sum_r A_r^T S w_r.
- BatchNorm re-estimation: after the codebooks are applied, the running statistics of every
  BatchNorm layer are re-estimated on the calibration images (one pass in training mode).

Bias correction and BatchNorm re-estimation act on an evaluator after its codebooks are applied;
both implement :class:`Correction` and are listed in :data:`CORRECTIONS` under their key of the
``correct`` config section, which is all an evaluator, the export and the workflow know of them.
The centroid refit changes the codebooks themselves and runs in the sweep only.
"""
from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass, replace
from typing import Callable, ClassVar, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from torch import nn

from .codebook import Codebook
from .sharing import row_groups, shared_weight

log = logging.getLogger(__name__)

UNFOLD_CHUNK = 1 << 24  # unfolded elements per step when gathering convolution statistics


# the layer kinds whose input statistics can be gathered (Conv3d: F.unfold has no 3-D form)
STATISTICS_KINDS = (nn.Linear, nn.Conv1d, nn.Conv2d)


def conv_input(module: nn.Conv1d | nn.Conv2d, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
    """The input as the convolution sees it (explicit padding applied) and the padding left to unfold."""
    if type(module).__name__ == "Conv2dSame":  # timm's TensorFlow-style 'SAME' padding, applied in forward
        from timm.layers import pad_same

        return pad_same(x, module.weight.shape[-2:], module.stride, module.dilation), (0,) * (x.ndim - 2)
    if isinstance(module.padding, str) or module.padding_mode != "zeros":  # 'same'/'valid', or not zero-padded
        mode = "constant" if module.padding_mode == "zeros" else module.padding_mode
        return F.pad(x, module._reversed_padding_repeated_twice, mode=mode), (0,) * (x.ndim - 2)
    return x, tuple(module.padding)


def input_rows(module: nn.Module, x: torch.Tensor):
    """Chunks of (samples, groups, d_g) input vectors of a layer's weight rows (d_g: weights per row).
    A Conv1d is unfolded as a convolution over an image of height 1 (timm's ECA attention has them)."""
    if isinstance(module, nn.Linear):
        yield x.reshape(-1, 1, x.shape[-1])
        return
    if not isinstance(module, (nn.Conv1d, nn.Conv2d)):
        raise TypeError(f"statistics: {type(module).__name__} is not one of "
                        f"{', '.join(k.__name__ for k in STATISTICS_KINDS)}")
    x, padding = conv_input(module, x)
    kernel, dilation, stride = module.kernel_size, module.dilation, module.stride
    if isinstance(module, nn.Conv1d):  # (N, C, L) as (N, C, 1, L)
        x, padding = x.unsqueeze(2), (0, *padding)
        kernel, dilation, stride = (1, *kernel), (1, *dilation), (1, *stride)
    d = module.in_channels * math.prod(kernel)
    out_positions = max(1, x[0, 0].numel())  # an upper bound on unfolded positions per image
    step = max(1, UNFOLD_CHUNK // (d * out_positions))
    for i in range(0, len(x), step):
        cols = F.unfold(x[i:i + step], kernel, dilation=dilation, padding=padding, stride=stride)  # (n, d, L)
        yield cols.transpose(1, 2).reshape(-1, module.groups, d // module.groups)


class LayerStatistics:
    """Running sums of a layer's input rows: count, sum and (optionally) sum of outer products per group."""

    def __init__(self, second_moment: bool):
        self.second_moment = second_moment
        self.count = 0
        self.sum = self.outer = None

    def add(self, module: nn.Module, x: torch.Tensor) -> None:
        for rows in input_rows(module, x.detach().float()):
            r = rows.double()
            s = r.sum(0)
            self.sum = s if self.sum is None else self.sum + s
            if self.second_moment:
                o = torch.einsum("ngi,ngj->gij", r, r)
                self.outer = o if self.outer is None else self.outer + o
            self.count += len(rows)

    def tensors(self) -> dict[str, np.ndarray]:
        """``mean`` (G, d_g) and, if gathered, ``second`` (G, d_g, d_g) as float64 arrays."""
        out = {"mean": (self.sum / self.count).cpu().numpy()}
        if self.second_moment:
            out["second"] = (self.outer / self.count).cpu().numpy()
        return out


@torch.no_grad()
def gather_statistics(evaluator, second_moment: bool) -> dict[str, dict[str, np.ndarray]]:
    """Per shared layer of ``evaluator`` (unmodified weights), the input statistics on its split."""
    evaluator.restore()
    stats = {name: LayerStatistics(second_moment) for name in evaluator.layers}
    hooks = [m.register_forward_pre_hook(lambda mod, args, s=stats[name]: s.add(mod, args[0]))
             for name, m in evaluator.layers.items()]
    try:
        evaluator.predictions()
    finally:
        for h in hooks:
            h.remove()
    return {name: s.tensors() for name, s in stats.items()}


def bias_shift(original: torch.Tensor, shared: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """Per output channel, the mean output change (W - W_shared)[c] . E[x] (``mean``: (G, d_g))."""
    out = original.shape[0]
    delta = (original - shared).reshape(out, -1).double()
    per_group = out // mean.shape[0]
    return (delta * mean.double().repeat_interleave(per_group, dim=0)).sum(1)


def _weighted_rows(moment: np.ndarray, mean: np.ndarray | None, device) -> torch.Tensor:
    """(G, d, d) second moment, centred (the covariance) when ``mean`` is given."""
    s = torch.as_tensor(moment, dtype=torch.float64, device=device)
    if mean is not None:
        m = torch.as_tensor(mean, dtype=torch.float64, device=device)
        s = s - m[:, :, None] * m[:, None, :]
    return s


ROW_BATCH_ELEMENTS = 1 << 24  # one-hot assignment elements per step of the direct normal equations
DIRECT_MAX_WORK = 1e9  # multiply-adds (rows x d^2 x K) up to which the normal equations are formed directly
CG_TOLERANCE, CG_MAX_STEPS = 1e-6, 300


def _times_moment(s: torch.Tensor, conv_rows: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Each row of ``v`` (R, d) times its convolution group's (symmetric) input moment."""
    if s.shape[0] == 1:
        return v @ s[0]
    if v.numel() * s.shape[1] <= ROW_BATCH_ELEMENTS:  # small groups (depthwise): one batched product
        return torch.bmm(s[conv_rows], v[:, :, None])[:, :, 0]
    out = torch.empty_like(v)
    for g in range(s.shape[0]):
        rows = conv_rows == g
        out[rows] = v[rows] @ s[g]
    return out


def refit_centroids(weight: np.ndarray | torch.Tensor, codebook: Codebook, moment: np.ndarray,
                    mean: np.ndarray | None = None, device: str | torch.device = "cpu") -> Codebook:
    """The codebook with its values refit to the layer's output on the calibration inputs.

    ``weight``: the layer's original weights (out, ...); ``moment``: (G_conv, d_g, d_g) input
    second moment per convolution group; ``mean``: given when the bias is corrected too (then the
    fit is on the covariance). The assignment (thresholds) is kept. Small layers: the K x K normal
    equations are formed and solved (least norm: a cluster the inputs never excite keeps its
    k-means value); larger ones: conjugate gradients from the k-means values (to a relative
    residual of 1e-6 per codebook), each step one product of the weight rows with the input moment,
    so the cost does not grow with K; with grouped codebooks the blocks of the system (one per group)
    are solved side by side, each with its own step sizes.
    """
    original = weight.to(device) if isinstance(weight, torch.Tensor) else torch.as_tensor(np.asarray(weight),
                                                                                          device=device)
    out = original.shape[0]
    w2 = original.reshape(out, -1).double()
    s = _weighted_rows(moment, mean, device)
    conv_groups, d = s.shape[0], s.shape[1]
    if w2.shape[1] != d or out % conv_groups:
        raise ValueError(f"refit_centroids: statistics of {conv_groups} x {d} inputs do not fit weights "
                         f"{tuple(original.shape)}")
    idx, _ = shared_weight(original, codebook)
    idx = idx.reshape(out, -1)
    cb_rows = torch.as_tensor(row_groups(out, codebook), device=device)
    conv_rows = torch.arange(out, device=device) // (out // conv_groups)
    size, groups = codebook.size, codebook.groups
    flat = (cb_rows[:, None] * size + idx).ravel()  # each weight's unknown

    s32 = s.float()  # the large products in float32, the sums and the small solve in float64

    def gather_moment(v_rows: torch.Tensor) -> torch.Tensor:
        """sum_r A_r^T S v_r: the rows' moment products summed into their clusters, (groups, K)."""
        prod = _times_moment(s32, conv_rows, v_rows.float()).double()
        return torch.zeros(groups * size, dtype=torch.float64, device=device).index_add_(0, flat, prod.ravel()).view(
            groups, size)

    b = gather_moment(w2)
    c0 = torch.as_tensor(np.asarray(codebook.centroids, dtype=np.float64).reshape(groups, size), device=device)
    if out * d * d * size <= DIRECT_MAX_WORK:
        h = torch.zeros(groups, size, size, dtype=torch.float64, device=device)
        step, per_group = max(1, ROW_BATCH_ELEMENTS // (d * size)), out // conv_groups
        for gc in range(conv_groups):
            for i in range(gc * per_group, (gc + 1) * per_group, step):
                r = torch.arange(i, min(i + step, (gc + 1) * per_group), device=device)
                a = F.one_hot(idx[r], size).double()  # (B, d, K): the rows' assignments
                h.index_add_(0, cb_rows[r], a.transpose(1, 2) @ torch.matmul(s[gc], a))
        h, rhs = h.cpu(), (b - (h @ c0[:, :, None])[:, :, 0]).cpu()
        # a least-norm step from the k-means values: clusters the inputs never excite keep them
        cent = c0.cpu() + torch.linalg.lstsq(h, rhs[:, :, None], rcond=1e-10, driver="gelsd").solution[:, :, 0]
    else:
        def h_times(c):
            return gather_moment(c[cb_rows[:, None], idx])

        # the normal equations are block-diagonal, one block per codebook (each weight row belongs to one
        # group): conjugate gradients run per block (step sizes per group), so every group converges in
        # at most its K steps, as one tensor codebook does, instead of all groups' K together
        cent, r = c0.clone(), b - h_times(c0)
        p, rr = r.clone(), (r * r).sum(1)
        stop = CG_TOLERANCE ** 2 * (b * b).sum(1)
        for _ in range(CG_MAX_STEPS):
            active = rr > stop
            if not bool(active.any()):
                break
            hp = h_times(p)
            php = (p * hp).sum(1)
            active &= php > 0  # a block with only directions the inputs never excite is done
            if not bool(active.any()):
                break
            # finished blocks take no step and keep a zero direction and residual norm from here on
            alpha = torch.where(active, rr, 0.0) / torch.where(active, php, 1.0)
            cent += alpha[:, None] * p
            r -= alpha[:, None] * hp
            rr_new = torch.where(active, (r * r).sum(1), 0.0)
            beta = rr_new / torch.where(active, rr, 1.0)
            p = (r + beta[:, None] * p) * active[:, None]
            rr = rr_new
    return replace(codebook, centroids=cent.float().cpu().numpy().reshape(np.shape(codebook.centroids)))


def output_error(weight: np.ndarray, shared: np.ndarray, moment: np.ndarray, mean: np.ndarray | None = None) -> float:
    """sum_r (w_r - s_r)^T S (w_r - s_r): the layer's summed squared output error per input (for checks)."""
    s = _weighted_rows(moment, mean, "cpu")
    out = weight.shape[0]
    d = torch.as_tensor((np.asarray(weight, dtype=np.float64) - np.asarray(shared, dtype=np.float64))
                        .reshape(out, -1))
    rows = torch.arange(out) // (out // s.shape[0])
    return float((_times_moment(s, rows, d) * d).sum())


# --- the calibration statistics file --------------------------------------------------------------

LAYER_STATISTICS = ("mean", "second")  # what the calibration stage can gather per shared layer
# ... and what it writes: those, and the forms of the corrections that decide theirs per network (``decide``)
STATISTICS = (*LAYER_STATISTICS, "decision")
REFIT_STATISTICS = ("second",)  # what the centroid refit (correct.centroids, in the sweep) reads
DECISION_PREFIX = "decision."  # a decided correction's form: metadata "decision.{key}" of the calibration file


def read_decisions(path: str) -> dict[str, str]:
    """The forms the calibration stage decided (correction key -> form) from its file's metadata."""
    with safe_open(path, framework="numpy") as f:
        meta = f.metadata() or {}
    return {k[len(DECISION_PREFIX):]: v for k, v in meta.items() if k.startswith(DECISION_PREFIX)}


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


# --- corrections applied after the codebooks ------------------------------------------------------

@dataclass
class CorrectionInputs:
    """What a correction may prepare from: the calibration statistics it declared (what -> layer ->
    array) and, on demand, an evaluator over the calibration images sharing the evaluated model."""

    statistics: Mapping[str, Mapping[str, np.ndarray]]
    calibration: Callable[[], object]


class Correction:
    """A correction of the shared network computed from the calibration images, without retraining.

    ``key``: its switch in the ``correct`` config section; ``statistics``: the calibration statistics
    (:data:`STATISTICS`) it reads. An evaluator calls ``prepare`` once, ``apply`` after the codebooks
    of ``names`` are applied, ``restore`` after their original weights are back, ``release`` when
    done; the export stores ``export_tensors`` (state_dict entries) with the shared weights.
    """

    key: ClassVar[str]
    statistics: ClassVar[tuple[str, ...]] = ()
    # True when ``apply`` may leave its work to the evaluator's next pass (``during_pass``)
    defers_to_pass: bool = False
    # True when the evaluator may resume its passes after a layer (``Evaluator.resumed_at``): the correction
    # changes nothing before the layers it is applied to, and any pass of its own runs over the evaluator
    resumable: bool = True
    # True when ``apply`` runs a pass of its own over the evaluator (in ``Evaluator.taking_statistics``):
    # resumed, that pass reads prefix values computed as the whole network's statistics pass computes them
    statistics_pass: bool = False

    def prepare(self, evaluator, inputs: CorrectionInputs) -> None:
        pass

    def apply(self, evaluator, names) -> None:
        pass

    def during_pass(self, evaluator) -> contextlib.AbstractContextManager:
        """A context the evaluator's next pass over its split runs in (nothing, unless ``apply`` deferred)."""
        return contextlib.nullcontext()

    def prefix_pass(self, evaluator, statistics: bool = False) -> contextlib.AbstractContextManager:
        """The context the pass computing the resumed passes' prefix values runs in (``Evaluator.resumed_at``):
        those of the measurements, or (``statistics``) those of the correction's own statistics passes."""
        return contextlib.nullcontext()

    def restore(self, evaluator, names) -> None:
        pass

    def export_tensors(self, evaluator) -> dict[str, np.ndarray]:
        """Every model tensor this correction changes, as it is now (state_dict name -> array): what the export
        stores, and what measurements of the same codebooks on another split set instead of correcting
        again (``Evaluator.set_tensors``)."""
        return {}

    def release(self) -> None:
        pass

    @classmethod
    def decide(cls, calibration) -> str | None:
        """For a correction whose form depends on the network (``decision`` among its ``statistics``): the form,
        chosen by the calibration stage from ``calibration`` (an evaluator of the calibration images without
        corrections) and written into its file; else None."""
        return None

    @classmethod
    def resolve(cls, decision: str | None) -> type[Correction]:
        """The correction the evaluating stages build, given what ``decide`` wrote (this one, unless it decides)."""
        return cls


def with_bias(module: nn.Module) -> nn.Module:
    """``module`` with a bias: a zero one added where it was built without (the same outputs), for a
    corrected bias to go into."""
    if module.bias is None:
        w = module.weight
        module.bias = nn.Parameter(torch.zeros(w.shape[0], dtype=w.dtype, device=w.device), requires_grad=False)
    return module


class BiasCorrection(Correction):
    """``correct.bias``: each shared layer's mean output shift added to its bias. Every shared layer gets a
    bias (zero where it had none, which changes no output)."""

    key = "bias"
    statistics = ("mean",)

    def prepare(self, evaluator, inputs: CorrectionInputs) -> None:
        means = inputs.statistics.get("mean")
        if means is None:
            raise ValueError("bias correction: no input statistics (the calibration stage's mean of each layer)")
        missing = [n for n in evaluator.layers if n not in means]
        if missing:
            raise ValueError(f"bias correction: no input statistics for layers {missing}")
        self.means = {n: torch.as_tensor(np.asarray(means[n]), device=evaluator.device) for n in evaluator.layers}
        for m in evaluator.layers.values():
            with_bias(m)
        self.original_biases = {n: m.bias.detach().clone() for n, m in evaluator.layers.items()}

    @torch.no_grad()
    def apply(self, evaluator, names) -> None:
        for name in names:
            orig, layer = evaluator.originals[name], evaluator.layers[name]
            shift = bias_shift(orig, layer.weight, self.means[name])
            layer.bias.copy_(self.original_biases[name] + shift.to(orig.dtype))

    @torch.no_grad()
    def restore(self, evaluator, names) -> None:
        for name in names:
            evaluator.layers[name].bias.copy_(self.original_biases[name])

    def export_tensors(self, evaluator) -> dict[str, np.ndarray]:
        return {f"{n}.bias": m.bias.detach().cpu().numpy() for n, m in evaluator.layers.items()}


BATCHNORM_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


class BatchNormReestimation(Correction):
    """``correct.bn``: after codebooks are applied, the running statistics of every BatchNorm layer are
    re-estimated on the calibration images, in one pass of the evaluated (eval-mode) network: just before
    each BatchNorm normalises a batch, its statistics take that batch's (a cumulative average over the
    batches, as momentum None gives), so each layer's statistics are those of the activations the shared
    network, with the re-estimated layers before it, produces.

    When the evaluated split is the calibration split and fits in one batch, that pass is the
    measurement itself (``defers_to_pass``): every BatchNorm normalises the batch with the statistics it
    has just taken from it, which is what a second pass with the final statistics computes, bit for bit;
    so each calibration measurement costs one pass, not two. Otherwise (the test split, or calibration
    in several batches) the statistics pass runs first over the calibration images."""

    key = "bn"
    # BatchNormShift: the trained statistics moved by what sharing changes
    relative: ClassVar[bool] = False

    def prepare(self, evaluator, inputs: CorrectionInputs) -> None:
        self.model = evaluator.model
        self.batchnorms = [m for m in evaluator.model.modules()
                           if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
        self.source = inputs.calibration() if self.batchnorms else None
        self.own_source = self.source is not evaluator
        self.saved = self._state()
        # hooks on modules of a compiled forward are not guaranteed to run: keep the separate pass there
        compiled = evaluator.forward is not evaluator.model
        self.defers_to_pass = bool(self.batchnorms) and not self.own_source and not compiled and (
            evaluator.n <= evaluator.batch_size)
        # resumed passes re-estimate only the BatchNorms after the swept layer: the prefix's take theirs once
        # (``prefix_pass``), from the passes over the evaluator's own images
        self.resumable = not self.batchnorms or not self.own_source
        self.statistics_pass = bool(self.batchnorms) and not self.defers_to_pass
        self.pending = False
        if self.relative and self.batchnorms:
            self.trained = {m: (mean, var) for m, (mean, var, _) in zip(self.batchnorms, self.saved)}
            self.reference = self._reference_statistics()
            self.taken = {m: (torch.zeros_like(m.running_mean), torch.ones_like(m.running_var))
                          for m in self.batchnorms}

    def _state(self) -> list[tuple[torch.Tensor, ...]]:
        return [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
                for m in self.batchnorms]

    @staticmethod
    def _fold(module, x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> None:
        """Fold this batch's statistics into ``mean`` and ``var`` (the cumulative average over the batches since
        ``num_batches_tracked`` was zeroed, as momentum None gives): the one estimator of every mode."""
        module.num_batches_tracked.add_(1)
        F.batch_norm(x, mean, var, None, None, True, 1.0 / float(module.num_batches_tracked), module.eps)

    def _take_statistics(self, module, args) -> None:
        """Forward pre-hook of the re-estimation: the module normalises with the statistics taken so far."""
        self._fold(module, args[0], module.running_mean, module.running_var)

    @torch.no_grad()
    def _reference_statistics(self) -> dict:
        """Each BatchNorm's input statistics in the unmodified network (its trained statistics normalising)
        over the calibration images, by the estimator and batches of the re-estimation: one pass."""
        taken = {m: (torch.zeros_like(m.running_mean), torch.ones_like(m.running_var)) for m in self.batchnorms}
        with self._hooked(lambda module, args: self._fold(module, args[0], *taken[module]), reset=False):
            self.source.predictions()
        self.restore(None, [])
        return taken

    def _take_shifted(self, module, args) -> None:
        """Forward pre-hook of ``correct.bn: shift``: fold this batch's statistics into the module's taken ones,
        and normalise with the trained statistics moved by how far the taken ones lie from the unmodified
        network's: the mean by their difference, the variance by their ratio."""
        mean, var = self.taken[module]
        self._fold(module, args[0], mean, var)
        ref_mean, ref_var = self.reference[module]
        trained_mean, trained_var = self.trained[module]
        module.running_mean.copy_(trained_mean + (mean - ref_mean))
        # a channel constant in the unmodified network (variance 0) takes what sharing adds to its variance
        module.running_var.copy_(torch.where(ref_var > 0, trained_var * (var / ref_var), trained_var + var))

    def _reestimating(self) -> contextlib.AbstractContextManager:
        """Every BatchNorm takes the statistics of what reaches it during the passes run in this context."""
        return self._hooked(self._take_shifted if self.relative else self._take_statistics, reset=True)

    @contextlib.contextmanager
    def _hooked(self, take, reset: bool):
        """``take`` as every BatchNorm's forward pre-hook, from zero batches (``reset``: from zeroed statistics
        too; else the trained ones normalise and stay)."""
        with torch.no_grad():
            for m in self.batchnorms:
                m.reset_running_stats() if reset else m.num_batches_tracked.zero_()
        hooks = [m.register_forward_pre_hook(take) for m in self.batchnorms]
        try:
            yield
        finally:
            for h in hooks:
                h.remove()
            with torch.no_grad():  # a BatchNorm the forward never calls (a training-only head) keeps its own
                for m, (mean, var, count) in zip(self.batchnorms, self.saved):
                    if int(m.num_batches_tracked) == 0:
                        m.running_mean.copy_(mean)
                        m.running_var.copy_(var)
                        m.num_batches_tracked.copy_(count)

    def apply(self, evaluator, names) -> None:
        if not self.batchnorms or not names:
            return
        if self.defers_to_pass:
            self.pending = True  # the next pass over the calibration batch re-estimates and measures
            return
        with self._reestimating(), self.source.taking_statistics():
            self.source.predictions()

    def during_pass(self, evaluator) -> contextlib.AbstractContextManager:
        if not self.pending:
            return contextlib.nullcontext()
        self.pending = False
        return self._reestimating()

    @contextlib.contextmanager
    def prefix_pass(self, evaluator, statistics: bool = False):
        """The prefix's BatchNorms computed as in the passes resumed after it: in the statistics pass, taking
        statistics batch by batch (they keep them); in the measurement's, normalising with the statistics of
        that pass, or, deferred, the batch's own. Their trained statistics are put back after."""
        if statistics or self.defers_to_pass:
            with self._reestimating():
                yield
        else:
            yield
        if not statistics:
            self.restore(evaluator, [])

    @torch.no_grad()
    def restore(self, evaluator, names) -> None:
        self.pending = False
        for m, (mean, var, count) in zip(self.batchnorms, self.saved):
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
            m.num_batches_tracked.copy_(count)

    def export_tensors(self, evaluator) -> dict[str, np.ndarray]:
        if self.pending:  # the statistics are taken by a pass: run it
            evaluator.predictions()
        return {k: v.detach().cpu().numpy() for k, v in self.model.state_dict().items()
                if k.rsplit(".", 1)[-1] in BATCHNORM_BUFFERS}

    def release(self) -> None:
        if self.source is not None and self.own_source:
            self.source.release()


class BatchNormShift(BatchNormReestimation):
    """``correct.bn: shift``: each BatchNorm keeps its trained statistics, moved by what sharing changes in
    its input on the calibration images: mean + (mean shared - mean unmodified), variance x (variance shared
    / variance unmodified), both taken as :class:`BatchNormReestimation` takes them (the same pass, batches
    and estimator; the unmodified network's once per evaluator). Where sharing changes nothing, the network
    is the trained one exactly, so a point's calibration loss is sharing's alone; plain re-estimation also
    refits every BatchNorm to the calibration images, which on its own changes predictions (benchmarks/
    README.md: "BatchNorm statistics: re-estimated or shifted")."""

    relative = True


class BatchNormAuto(Correction):
    """``correct.bn: auto``: :class:`BatchNormReestimation` where re-estimating the unmodified network's
    statistics on the calibration images fixes at least as many of them as it breaks (trained statistics
    stale there, as after a short fine-tune), else :class:`BatchNormShift`. The calibration stage decides,
    once per network (``decide``), and writes the form into its file; the evaluating stages build that form
    (``resolve``), so their measurements are that mode's, bit for bit."""

    key = "bn"
    statistics = ("decision",)
    FORMS: ClassVar[dict[str, type[Correction]]] = {"true": BatchNormReestimation, "shift": BatchNormShift}

    @classmethod
    @torch.no_grad()
    def decide(cls, calibration) -> str:
        """``true`` or ``shift`` for the unmodified network that ``calibration`` (an evaluator of the calibration
        images without corrections) holds: two passes; its trained statistics are put back."""
        probe = BatchNormReestimation()
        probe.prepare(calibration, CorrectionInputs(statistics={}, calibration=lambda: calibration))
        if not probe.batchnorms:
            return "true"  # no BatchNorm: both forms change nothing
        baseline = calibration.reference()[1]
        with probe._reestimating():
            reestimated = calibration.predictions()
        probe.restore(calibration, [])
        right = calibration.y
        broken = int(((baseline == right) & (reestimated != right)).sum())
        fixed = int(((baseline != right) & (reestimated == right)).sum())
        decision = "true" if fixed >= broken else "shift"
        log.info("correct.bn: auto: re-estimating the unmodified network's statistics on the %d calibration images "
                 "breaks %d and fixes %d of them: %s", calibration.n, broken, fixed,
                 "re-estimated" if decision == "true" else "shifted")
        return decision

    @classmethod
    def resolve(cls, decision: str | None) -> type[Correction]:
        if decision not in cls.FORMS:
            raise ValueError(f"correct.bn: auto: the calibration statistics decide {decision!r}, not one of "
                             f"{sorted(cls.FORMS)} (a file from before correct.bn: auto; rerun its calibration stage)")
        return cls.FORMS[decision]

    def prepare(self, evaluator, inputs: CorrectionInputs) -> None:
        raise TypeError("correct.bn: auto is built in the form its calibration stage decided "
                        "(EvaluationSpec.corrections), not as such")


# key under ``correct`` -> correction, in the order they are applied (a bias first, then the BatchNorm
# statistics of the network with it)
CORRECTIONS: dict[str, type[Correction]] = {c.key: c for c in (BiasCorrection, BatchNormReestimation)}
# (key, value) -> the correction that value of the switch selects, where it is not the key's own (true)
VARIANTS: dict[tuple[str, str], type[Correction]] = {("bn", "shift"): BatchNormShift, ("bn", "auto"): BatchNormAuto}


def enabled_corrections(correct: Mapping | None) -> list[type[Correction]]:
    """The corrections the ``correct`` config section switches on, in application order (a switch's value
    may name a variant, :data:`VARIANTS`)."""
    correct = correct or {}
    return [VARIANTS.get((key, correct[key]), c) if isinstance(correct[key], str) else c
            for key, c in CORRECTIONS.items() if correct.get(key)]


def needed_statistics(correct: Mapping | None, refit: bool = False) -> tuple[str, ...]:
    """The calibration statistics a stage reads under the ``correct`` section: those of the enabled
    corrections, and with ``refit`` (the sweep) those of the centroid refit when ``correct.centroids``
    is on. Empty: the stage needs no calibration file (and none runs when no stage needs one)."""
    wanted = {what for c in enabled_corrections(correct) for what in c.statistics}
    if refit and (correct or {}).get("centroids"):
        wanted.update(REFIT_STATISTICS)
    return tuple(w for w in STATISTICS if w in wanted)
