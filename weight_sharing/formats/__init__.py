"""Export formats: the packed reference format and the device formats (ONNX Runtime, Core ML).

:data:`EXPORT_FORMATS` maps a name of ``export.formats`` to what the config check, the Snakefile
and the export stage need of it: the file suffix (Core ML's ``.mlpackage`` is a directory), the
libraries it needs, the index widths its runtime runs natively, and the module whose
``export(point, out, options)`` writes one chosen point, verifies what was written and returns its
row of the export table. Light to import: a format's module (onnx, coremltools) loads only when a
file of that format is written.
"""
from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass


@dataclass(frozen=True)
class ExportFormat:
    name: str
    suffix: str
    module: str
    libraries: tuple[str, ...] = ()
    index_bits: tuple[int, ...] | None = None  # index widths the runtime runs natively; None: any
    directory: bool = False  # the file is a folder (a Core ML package)
    equal_groups: bool = False  # grouped codebooks only where the groups split the channels evenly

    def exporter(self):
        return importlib.import_module(self.module).export

    def missing_libraries(self) -> list[str]:
        return [lib for lib in self.libraries if importlib.util.find_spec(lib) is None]


COREML_INDEX_BITS = (1, 2, 3, 4, 6, 8)  # constexpr_lut_to_dense: LUTs of 2, 4, 8, 16, 64 or 256 entries

EXPORT_FORMATS = {
    "packed": ExportFormat("packed", ".safetensors", "weight_sharing.formats.packed"),
    "onnx": ExportFormat("onnx", ".onnx", "weight_sharing.formats.onnx", ("onnx", "onnxruntime", "onnxscript")),
    "coreml": ExportFormat("coreml", ".mlpackage", "weight_sharing.formats.coreml", ("coremltools",),
                           COREML_INDEX_BITS, directory=True, equal_groups=True),
}
REFERENCE_FORMAT = "packed"  # always written first: the file the library itself reloads exactly


def export_formats(formats) -> list[ExportFormat]:
    """The formats an export writes: the packed reference first, then ``export.formats`` in order."""
    names = [REFERENCE_FORMAT] + [f for f in formats if f != REFERENCE_FORMAT]
    bad = [f for f in names if f not in EXPORT_FORMATS]
    if bad:
        raise ValueError(f"export.formats: {bad}; allowed: {', '.join(EXPORT_FORMATS)}")
    return [EXPORT_FORMATS[f] for f in names]


def allowed_index_bits(formats) -> set[int] | None:
    """The index widths every one of ``formats`` runs natively (None: no restriction)."""
    allowed = None
    for f in export_formats(formats):
        if f.index_bits is not None:
            allowed = set(f.index_bits) if allowed is None else allowed & set(f.index_bits)
    return allowed


def stored_index_bits(k: int, allowed) -> int | None:
    """The index width a runtime running the widths ``allowed`` stores a K-entry codebook at: the smallest
    that holds it (None: none does, the layer is stored dense)."""
    from ..compression import index_bits

    need = max(index_bits(int(k)), 1)
    return min((b for b in allowed if b >= need), default=None)


def output_name(target: float, fmt: ExportFormat) -> str:
    """The file of one export target in one format, under ``export/``."""
    return f"loss_{target}x{fmt.suffix}"


@dataclass
class ExportPoint:
    """One chosen point as every format writes it: the original model (whose weights the indices are
    computed from), the model validation measured (codebooks and corrections applied), the codebooks,
    the corrections' tensors, the architecture record and metadata, the test images, and the validated
    model's predictions on every one of them."""

    source: object
    model: object
    books: dict
    corrections: dict
    arch: dict
    metadata: dict
    test: object
    expected: object
    validated_accuracy: float
    predict: object  # a built model -> its top-1 on every test image (the configured engine)
    batch_size: int = 256

    def normalized_batches(self):
        """The test images as float32 NCHW batches, normalised exactly as the evaluator does."""
        import numpy as np

        x, n = self.test.x, len(self.test)
        shape = (1, -1) + (1,) * (np.ndim(x) - 2)
        mean = (np.asarray(self.test.mean, np.float32) * np.float32(255.0)).reshape(shape)
        std = (np.asarray(self.test.std, np.float32) * np.float32(255.0)).reshape(shape)
        for i in range(0, n, self.batch_size):
            yield (np.asarray(x[i:i + self.batch_size], dtype=np.float32) - mean) / std


def remove_output(path) -> None:
    """Delete a written output that failed its verification (a file, or a Core ML package folder)."""
    import shutil
    from pathlib import Path

    p = Path(path)
    if p.is_dir():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)
