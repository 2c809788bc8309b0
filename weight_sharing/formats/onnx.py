"""ONNX export: a model that onnxruntime runs, with every shared weight stored as indices plus codebook.

The validated model (codebooks and corrections applied) is exported with torch's ONNX exporter
(``dynamo=True``, graph optimisation off so that BatchNorm stays a node and every weight keeps its
name and its shared values); each shared layer's weight initializer is then replaced by its indices,
in the smallest unsigned integer type onnxruntime casts at the opset (``export.onnx.opset``: at 21,
uint4 for K <= 16, uint8 for K <= 256, uint16 beyond; from 25 also uint2 for K <= 4), and its
codebook (float32; one row per group of output channels for a grouped codebook), decoded in the
graph by Cast and Gather (GatherElements per output channel for grouped codebooks). Verified in
onnxruntime on the CPU on every test image: the same top-1 as the validated model and logits within
``LOGIT_TOLERANCE``.
"""
from __future__ import annotations

import copy
import logging
from pathlib import Path

import numpy as np
import torch

from ..sharing import assign_weight, row_groups
from . import ExportPoint, remove_output

log = logging.getLogger(__name__)

LOGIT_TOLERANCE = 1e-4  # max |logit difference| allowed, relative to max(1, max |logit|) of the batch
# (max entries, ONNX type, bits, the opset from which Cast takes it)
INDEX_TYPES = ((4, "UINT2", 2, 25), (16, "UINT4", 4, 21), (256, "UINT8", 8, 1), (65536, "UINT16", 16, 1))


def index_type(size: int, opset: int = 21) -> tuple[str, int]:
    """The smallest ONNX unsigned type (and its bits) that holds indices into ``size`` entries at ``opset``."""
    for most, name, bits, since in INDEX_TYPES:
        if size <= most and opset >= since:
            return name, bits
    raise ValueError(f"onnx: a codebook of {size} entries needs indices wider than 16 bits")


def replace_shared_weights(proto, point: ExportPoint, opset: int = 21) -> dict:
    """Each shared layer's weight initializer replaced by indices + codebook and the nodes decoding them;
    returns the stored index and codebook bits."""
    from onnx import TensorProto, helper, numpy_helper

    graph = proto.graph
    inits = {i.name: i for i in graph.initializer}
    shared = dict(point.model.named_modules())
    source = dict(point.source.named_modules())
    nodes, index_bits, codebook_bits = [], 0, 0
    for layer, cb in point.books.items():
        name = f"{layer}.weight"
        if name not in inits:
            raise ValueError(f"export.formats: onnx: the exported graph has no initializer {name!r} for shared "
                             f"layer {layer!r} (the exporter renamed or folded it)")
        weight = shared[layer].weight.detach().cpu().float().numpy()
        if not np.array_equal(numpy_helper.to_array(inits[name]), weight):
            raise ValueError(f"export.formats: onnx: initializer {name!r} is not the shared weight of {layer!r} "
                             "(folded into another tensor by the exporter)")
        idx = assign_weight(source[layer].weight.detach().cpu().float().numpy(), cb)
        type_name, bits = index_type(cb.size, opset)
        cent = np.asarray(cb.centroids, dtype=np.float32)
        graph.initializer.remove(inits[name])
        graph.initializer.append(helper.make_tensor(f"{name}.indices", getattr(TensorProto, type_name), idx.shape,
                                                    idx.ravel().tolist()))
        graph.initializer.append(numpy_helper.from_array(cent, f"{name}.codebook"))
        nodes.append(helper.make_node("Cast", [f"{name}.indices"], [f"{name}.i64"], to=TensorProto.INT64))
        if cb.group == 0:
            nodes.append(helper.make_node("Gather", [f"{name}.codebook", f"{name}.i64"], [name], axis=0))
        else:
            out = weight.shape[0]
            rows = row_groups(out, cb)
            graph.initializer.append(numpy_helper.from_array(rows.astype(np.int64), f"{name}.rows"))
            graph.initializer.append(numpy_helper.from_array(np.array([out, -1], np.int64), f"{name}.flat"))
            graph.initializer.append(numpy_helper.from_array(np.array(weight.shape, np.int64), f"{name}.shape"))
            nodes += [helper.make_node("Gather", [f"{name}.codebook", f"{name}.rows"], [f"{name}.per_row"], axis=0),
                      helper.make_node("Reshape", [f"{name}.i64", f"{name}.flat"], [f"{name}.i64_2d"]),
                      helper.make_node("GatherElements", [f"{name}.per_row", f"{name}.i64_2d"], [f"{name}.2d"],
                                       axis=1),
                      helper.make_node("Reshape", [f"{name}.2d", f"{name}.shape"], [name])]
        index_bits += idx.size * bits
        codebook_bits += cent.size * 32
    for node in reversed(nodes):  # decoding first: the graph stays topologically sorted
        graph.node.insert(0, node)
    return {"index_bits": index_bits, "codebook_bits": codebook_bits}


def export(point: ExportPoint, out: str, options: dict) -> dict:
    import onnx
    import onnxruntime as ort

    opset = int(options.get("opset", 21))
    model = copy.deepcopy(point.model).cpu().float().eval()
    example = torch.from_numpy(next(point.normalized_batches())[:1])
    program = torch.onnx.export(model, (example,), None, input_names=["x"], output_names=["logits"],
                                opset_version=opset, dynamo=True, optimize=False,
                                dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False)
    proto = program.model_proto
    stored = replace_shared_weights(proto, point, opset)
    onnx.checker.check_model(proto)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(out).with_name(f".{Path(out).name}.tmp")
    onnx.save(proto, str(tmp))
    tmp.replace(out)
    session = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
    predictions, worst = [], 0.0
    with torch.inference_mode():
        for xb in point.normalized_batches():
            got = session.run(None, {"x": xb})[0]
            want = model(torch.from_numpy(xb)).float().numpy()
            worst = max(worst, float(np.abs(got - want).max() / max(1.0, float(np.abs(want).max()))))
            predictions.append(got.argmax(1))
    pred = np.concatenate(predictions)
    differing = int((pred != point.expected).sum())
    if differing or worst > LOGIT_TOLERANCE:
        remove_output(out)
        raise RuntimeError(f"export {out}: onnxruntime predicts {differing} test images differently from the "
                           f"validated model, largest relative logit difference {worst:.2e} "
                           f"(allowed {LOGIT_TOLERANCE:g})")
    acc = float((pred == np.asarray(point.test.y)).mean())
    return {"file_bytes": Path(out).stat().st_size, **stored, "test_accuracy": acc, "predictions_differing": 0,
            "max_logit_difference": worst, "widened_layers": [],
            "verified": f"onnxruntime {ort.__version__} (CPU): the same top-1 on every test image ({len(pred)}), "
                        f"logits within {worst:.1e} relative"}
