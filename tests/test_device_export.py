"""Device formats: the ONNX model runs in onnxruntime and predicts what the validated model predicts; the
Core ML package reads back and every LUT op decodes to the validated shared weights. Per-tensor and
per-channel codebooks, a depthwise and a Linear layer, BatchNorm, a 5-bit layer (Core ML widens it) and
a layer of more than 256 values (Core ML keeps it dense)."""
import copy
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from weight_sharing.data import Split
from weight_sharing.formats import ExportPoint, export_formats
from weight_sharing.kmeans import kmeans_grid
from weight_sharing.sharing import grouped_codebooks, shared_weight

onnx = pytest.importorskip("onnx")
coremltools = pytest.importorskip("coremltools")


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
        self.pw = nn.Conv2d(8, 16, 1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = torch.relu(self.bn(self.stem(x)))
        x = torch.relu(self.pw(torch.relu(self.dw(x))))
        return self.fc(x.mean((2, 3)))


class SamePaddedNet(Net):
    """A TF-ported stem (timm's Conv2dSame, as in tf_efficientnet_lite*): padding computed from the input's
    shape in the forward, uneven at stride 2 on 12 px (none before, one row and column after)."""

    def __init__(self):
        super().__init__()
        from timm.layers import Conv2dSame

        self.stem = Conv2dSame(3, 8, 3, stride=2)


def make_point(k_pw=32, net=Net, tiny=False):
    torch.manual_seed(0)
    source = net().eval()
    with torch.no_grad():
        source.bn.running_mean.uniform_(-0.2, 0.2)
        source.bn.running_var.uniform_(0.5, 2.0)
    w = {n: m.weight.detach().numpy() for n, m in source.named_modules() if hasattr(m, "weight") and n != "bn"}
    books = {"stem": kmeans_grid(w["stem"].ravel(), [4])[4],                     # per tensor, 2 bits
             "dw": grouped_codebooks(w["dw"], [2], 1, 1 << 16)[2],               # depthwise, per channel
             "pw": kmeans_grid(w["pw"].ravel(), [k_pw])[k_pw],                    # per tensor, 5 bits
             "fc": grouped_codebooks(w["fc"], [4], 1, 1 << 16)[4]}               # Linear, per channel
    if tiny:  # a shared value too small for float16 (numpy rounds it to 0, coremltools to 2^-24)
        books["stem"] = replace(books["stem"], centroids=np.r_[7.45e-9, books["stem"].centroids[1:]])
    model = copy.deepcopy(source)
    with torch.no_grad():
        for name, cb in books.items():
            layer = dict(model.named_modules())[name]
            layer.weight.copy_(shared_weight(layer.weight, cb)[1])
    rng = np.random.default_rng(1)
    test = Split(x=rng.integers(0, 256, (40, 3, 12, 12), dtype=np.uint8), y=rng.integers(0, 10, 40),
                 mean=np.array([0.5, 0.4, 0.3], np.float32), std=np.array([0.25, 0.25, 0.25], np.float32))
    point = ExportPoint(source=source, model=model, books=books, corrections={}, arch={}, metadata={"cr": 1.0},
                        test=test, expected=None, validated_accuracy=0.0, predict=None, batch_size=16)
    with torch.inference_mode():
        logits = np.concatenate([model(torch.from_numpy(b)).numpy() for b in point.normalized_batches()])
    point.expected = logits.argmax(1)
    point.validated_accuracy = float((point.expected == test.y).mean())
    return point, logits


def test_onnx_runs_in_onnxruntime_and_predicts_what_the_validated_model_predicts(tmp_path):
    import onnxruntime as ort
    from onnx import TensorProto

    from weight_sharing.formats.onnx import LOGIT_TOLERANCE, export

    point, logits = make_point()
    out = tmp_path / "m.onnx"
    row = export(point, str(out), {"opset": 21})
    assert row["predictions_differing"] == 0 and row["max_logit_difference"] <= LOGIT_TOLERANCE
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = np.concatenate([session.run(None, {"x": b})[0] for b in point.normalized_batches()])
    assert np.array_equal(got.argmax(1), point.expected)
    assert np.abs(got - logits).max() <= LOGIT_TOLERANCE * max(1.0, np.abs(logits).max())
    # every shared weight is stored as indices of the smallest type plus a codebook, never as floats
    inits = {i.name: i for i in onnx.load(str(out)).graph.initializer}
    for layer in point.books:
        assert f"{layer}.weight" not in inits
    assert inits["stem.weight.indices"].data_type == TensorProto.UINT4   # K = 4
    assert inits["pw.weight.indices"].data_type == TensorProto.UINT8     # K = 32
    assert list(inits["fc.weight.codebook"].dims) == [10, 4]             # one codebook row per channel
    assert row["index_bits"] == 4 * (216 + 72) + 8 * 128 + 4 * 160


def test_onnx_export_refuses_a_file_that_does_not_reproduce_the_model(tmp_path, monkeypatch):
    from weight_sharing.formats import onnx as onnx_format

    point, _ = make_point()
    point.expected = (point.expected + 1) % 10  # a validated model that predicts otherwise
    out = tmp_path / "m.onnx"
    with pytest.raises(RuntimeError, match="onnxruntime predicts 40 test images differently"):
        onnx_format.export(point, str(out), {})
    assert not out.exists()


@pytest.mark.parametrize("lut_dtype", ["float16", "float32"])
def test_coreml_package_reads_back_and_every_lut_decodes_to_the_shared_weights(tmp_path, lut_dtype):
    from weight_sharing.formats.coreml import decode_lut, export, read_luts

    point, _ = make_point()
    out = tmp_path / "m.mlpackage"
    row = export(point, str(out), {"lut_dtype": lut_dtype})
    luts, meta = read_luts(str(out))
    assert set(luts) == set(point.books)
    dtype = np.float16 if lut_dtype == "float16" else np.float32
    modules = dict(point.model.named_modules())
    for layer, (lut, indices) in luts.items():
        want = modules[layer].weight.detach().numpy().astype(dtype)
        assert np.array_equal(decode_lut(lut, indices).astype(dtype), want), layer
    assert luts["fc"][0].shape[0] == 10 and luts["stem"][0].size == 4  # per channel / per tensor LUTs
    assert luts["pw"][0].size == 64  # K = 32: Core ML has no 5-bit LUT, the layer is stored at 6 bits
    assert row["widened_layers"] == ["pw"]
    assert meta["weight_sharing.cr"] == "1.0"
    if lut_dtype == "float32":
        assert row["predictions_differing"] == 0
    entry = 16 if lut_dtype == "float16" else 32
    assert row["index_bits"] == 2 * 216 + 1 * 72 + 6 * 128 + 2 * 160
    assert row["codebook_bits"] == entry * (4 + 8 * 2 + 64 + 10 * 4)


def test_coreml_converts_timm_same_padding_at_the_packages_input_shape(tmp_path):
    """coremltools cannot convert a padding computed from a traced shape (the export of a real
    tf_efficientnet_lite1 failed so): the package pads by the constant that shape gives, and predicts what
    the validated model predicts."""
    from weight_sharing.formats.coreml import export, read_luts

    point, _ = make_point(net=SamePaddedNet)
    out = tmp_path / "same.mlpackage"
    row = export(point, str(out), {"lut_dtype": "float32"})
    assert row["predictions_differing"] == 0
    assert set(read_luts(str(out))[0]) == set(point.books)


def test_coreml_float16_luts_take_a_weight_too_small_for_float16(tmp_path):
    """A real EfficientNet-Lite1 codebook held a value of 7.5e-9: coremltools stores it as float16's
    smallest step, numpy's float16 rounding makes it 0; the layer is still found and verified."""
    from weight_sharing.formats.coreml import FLOAT16_TINY, export, read_luts

    point, _ = make_point(tiny=True)
    assert (point.model.stem.weight == np.float32(7.45e-9)).any()
    out = tmp_path / "tiny.mlpackage"
    row = export(point, str(out), {"lut_dtype": "float16"})
    lut = read_luts(str(out))[0]["stem"][0]
    assert np.float16(FLOAT16_TINY) in lut.ravel()  # coremltools' rounding, which the check allows
    assert set(read_luts(str(out))[0]) == set(point.books) and row["test_accuracy"] is not None


def test_coreml_keeps_a_layer_no_lut_holds_dense(tmp_path, monkeypatch):
    """A codebook larger than Core ML's largest LUT (256 entries; here, by a narrowed rule, above 64) is
    stored as dense weights, listed as such, and counted at the LUT's float width."""
    import weight_sharing.formats.coreml as coreml

    assert coreml.coreml_bits(257) is None and coreml.coreml_bits(32) == 6 and coreml.coreml_bits(2) == 1
    narrowed = coreml.coreml_bits
    monkeypatch.setattr(coreml, "coreml_bits", lambda k: None if k > 64 else narrowed(k))
    point, _ = make_point(k_pw=128)
    out = tmp_path / "m.mlpackage"
    row = coreml.export(point, str(out), {"lut_dtype": "float32"})
    assert "pw" not in coreml.read_luts(str(out))[0]
    assert row["widened_layers"] == ["pw (dense: more than 256 values)"] and row["predictions_differing"] == 0
    assert row["index_bits"] == 2 * 216 + 1 * 72 + 32 * 128 + 2 * 160


def test_the_formats_registry_puts_the_packed_reference_first():
    assert [f.name for f in export_formats(["coreml", "onnx"])] == ["packed", "coreml", "onnx"]
    with pytest.raises(ValueError, match="export.formats: \\['tflite'\\]; allowed: packed, onnx, coreml"):
        export_formats(["tflite"])
