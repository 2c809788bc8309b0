"""The packed export format: codebooks plus bit-packed indices in a safetensors file, its loader and CLI.

The export stage writes it (``export.run``); anyone reloads it with :func:`load_compressed` or the
``weight-sharing-load`` command.

Layout of a ``.safetensors`` export (format version 3):
- for each shared layer ``L``: ``L.weight.codebook`` (float32, the shared values: one row per
  group of ``group`` output channels for a grouped codebook) and ``L.weight.indices`` (uint8,
  the layer's indices, each into its channel group's codebook, packed at ceil(log2 K) bits
  each, least significant bit first, in the weight's row-major order);
- every other tensor of the state_dict (biases, normalisation, buffers) as it is, with the
  corrected bias of each shared layer when the bias is corrected (``L.bias``; a layer built
  without a bias is listed with ``bias_added`` and gets one on loading);
- metadata (strings): format name and version, the architecture (source, name and
  the constructor kwargs that rebuild the evaluated module tree exactly, see
  ``models.architecture``), each shared layer's shape, K and bit width, the source
  checkpoint's SHA-256, accuracy, CR, and a SHA-256 over all tensor bytes and every
  other metadata field that the loader checks, so a corrupted or edited file is
  refused instead of giving a silently wrong model. Version 1 files (whose hash
  covered the tensors only) and version 2 files (no groups, no added biases) are still read.
"""
from __future__ import annotations

import argparse
import hashlib
import heapq
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from .codebook import Codebook
from .compression import index_bits
from .io import atomic_path
from .models import create_model, shared_layers
from .sharing import assign_weight, codebook_values, row_groups

FORMAT_NAME = "weight-sharing-packed"
FORMAT_VERSION = 3
PACK_CHUNK = 1 << 16  # values packed per step: bounds the temporary bit array
CODEBOOK, INDICES = ".weight.codebook", ".weight.indices"


class ExportFormatError(ValueError):
    """The file is not a valid export of this format (truncated, corrupted, foreign or too new)."""


def pack_bits(values: np.ndarray, width: int) -> np.ndarray:
    """Pack non-negative integers < 2**width into a uint8 stream, ``width`` bits each, LSB first."""
    v = np.asarray(values, dtype=np.int64).ravel()
    if width == 0:
        if v.size and v.max() > 0:
            raise ValueError("width 0 can only hold zeros")
        return np.zeros(0, dtype=np.uint8)
    if not 1 <= width <= 32:
        raise ValueError(f"bit width must be in 0..32, got {width}")
    if v.size and (v.min() < 0 or v.max() >= (1 << width)):
        raise ValueError(f"values must lie in 0..{(1 << width) - 1} for width {width}")
    # chunks of a multiple of 8 values end on a byte boundary, so their packed bytes concatenate
    shifts = np.arange(width, dtype=np.int64)
    out = [np.packbits(((v[i:i + PACK_CHUNK, None] >> shifts) & 1).astype(np.uint8).ravel(), bitorder="little")
           for i in range(0, v.size, PACK_CHUNK)]
    return np.concatenate(out) if out else np.zeros(0, dtype=np.uint8)


def unpack_bits(packed: np.ndarray, width: int, count: int) -> np.ndarray:
    """Inverse of ``pack_bits``: ``count`` integers of ``width`` bits."""
    if width == 0:
        return np.zeros(count, dtype=np.int64)
    needed = math.ceil(count * width / 8)
    if len(packed) != needed:
        raise ExportFormatError(f"packed indices hold {len(packed)} bytes, expected {needed} "
                                f"for {count} values of {width} bits")
    packed = np.asarray(packed, dtype=np.uint8)
    shifts = np.arange(width, dtype=np.int64)
    out = np.empty(count, dtype=np.int64)
    for i in range(0, count, PACK_CHUNK):  # PACK_CHUNK values span a whole number of bytes
        n = min(PACK_CHUNK, count - i)
        chunk = packed[i * width // 8: math.ceil((i + n) * width / 8)]
        bits = np.unpackbits(chunk, count=n * width, bitorder="little")
        out[i:i + n] = (bits.reshape(n, width).astype(np.int64) << shifts).sum(axis=1)
    return out


def huffman_bits(counts: np.ndarray) -> int:
    """Total bits of the symbols coded with an optimal prefix (Huffman) code of these frequencies."""
    c = [int(x) for x in np.asarray(counts).ravel() if x > 0]
    if len(c) <= 1:
        return 0  # one symbol: the count (the layer's shape) says everything, as in the packed format at K = 1
    heap = list(c)
    heapq.heapify(heap)
    total = 0
    while len(heap) > 1:
        a, b = heapq.heappop(heap), heapq.heappop(heap)
        total += a + b  # each merge adds one bit to every symbol below it
        heapq.heappush(heap, a + b)
    return total


def _payload_hash(tensors: dict[str, np.ndarray], metadata: dict | None = None) -> str:
    """SHA-256 over every tensor (name, dtype, shape, bytes) and, from version 2, every metadata field."""
    h = hashlib.sha256()
    if metadata is not None:
        fields = {k: v for k, v in metadata.items() if k != "payload_sha256"}
        h.update(json.dumps(fields, sort_keys=True).encode())
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name])
        h.update(name.encode())
        h.update(str(arr.dtype).encode())
        h.update(str(arr.shape).encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def export_compressed(model: torch.nn.Module, codebooks: dict[str, Codebook], architecture: dict,
                      path: str | Path, extra_metadata: dict | None = None,
                      overrides: dict[str, np.ndarray] | None = None) -> dict:
    """Write ``model`` with ``codebooks`` applied as a packed safetensors file; return size figures.

    ``architecture``: {"source", "arch", "kwargs"} from ``models.architecture``, enough to rebuild the
    module tree; ``codebooks``: one per shared layer (the others are stored as they are);
    ``overrides``: state_dict tensors stored instead of the model's (the corrected biases of shared
    layers, ``NAME.bias``, also for a layer built without one; re-estimated BatchNorm statistics).
    """
    layers = dict(shared_layers(model, list(codebooks)))
    overrides = overrides or {}
    tensors: dict[str, np.ndarray] = {}
    shared_meta = []
    index_bytes = codebook_bytes = huffman_total = 0
    for name, module in layers.items():
        cb = codebooks[name]
        w = module.weight.detach().cpu().float().numpy()
        idx = assign_weight(w, cb)
        width = index_bits(cb.k)
        packed = pack_bits(idx, width)
        tensors[name + CODEBOOK] = np.asarray(cb.centroids, dtype=np.float32)
        tensors[name + INDICES] = packed
        index_bytes += packed.nbytes
        codebook_bytes += np.asarray(cb.centroids, dtype=np.float32).nbytes
        per_channel, rows = idx.reshape(idx.shape[0], -1), row_groups(idx.shape[0], cb)
        huffman_total += sum(math.ceil(huffman_bits(np.bincount(per_channel[rows == g].ravel(), minlength=cb.size))
                                       / 8) for g in range(cb.groups))
        entry = {"name": name, "shape": list(w.shape), "k": int(cb.k), "bits": width,
                 "codebook_size": int(cb.size), "group": int(cb.group)}
        if name + ".bias" in overrides and module.bias is None:
            entry["bias_added"] = True
        shared_meta.append(entry)
    shared_keys = {n + ".weight" for n in layers}
    state = model.state_dict()
    unknown = sorted(k for k in overrides if k not in state and not (k.endswith(".bias") and k[:-5] in layers))
    if unknown:
        raise ValueError(f"export: overrides {unknown[:5]} are not tensors of the model")
    for key, value in {**{k: v.detach().cpu().numpy() for k, v in state.items()}, **overrides}.items():
        if key not in shared_keys:
            tensors[key] = np.asarray(value)
    metadata = {
        "format": FORMAT_NAME, "format_version": str(FORMAT_VERSION),
        "architecture": json.dumps({"source": architecture["source"], "arch": architecture["arch"],
                                    "kwargs": architecture.get("kwargs") or {}}),
        "shared_layers": json.dumps(shared_meta),
    }
    for k, v in (extra_metadata or {}).items():
        metadata[k] = v if isinstance(v, str) else json.dumps(v)
    metadata["payload_sha256"] = _payload_hash(tensors, metadata)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return {"file_bytes": Path(path).stat().st_size, "index_bytes": index_bytes,
            "codebook_bytes": codebook_bytes, "huffman_index_bytes": huffman_total}


def read_metadata(path: str | Path) -> dict:
    """The export's metadata (checks the format name and version, not the payload)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} does not exist")
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise ExportFormatError(f"{str(path)!r} is truncated (no safetensors header)")
            n = int.from_bytes(head, "little")
            if n <= 0 or n > path.stat().st_size - 8:
                raise ExportFormatError(f"{str(path)!r} is truncated or not a safetensors file "
                                        f"(header of {n} bytes in a {path.stat().st_size}-byte file)")
            header = json.loads(f.read(n))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ExportFormatError(f"{str(path)!r}: corrupted safetensors header ({exc})") from exc
    meta = header.get("__metadata__") or {}
    if meta.get("format") != FORMAT_NAME:
        raise ExportFormatError(f"{str(path)!r} is not a weight-sharing export (format {meta.get('format')!r}, "
                                f"expected {FORMAT_NAME!r})")
    try:
        version = int(meta.get("format_version", ""))
    except ValueError as exc:
        raise ExportFormatError(f"{str(path)!r}: bad format_version {meta.get('format_version')!r}") from exc
    if version < 1:
        raise ExportFormatError(f"{str(path)!r}: bad format_version {version}; versions start at 1")
    if version > FORMAT_VERSION:
        raise ExportFormatError(f"{str(path)!r} has format version {version}, newer than this library "
                                f"reads (up to {FORMAT_VERSION}); upgrade weight-sharing")
    return meta


def load_compressed(path: str | Path, expected_arch: str | None = None) -> tuple[torch.nn.Module, dict]:
    """Rebuild the compressed model from the file alone (plus timm/torchvision/built-in code).

    Returns the model in eval mode and the metadata (JSON fields decoded).
    Raises ExportFormatError for a truncated, corrupted, foreign or too-new file,
    or one whose tensors do not fit its architecture.
    """
    meta = read_metadata(path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ExportFormatError(f"{str(path)!r}: cannot read tensors ({exc}); the file is truncated or "
                                "corrupted") from exc
    covered = meta if int(meta["format_version"]) >= 2 else None
    if _payload_hash(tensors, covered) != meta.get("payload_sha256"):
        raise ExportFormatError(f"{str(path)!r}: tensor data or metadata does not match its checksum; the file is "
                                "corrupted or was edited")
    arch = json.loads(meta["architecture"])
    if expected_arch is not None and arch["arch"] != expected_arch:
        raise ExportFormatError(f"{str(path)!r} holds a {arch['arch']!r} model, expected {expected_arch!r}")
    model = create_model({"source": arch["source"], "arch": arch["arch"], "kwargs": arch["kwargs"],
                          "pretrained": False})
    state = {}
    shared = json.loads(meta["shared_layers"])
    for layer in shared:
        if layer.get("bias_added"):  # bias correction gave this layer a bias its architecture lacks
            try:
                module = model.get_submodule(layer["name"])
            except AttributeError as exc:
                raise ExportFormatError(f"{str(path)!r}: shared layer {layer['name']!r} is not in the architecture "
                                        f"{arch['arch']!r}") from exc
            module.bias = torch.nn.Parameter(torch.zeros(module.weight.shape[0]), requires_grad=False)
    own = model.state_dict()
    for layer in shared:
        key = layer["name"] + ".weight"
        if key not in own or list(own[key].shape) != layer["shape"]:
            raise ExportFormatError(f"{str(path)!r}: shared layer {layer['name']!r} {layer['shape']} does not "
                                    f"fit the architecture {arch['arch']!r}")
        count = int(np.prod(layer["shape"]))
        codebook = tensors.pop(layer["name"] + CODEBOOK)
        idx = unpack_bits(tensors.pop(layer["name"] + INDICES), layer["bits"], count)
        group = int(layer.get("group", 0))  # > 0: one codebook row per group of ``group`` output channels
        if idx.size and idx.max() >= codebook.shape[-1]:
            raise ExportFormatError(f"{str(path)!r}: layer {layer['name']!r} has an index beyond its codebook")
        book = Codebook(k=int(layer["k"]), thresholds=np.zeros(0), centroids=codebook, inertia=0.0, group=group)
        try:
            if codebook.ndim != (2 if group else 1):
                raise ValueError(f"a codebook of {codebook.ndim} dimensions")
            values = codebook_values(idx.reshape(layer["shape"]), book)
        except ValueError as exc:
            raise ExportFormatError(f"{str(path)!r}: layer {layer['name']!r}: codebook of shape {codebook.shape} "
                                    f"does not fit {layer['shape'][0]} channels in groups of {group}: {exc}") from exc
        state[key] = torch.from_numpy(values)
    state.update({k: torch.from_numpy(np.array(v)) for k, v in tensors.items()})
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ExportFormatError(f"{str(path)!r} does not fit the architecture {arch['arch']!r}: "
                                f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ExportFormatError(f"{str(path)!r} does not fit the architecture {arch['arch']!r}: {exc}") from exc
    decoded = dict(meta)
    for k in ("architecture", "shared_layers"):
        decoded[k] = json.loads(meta[k])
    return model.eval(), decoded


def main(argv=None) -> int:
    """CLI: print an export's metadata and, with --npz, its top-1 accuracy on a split."""
    parser = argparse.ArgumentParser(prog="weight-sharing-load", description=main.__doc__)
    parser.add_argument("file", help="a .safetensors export")
    parser.add_argument("--npz", help="evaluation .npz (x_calib/y_calib/x_test/y_test, mean, std)")
    parser.add_argument("--split", default="test", choices=["calib", "test"])
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    try:
        model, meta = load_compressed(args.file)
    except (ExportFormatError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    layers = meta["shared_layers"]
    print(f"{args.file}: {meta['architecture']['source']}/{meta['architecture']['arch']}, "
          f"{len(layers)} shared layers, K = {[l['k'] for l in layers]}")
    for key in ("cr", "test_accuracy", "source_checkpoint_sha256"):
        if key in meta:
            print(f"  {key}: {meta[key]}")
    if args.npz:
        from .data import load_split
        from .evaluate import Evaluator

        acc = Evaluator(model, load_split(args.npz, args.split), device=args.device).accuracy()
        print(f"  top-1 on {args.split}: {acc:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
