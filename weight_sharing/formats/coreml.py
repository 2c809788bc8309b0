"""Core ML export: an ``mlprogram`` package whose shared weights are ``constexpr_lut_to_dense`` ops.

The validated model (codebooks and corrections applied) is traced and converted by coremltools
(``mlprogram``; the MIL passes that fold BatchNorm or a scale into a convolution's weights are left
out, so every shared weight reaches the palettizer with its shared values); each shared layer's
weight is then palettized with ``mode="unique"``: its lookup table holds exactly the layer's distinct
shared values (per tensor, or per group of ``group`` output channels: iOS18), at the smallest index
width Core ML runs (1, 2, 3, 4, 6 or 8 bits: a 5-bit K is stored at 6 bits, a 7-bit one at 8; those
layers are reported as widened, with the CR they cost). A layer of more than 256 values, or of
fewer than 10 weights (coremltools keeps those inline: timm's ECA convolutions), is stored dense
and listed. LUT entries are float16 by default (``export.coreml.lut_dtype``), float32 as a setting.
Core ML does not run on Linux: the package is
read back, every LUT op decoded and compared with the validated shared weights (bit-exact for
float32 entries; for float16, equal to their float16 rounding, up to float16's smallest step where a
weight is too small for float16), and the model with the decoded
weights is measured in PyTorch on every test image. timm's "same"-padded convolutions (TF ports) pad by
the constant the package's fixed input shape gives (the converter cannot take a padding computed from a
traced shape).
"""
from __future__ import annotations

import copy
import functools
import json
import logging
import math
from pathlib import Path

import numpy as np
import torch

from ..compression import index_bits
from . import COREML_INDEX_BITS, ExportPoint, remove_output, stored_index_bits

log = logging.getLogger(__name__)

WEIGHT_CHANGING_PASSES = ("common::fuse_conv_batchnorm", "common::fuse_conv_scale", "common::fuse_conv_bias",
                          "common::fuse_linear_bias", "common::const_deduplication")
LAYERS_KEY = "weight_sharing.lut_layers"  # user metadata: LUT op -> shared layer
INLINE_WEIGHTS = 10  # coremltools stores a constant of fewer values inline in the program, uncompressed


FLOAT16_TINY = 2.0 ** -24  # float16's smallest step (subnormal): coremltools rounds weights below half of it
# to it where numpy rounds them to zero


def _same_values(a: np.ndarray, b: np.ndarray, float_dtype) -> bool:
    """Equal, as stored in ``float_dtype``: bit for bit in float32; in float16, up to float16's smallest
    step (the rounding of weights too small for float16 differs between coremltools and numpy)."""
    if np.shape(a) != np.shape(b):
        return False
    a, b = np.asarray(a, dtype=float_dtype), np.asarray(b, dtype=float_dtype)
    if np.array_equal(a, b):
        return True
    return float_dtype is not np.float32 and bool(np.abs(a.astype(np.float32) - b.astype(np.float32)).max()
                                                  <= FLOAT16_TINY)


def coreml_bits(k: int) -> int | None:
    """The index width Core ML stores a K-entry codebook at: the smallest of 1, 2, 3, 4, 6, 8 bits (None
    beyond 256 entries: the layer is stored dense)."""
    return stored_index_bits(k, COREML_INDEX_BITS)


def decode_lut(lut: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """The dense weight of a ``constexpr_lut_to_dense`` op: per tensor (iOS16, a 1-D LUT) or per block
    of channels (iOS18: LUT shape [blocks per axis..., entries, 1])."""
    if lut.ndim == 1:
        return lut[indices]
    grid = np.ogrid[tuple(slice(0, s) for s in indices.shape)]
    block = [g // (s // b) for g, s, b in zip(grid, indices.shape, lut.shape[:indices.ndim])]
    return lut[(*block, indices, 0)]


def read_luts(path: str) -> tuple[dict, dict]:
    """Every LUT op of a saved package: shared layer -> (lut, indices), and the package's user metadata."""
    import coremltools as ct
    from coremltools.converters.mil.frontend.milproto.load import load as milproto_load

    mlmodel = ct.models.MLModel(path, skip_model_load=True)
    spec = mlmodel.get_spec()
    meta = dict(spec.description.metadata.userDefined)
    names = json.loads(meta.get(LAYERS_KEY, "{}"))
    prog = milproto_load(model_spec=spec, specification_version=spec.specificationVersion,
                         file_weights_dir=mlmodel.weights_dir)
    out = {}
    for op in prog.functions["main"].find_ops(op_type="constexpr_lut_to_dense"):
        layer = names.get(op.outputs[0].name) or names.get(op.name)
        if layer is not None:
            out[layer] = (np.asarray(op.lut.val), np.asarray(op.indices.val))
    return out, meta


def _same_padding_made_static(model: torch.nn.Module, example: torch.Tensor) -> list[str]:
    """timm's "same"-padded convolutions (``Conv2dSame``: the TF ports, e.g. ``tf_efficientnet_lite*``)
    compute their padding from the input's shape in every forward, which Core ML's converter cannot take
    (an ``int`` of a traced size); at the package's fixed input shape that padding is a constant, so each
    pads by the constant it computes on ``example`` (the same values: TF's padding, extra row and column at
    the end). Returns the modules changed."""
    try:
        from timm.layers import Conv2dSame
        from timm.layers.padding import get_same_padding
    except ImportError:  # pragma: no cover - timm is a dependency
        return []
    convs = {n: m for n, m in model.named_modules() if isinstance(m, Conv2dSame)}
    sizes = {}
    hooks = [m.register_forward_pre_hook(lambda m, args: sizes.__setitem__(m, tuple(args[0].shape[-2:])))
             for m in convs.values()]
    with torch.no_grad():
        model(example)
    for h in hooks:
        h.remove()

    def static_forward(m, pad, x):
        return torch.nn.functional.conv2d(torch.nn.functional.pad(x, pad), m.weight, m.bias, m.stride, 0,
                                          m.dilation, m.groups)

    for m in convs.values():
        if m not in sizes:  # not called by the forward
            continue
        (ih, iw), (kh, kw) = sizes[m], m.weight.shape[-2:]
        ph = get_same_padding(ih, kh, m.stride[0], m.dilation[0])
        pw = get_same_padding(iw, kw, m.stride[1], m.dilation[1])
        m.forward = functools.partial(static_forward, m, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
    return [n for n, m in convs.items() if m in sizes]


def export(point: ExportPoint, out: str, options: dict) -> dict:
    import coremltools as ct
    import coremltools.optimize as cto

    lut_dtype = options.get("lut_dtype", "float16")
    float_dtype = np.float16 if lut_dtype == "float16" else np.float32
    model = copy.deepcopy(point.model).cpu().float().eval()
    example = torch.from_numpy(next(point.normalized_batches())[:1])
    # iOS18's constexpr_lut_to_dense: LUTs per tensor or per group of channels, 1, 2, 3, 4, 6 or 8 bits
    # (iOS16's has per-tensor LUTs without 3 bits only, and stores its indices packed)
    target = ct.target.iOS18
    pipeline = ct.PassPipeline.DEFAULT
    pipeline.remove_passes(WEIGHT_CHANGING_PASSES)
    if static := _same_padding_made_static(model, example):
        log.info("coreml: %d 'same'-padded convolutions pad by the constants of the %s input", len(static),
                 "x".join(map(str, example.shape[1:])))
    with torch.no_grad():
        traced = torch.jit.trace(model, example)
    mlmodel = ct.convert(traced, inputs=[ct.TensorType(name="x", shape=tuple(example.shape))],
                         outputs=[ct.TensorType(name="logits")], convert_to="mlprogram",
                         minimum_deployment_target=target, pass_pipeline=pipeline,
                         compute_precision=ct.precision.FLOAT16 if lut_dtype == "float16" else ct.precision.FLOAT32)
    consts = cto.coreml.get_weights_metadata(mlmodel, weight_threshold=1)
    modules = dict(model.named_modules())
    configs, names, widened, dense = {}, {}, [], {}
    for layer, cb in point.books.items():
        shared = modules[layer].weight.detach().numpy().astype(float_dtype)
        matches = [n for n, m in consts.items() if _same_values(m.val, shared, float_dtype)]
        preferred = layer.replace(".", "_") + "_weight"
        if not matches:
            raise ValueError(f"export.formats: coreml: the converted program has no constant holding the shared "
                             f"weight of layer {layer!r} (coremltools changed it)")
        const = preferred if preferred in matches else matches[0]
        if coreml_bits(cb.size) is None:  # more than 256 shared values: no LUT Core ML runs holds them
            widened.append(f"{layer} (dense: more than 256 values)")
            dense[layer] = shared.size
            continue
        if shared.size < INLINE_WEIGHTS:  # coremltools keeps such a constant inline, never as a LUT
            widened.append(f"{layer} (dense: {shared.size} weights)")
            dense[layer] = shared.size
            continue
        granularity = {"granularity": "per_grouped_channel", "group_size": cb.group, "channel_axis": 0} \
            if cb.group else {"granularity": "per_tensor"}
        configs[const] = cto.coreml.OpPalettizerConfig(mode="unique", weight_threshold=1, **granularity)
        names[f"{const}_palettized"] = layer
        if coreml_bits(cb.k) > index_bits(cb.k):
            widened.append(layer)
    mlmodel = cto.coreml.palettize_weights(mlmodel, cto.coreml.OptimizationConfig(op_name_configs=configs))
    mlmodel.user_defined_metadata[LAYERS_KEY] = json.dumps(names)
    for key, value in point.metadata.items():
        mlmodel.user_defined_metadata[f"weight_sharing.{key}"] = value if isinstance(value, str) else json.dumps(value)
    tmp = Path(out).with_name(f".tmp.{Path(out).name}")  # coremltools wants the .mlpackage suffix
    remove_output(tmp)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    mlmodel.save(str(tmp))
    remove_output(out)
    tmp.rename(out)
    try:
        return verify(point, out, model, float_dtype, lut_dtype, target, widened, dense)
    except Exception:
        remove_output(out)
        raise


def verify(point: ExportPoint, out: str, model, float_dtype, lut_dtype: str, target, widened: list[str],
           dense: dict[str, int]) -> dict:
    """Decode every LUT op of the saved package, compare it with the validated shared weights, and measure
    the model with the decoded weights in PyTorch on every test image (``dense``: layers stored without a
    LUT, with their weight counts)."""
    luts, _ = read_luts(out)
    missing = sorted(set(point.books) - set(luts) - set(dense))
    if missing:
        raise RuntimeError(f"export {out}: no LUT op for shared layers {missing}")
    modules = dict(model.named_modules())
    decoded_model = copy.deepcopy(model)
    decoded_modules = dict(decoded_model.named_modules())
    entry_bits = 16 if lut_dtype == "float16" else 32
    index_total, codebook_total = sum(dense.values()) * entry_bits, 0
    for layer, (lut, indices) in luts.items():
        dense = decode_lut(lut, indices)
        want = modules[layer].weight.detach().numpy().astype(float_dtype)
        if not _same_values(dense, want, float_dtype):
            raise RuntimeError(f"export {out}: the LUT of layer {layer!r} does not decode to its validated weights")
        with torch.no_grad():
            decoded_modules[layer].weight.copy_(torch.from_numpy(dense.astype(np.float32)))
        entries = lut.shape[-2] if lut.ndim > 1 else lut.shape[0]
        index_total += indices.size * int(math.log2(entries))
        codebook_total += lut.size * entry_bits
    predictions = []
    with torch.inference_mode():
        for xb in point.normalized_batches():
            predictions.append(decoded_model(torch.from_numpy(xb)).argmax(1).numpy())
    pred = np.concatenate(predictions)
    differing = int((pred != point.expected).sum())
    if lut_dtype == "float32" and differing:
        raise RuntimeError(f"export {out}: the decoded float32 LUT weights predict {differing} test images "
                           "differently from the validated model")
    acc = float((pred == np.asarray(point.test.y)).mean())
    size = sum(f.stat().st_size for f in Path(out).rglob("*") if f.is_file())
    return {"file_bytes": size, "index_bits": index_total, "codebook_bits": codebook_total, "test_accuracy": acc,
            "predictions_differing": differing, "max_logit_difference": None, "widened_layers": widened,
            "verified": f"read back with coremltools: every LUT op decodes to the validated shared weights "
                        f"({'bit-exact' if lut_dtype == 'float32' else 'their float16 rounding'}); the decoded "
                        f"weights in PyTorch change {differing} of {len(pred)} test predictions; deployment target "
                        f"{target.name}; not run by Core ML (no Core ML on Linux)"}
