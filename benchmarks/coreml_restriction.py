"""What shipping to Core ML costs: the default choice against the choice restricted to Core ML's widths.

    python benchmarks/coreml_restriction.py RESULTS_DEFAULT RESULTS_RESTRICTED

RESULTS_RESTRICTED: the same config with ``candidates: {formats: [coreml]}`` (a copy of the default
results folder, rerun: only candidates and what follows rerun). Per network, from each folder's
``export.parquet`` (first target): the CR chosen on calibration, its test loss, the index widths of
the chosen layers, and for the default choice the CR at the widths Core ML runs (its 5- and 7-bit
layers widened, more than 8 bits dense) as its Core ML export stores it.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pyarrow.parquet as pq

from weight_sharing.compression import index_bits
from weight_sharing.formats import COREML_INDEX_BITS


def first_target(results: Path, net: str, fmt: str) -> dict:
    rows = pq.read_table(results / net / "export.parquet").to_pylist()
    return next(r for r in rows if r["format"] == fmt and r["target"] == rows[0]["target"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("default", type=Path)
    ap.add_argument("restricted", type=Path)
    args = ap.parse_args()
    print("| network | default: CR (test AL) | its widths | as Core ML stores it: CR at Core ML's widths "
          "| restricted to Core ML: CR (test AL) | its widths | restricted / default |")
    print("|---|---|---|---|---|---|---|")
    for net in sorted(p.parent.name for p in args.restricted.glob("*/export.parquet")):
        d, r = first_target(args.default, net, "coreml"), first_target(args.restricted, net, "coreml")
        widths = [sorted({index_bits(k) for k in row["k"]}) for row in (d, r)]
        assert set(widths[1]) <= set(COREML_INDEX_BITS), f"{net}: a restricted choice outside Core ML's widths"
        print(f"| {net} | {d['cr']:.2f} ({100 * d['test_al']:.2f} pp) | {widths[0]} | {d['cr_at_format_widths']:.2f} "
              f"| {r['cr']:.2f} ({100 * r['test_al']:.2f} pp) | {widths[1]} | {r['cr'] / d['cr']:.3f} |")


if __name__ == "__main__":
    main()
