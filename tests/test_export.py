import json
import math

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

from weight_sharing.data import Split
from weight_sharing.evaluate import Evaluator
from weight_sharing.kmeans import kmeans_grid
from weight_sharing.models import LeNet5, create_model, shared_layers
from weight_sharing.packed import (
    ExportFormatError,
    export_compressed,
    huffman_bits,
    load_compressed,
    main,
    pack_bits,
    read_metadata,
    unpack_bits,
)


@pytest.mark.parametrize("width", range(1, 11))
def test_pack_roundtrip_every_width(width):
    rng = np.random.default_rng(width)
    k = (1 << width) - (width % 3)  # also K not a power of two
    k = max(k, 2)
    for n in (1, 7, 8, 1001):
        v = rng.integers(0, k, n)
        packed = pack_bits(v, width)
        assert packed.dtype == np.uint8 and len(packed) == math.ceil(n * width / 8)
        assert np.array_equal(unpack_bits(packed, width, n), v)


def test_pack_rejects_out_of_range():
    with pytest.raises(ValueError, match="0..3"):
        pack_bits(np.array([4]), 2)
    assert len(pack_bits(np.zeros(5, int), 0)) == 0
    with pytest.raises(ExportFormatError, match="expected"):
        unpack_bits(np.zeros(3, np.uint8), 4, 10)


def test_huffman_bits():
    assert huffman_bits([5, 5]) == 10          # two symbols: one bit each
    assert huffman_bits([8, 4, 2, 2]) == 8 + 8 + 6 + 6  # lengths 1, 2, 3, 3
    assert huffman_bits([7]) == 0              # one symbol: the layer's shape says it all, as packed at K = 1
    assert huffman_bits([0, 7, 0]) == 0
    assert huffman_bits([1, 1, 1, 1]) == 8


def compress(model, ks):
    books = {}
    for (name, m), k in zip(shared_layers(model), ks):
        books[name] = kmeans_grid(m.weight.detach().numpy().ravel(), [k])[k]
    return books


def random_split(shape, n=50, classes=10, seed=0):
    rng = np.random.default_rng(seed)
    return Split(x=rng.integers(0, 256, (n, *shape), dtype=np.uint8), y=rng.integers(0, classes, n),
                 mean=np.full(shape[0], 0.5, np.float32), std=np.full(shape[0], 0.25, np.float32))


def roundtrip(model, arch, ks, split, tmp_path):
    books = compress(model, ks)
    path = tmp_path / "m.safetensors"
    sizes = export_compressed(model, books, arch, path, extra_metadata={"cr": 1.0})
    ev = Evaluator(model, split, device="cpu")
    ev.apply(books)
    expected = ev.predictions()
    loaded, meta = load_compressed(path)
    got = Evaluator(loaded, split, device="cpu").predictions()
    assert torch.equal(expected, got)
    # the weights themselves are the shared values, bit for bit
    for (_, m), (_, m2) in zip(shared_layers(ev.model), shared_layers(loaded)):
        assert torch.equal(m.weight, m2.weight)
    return path, sizes, meta


def test_roundtrip_lenet(tmp_path):
    torch.manual_seed(0)
    model = LeNet5().eval()
    ks = [5, 16, 2, 3, 7]
    path, sizes, meta = roundtrip(model, {"source": "builtin", "arch": "lenet5"}, ks, random_split((1, 28, 28)),
                                  tmp_path)
    weights = [150, 2400, 48000, 10080, 840]
    bits = [3, 4, 1, 2, 3]
    assert sizes["index_bytes"] == sum(math.ceil(w * b / 8) for w, b in zip(weights, bits))
    assert [l["k"] for l in meta["shared_layers"]] == ks
    assert sizes["file_bytes"] * 8 < sum(weights) * 4


def test_roundtrip_timm(tmp_path):
    arch = {"source": "timm", "arch": "resnet10t", "kwargs": {"num_classes": 5}}
    torch.manual_seed(0)
    model = create_model(arch).eval()
    n = len(shared_layers(model))
    ks = [3 + (i % 6) * 5 for i in range(n)]
    roundtrip(model, arch, ks, random_split((3, 32, 32), n=8, classes=5), tmp_path)


@pytest.fixture
def exported(tmp_path):
    torch.manual_seed(0)
    model = LeNet5().eval()
    path = tmp_path / "m.safetensors"
    export_compressed(model, compress(model, [4, 4, 2, 4, 4]), {"source": "builtin", "arch": "lenet5"}, path)
    return path


def test_truncated_file(exported):
    data = exported.read_bytes()
    for cut in (4, 100, len(data) - 10):
        exported.write_bytes(data[:cut])
        with pytest.raises(ExportFormatError, match="truncated|corrupted"):
            load_compressed(exported)


def test_corrupted_payload(exported):
    data = bytearray(exported.read_bytes())
    data[-5] ^= 0xFF
    exported.write_bytes(bytes(data))
    with pytest.raises(ExportFormatError, match="checksum"):
        load_compressed(exported)


def rewrite(path, meta_update=None, tensor_update=None):
    meta = read_metadata(path)
    tensors = load_file(str(path))
    meta.update(meta_update or {})
    tensors.update(tensor_update or {})
    from weight_sharing.packed import _payload_hash
    meta["payload_sha256"] = _payload_hash(tensors, meta)
    save_file(tensors, str(path), metadata=meta)


def test_pack_in_chunks_equals_one_piece():
    """Packing is chunked (bounded memory); the stream equals packing every value at once."""
    from weight_sharing.packed import PACK_CHUNK
    rng = np.random.default_rng(5)
    for width in (1, 3, 10):
        v = rng.integers(0, 1 << width, 3 * PACK_CHUNK + 13)
        whole = np.packbits(((v[:, None] >> np.arange(width)) & 1).astype(np.uint8).ravel(), bitorder="little")
        assert np.array_equal(pack_bits(v, width), whole)
        assert np.array_equal(unpack_bits(whole, width, len(v)), v)


def test_edited_metadata_is_detected(exported):
    """The checksum covers the metadata: a changed K list or architecture in the header is refused."""
    meta = read_metadata(exported)
    tensors = load_file(str(exported))
    layers = json.loads(meta["shared_layers"])
    layers[0]["k"] = 8
    save_file(tensors, str(exported), metadata={**meta, "shared_layers": json.dumps(layers)})
    with pytest.raises(ExportFormatError, match="checksum"):
        load_compressed(exported)
    arch = json.loads(meta["architecture"])
    arch["kwargs"] = {"num_classes": 10, "dropout": 0.5}
    save_file(tensors, str(exported), metadata={**meta, "architecture": json.dumps(arch)})
    with pytest.raises(ExportFormatError, match="checksum"):
        load_compressed(exported)


def test_format_version_must_be_positive(exported):
    rewrite(exported, {"format_version": "0"})
    with pytest.raises(ExportFormatError, match="bad format_version 0"):
        load_compressed(exported)


def test_newer_format_version(exported):
    rewrite(exported, {"format_version": "4"})
    with pytest.raises(ExportFormatError, match="format version 4, newer"):
        load_compressed(exported)


def test_version_2_files_still_read(exported):
    """Format 2 (before grouped codebooks and added biases): no ``group`` field, one codebook per layer."""
    model, _ = load_compressed(exported)
    meta = read_metadata(exported)
    layers = json.loads(meta["shared_layers"])
    for layer in layers:
        del layer["group"]
    rewrite(exported, {"format_version": "2", "shared_layers": json.dumps(layers)})
    old, decoded = load_compressed(exported)
    assert decoded["format_version"] == "2"
    for (_, a), (_, b) in zip(shared_layers(model), shared_layers(old)):
        assert torch.equal(a.weight, b.weight)


def test_other_architecture(exported):
    rewrite(exported, {"architecture": json.dumps({"source": "timm", "arch": "resnet10t", "kwargs": {}})})
    with pytest.raises(ExportFormatError, match="does not fit the architecture 'resnet10t'"):
        load_compressed(exported)
    with pytest.raises(ExportFormatError, match="expected 'lenet5'"):
        load_compressed(exported, expected_arch="lenet5")


def test_not_an_export(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file({"a": np.zeros(3, np.float32)}, str(path))
    with pytest.raises(ExportFormatError, match="not a weight-sharing export"):
        load_compressed(path)


def test_cli(exported, tmp_path, capsys):
    rng = np.random.default_rng(0)
    npz = tmp_path / "d.npz"
    np.savez(npz, x_calib=rng.integers(0, 256, (4, 1, 28, 28), dtype=np.uint8), y_calib=np.arange(4),
             x_test=rng.integers(0, 256, (6, 1, 28, 28), dtype=np.uint8), y_test=np.arange(6),
             mean=np.array(0.1), std=np.array(0.3))
    assert main([str(exported), "--npz", str(npz), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "builtin/lenet5" in out and "K = [4, 4, 2, 4, 4]" in out and "top-1 on test" in out
    exported.write_bytes(exported.read_bytes()[:50])
    assert main([str(exported)]) == 2
