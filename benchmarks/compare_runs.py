"""Compare two results folders table by table and column by column (timing columns aside).

    python benchmarks/compare_runs.py RESULTS_A RESULTS_B

Every Parquet table, JSON file and summary CSV present in either folder is compared: the same
files, the same columns, the same values (floats exactly, NaN equal to NaN). Columns and keys that
record time (``seconds``, ``time_*_s``, ``*_seconds``) are left out, and so are Snakemake's own
folders (logs, benchmarks) and the plots. Prints one line per difference and exits 1 if any.
``--allow-new-columns``: columns only B has (a change that adds what a table records) are listed,
not counted as differences; every column A has must still be equal.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

import pyarrow.parquet as pq

SKIP_DIRS = {"logs", "benchmarks", ".snakemake"}


def is_timing(key: str) -> bool:
    return key == "seconds" or key.endswith("_seconds") or (key.startswith("time_") and key.endswith("_s"))


def same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a if not is_timing(k))
    return a == b


def files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")
            if p.is_file() and p.suffix in (".parquet", ".json", ".csv")
            and not SKIP_DIRS & set(p.relative_to(root).parts)}


def columns(path: Path) -> dict[str, list]:
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pydict()
    if path.suffix == ".csv":
        rows = list(csv.DictReader(path.open()))
        return {k: [r[k] for r in rows] for k in (rows[0] if rows else {})}
    obj = json.loads(path.read_text())
    return obj if isinstance(obj, dict) else {"": obj}


def compare(a: Path, b: Path, allow_new_columns: bool = False) -> list[str]:
    out = []
    fa, fb = files(a), files(b)
    out += [f"only in {a}: {f}" for f in sorted(fa - fb)] + [f"only in {b}: {f}" for f in sorted(fb - fa)]
    for f in sorted(fa & fb):
        ca, cb = columns(a / f), columns(b / f)
        added = [k for k in cb if k not in ca]
        if allow_new_columns and added and [k for k in cb if k in ca] == list(ca):
            print(f"{f}: new columns {added}")
        elif list(ca) != list(cb):
            out.append(f"{f}: columns differ: {list(ca)} vs {list(cb)}")
        for key in ca:
            if key in cb and not is_timing(key) and not same(ca[key], cb[key]):
                out.append(f"{f}: column {key!r} differs")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--allow-new-columns", action="store_true")
    args = ap.parse_args()
    diffs = compare(args.a, args.b, args.allow_new_columns)
    print("\n".join(diffs) if diffs else f"identical: {len(files(args.a))} tables, every column but timings")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
