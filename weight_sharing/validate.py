"""Stage validate: every predicted front point measured for real on both splits.

The calibration split (the one every decision is made on) and the held-out test
split (measured, reported, never used to choose) are evaluated one after the
other, so at most one split is on the device at a time. With ``select.split:
unlabelled`` the unlabelled selection images are measured too (KL and changed
predictions), and the reported point is chosen on them.
"""

from __future__ import annotations

import logging

import pyarrow as pa

from .bound import SelectRule, meets_bound, selectable_rows
from .evaluate import EvaluationSpec, measure_splits, splits_for
from .io import read_json, read_parquet, write_parquet
from .pareto import pareto_mask
from .tables import CALIB_COLUMNS, VALIDATED_SCHEMA, CandidateSet, read_point_tensors

log = logging.getLogger(__name__)


def validate_front(front: pa.Table, measured: list[dict], baseline: dict, bound: float, rule: SelectRule) -> pa.Table:
    """The predicted points with their measurements.

    ``selectable``: the point may be chosen (by ``rule``: its calibration loss, or its changed
    predictions on the selection images, meets the bound at the rule's confidence, among the front);
    ``test_within_bound``: its test accuracy meets the bound (reported, never used to choose);
    ``on_front``: the Pareto set on the test split (for the plot).
    """
    rows = [{"point": r["point"], "k": r["k"], "groups": r.get("groups") or [1] * len(r["k"]), "choice": r["choice"],
             "cr": r["cr"], "predicted": r["predicted"], **m}
            for r, m in zip(front.to_pylist(), measured)]
    if rows:
        mask = pareto_mask([r["cr"] for r in rows], [r["test_al"] for r in rows])
        ok = selectable_rows(rows, baseline, bound, rule)
        within = meets_bound([r["test_accuracy"] for r in rows], baseline["test_accuracy"], bound)
        for r, m, c, w in zip(rows, mask, ok, within):
            r["on_front"], r["selectable"], r["test_within_bound"] = bool(m), bool(c), bool(w)
    return pa.Table.from_pylist(rows, schema=VALIDATED_SCHEMA)


def run(*, spec: EvaluationSpec, candidates: str, layers: str, front: str, baseline: str, bound: float,
        select: dict, out: str, tensors: str | None = None) -> None:
    """The front measured on calibration (unless refine did), test and, under ``select.split: unlabelled``,
    the selection images; marked selectable by the ``select`` section's rule and confidence. ``tensors``:
    refine's corrected tensors of each point (``tables.read_point_tensors``): where refine measured every
    point, they are set instead of correcting again, which saves each point's BatchNorm statistics pass
    over the calibration images (the same statistics: refine took them from the same images)."""
    cands = CandidateSet.read(candidates, layers)
    base = read_json(baseline)
    table = read_parquet(front)
    points = table.to_pylist()
    books = [cands.codebooks_of(r["choice"]) for r in points]
    calib_columns = [name for name, _ in CALIB_COLUMNS]
    splits = splits_for(select["split"])
    if points and all(r.get(c) is not None for r in points for c in calib_columns):
        # refine measured every point on calibration already: only the other splits are left
        corrected = read_point_tensors(tensors) if tensors else {}
        given = [corrected[r["point"]] for r in points] if all(r["point"] in corrected for r in points) else None
        if given is None:
            log.info("validate: refine's corrected tensors do not cover the front; correcting again")
        measured = measure_splits(spec, cands.layer_names, books, base, "validate",
                                  splits=tuple(s for s in splits if s != "calib"), tensors=given)
        measured = [{**{c: r[c] for c in calib_columns}, **m} for r, m in zip(points, measured)]
    else:
        measured = measure_splits(spec, cands.layer_names, books, base, "validate", splits=splits)
    write_parquet(validate_front(table, measured, base, bound, SelectRule.from_config(select)), out)
