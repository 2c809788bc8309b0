"""The packed reference format (``weight_sharing.packed``) as an export format: write, reload, verify."""
from __future__ import annotations

import numpy as np

from ..packed import export_compressed, load_compressed
from . import ExportPoint, remove_output


def export(point: ExportPoint, out: str, options: dict) -> dict:
    """Write the packed file and check that the file alone predicts what the validated model predicts on
    every test image (the file is removed and the stage fails otherwise)."""
    sizes = export_compressed(point.source, point.books, point.arch, out, extra_metadata=point.metadata,
                              overrides=point.corrections)
    reloaded, _ = load_compressed(out)
    got = point.predict(reloaded)
    acc = float((got == np.asarray(point.test.y)).mean())
    if not np.array_equal(got, point.expected) or abs(acc - point.validated_accuracy) > 1e-12:
        remove_output(out)
        raise RuntimeError(f"export {out}: the reloaded model differs from the validated one "
                           f"({int((got != point.expected).sum())} predictions differ; accuracy {acc:.4f} vs "
                           f"validated {point.validated_accuracy:.4f})")
    float_bytes = 4 * sum(dict(point.source.named_modules())[n].weight.numel() for n in point.books)
    packed = sizes["index_bytes"] + sizes["codebook_bytes"]
    huffman = sizes["huffman_index_bytes"] + sizes["codebook_bytes"]
    return {"file_bytes": sizes["file_bytes"], "index_bits": 8 * sizes["index_bytes"],
            "codebook_bits": 8 * sizes["codebook_bytes"], "index_bytes": sizes["index_bytes"],
            "codebook_bytes": sizes["codebook_bytes"], "packed_shared_bytes": packed,
            "cr_on_disk": float_bytes / packed, "huffman_shared_bytes": huffman, "cr_huffman": float_bytes / huffman,
            "test_accuracy": acc, "predictions_differing": 0, "max_logit_difference": None,
            "widened_layers": [], "verified": "reloaded by weight_sharing.packed; predictions identical on every "
                                              f"test image ({len(got)})"}
