"""Stage search: the predicted front of (surrogate AL, exact CR) by the configured method
(``search_methods``: the exact knapsack front, or the paper's NSGA-II)."""
from __future__ import annotations

import logging

from .io import read_json, write_parquet
from .search_methods import run_search
from .tables import CandidateSet

log = logging.getLogger(__name__)


def run(*, candidates: str, layers: str, surrogate: str, search: dict, out: str) -> None:
    cands = CandidateSet.read(candidates, layers)
    table = run_search(cands, read_json(surrogate), search)
    log.info("search (%s): %d non-dominated points, CR %.2f..%.2f", search["method"], table.num_rows,
             min(table.column("cr").to_pylist()), max(table.column("cr").to_pylist()))
    write_parquet(table, out)
