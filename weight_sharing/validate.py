"""Stage validate: every predicted front point measured for real on both splits.

The calibration split (the one every decision is made on) and the held-out test
split (measured, reported, never used to choose) are evaluated one after the
other, so at most one split is on the device at a time. With ``select.split:
unlabelled`` the unlabelled selection images are measured too (KL and changed
predictions), and the reported point is chosen on them.
"""

from __future__ import annotations

import pyarrow as pa

from .bound import meets_bound, selectable_rows
from .candidates import CandidateSet
from .data import SELECT
from .evaluate import Evaluator, Measurement, Progress, evaluator_for, measurement_columns
from .io import read_json, read_parquet, write_parquet
from .models import build_model
from .pareto import pareto_mask

SPLIT_COLUMNS = [(f"{split}_{c}", pa.float64() if c not in ("broken", "fixed") else pa.int64())
                 for split in ("calib", "test") for c in ("accuracy", "al", "kl", "changed", "broken", "fixed")]
# the unlabelled selection split (null unless select.split is unlabelled): no accuracy, only fidelity
SELECT_COLUMNS = [("select_kl", pa.float64()), ("select_changed", pa.float64()), ("select_images", pa.int64())]
VALIDATED_SCHEMA = pa.schema([
    ("point", pa.int64()), ("k", pa.list_(pa.int64())), ("groups", pa.list_(pa.int64())),
    ("choice", pa.list_(pa.int64())), ("cr", pa.float64()), ("predicted_al", pa.float64()),
    *SPLIT_COLUMNS, *SELECT_COLUMNS, ("on_front", pa.bool_()), ("selectable", pa.bool_()),
    ("test_within_bound", pa.bool_()),
])


def measure_all(evaluator: Evaluator, books: list[dict], what: str) -> list[Measurement]:
    """Each combination of codebooks applied in turn and measured; the weights restored after."""
    out = []
    progress = Progress(len(books), what)
    for i, b in enumerate(books):
        evaluator.apply(b)
        out.append(evaluator.measure())
        progress.step(i + 1)
    evaluator.restore()
    return out


def splits_for(selection: str) -> tuple[str, ...]:
    """The splits validate and uniform measure: calibration, test, and the selection images if they choose."""
    return ("calib", "test", SELECT) if selection == "unlabelled" else ("calib", "test")


def measure_splits(model_cfg: dict, data_npz: str, evaluation: dict, layers: list[str], books: list[dict],
                   baseline: dict, what: str, splits=("calib", "test"),
                   bias_statistics: str | None = None, reestimate_batchnorm: bool = False) -> list[dict]:
    """The measurement columns of every combination on each split in turn (one split on the device
    at a time; the model is built once). The unlabelled ``select`` split gives ``select_kl``,
    ``select_changed`` and ``select_images``."""
    rows = [{} for _ in books]
    model = build_model(model_cfg)
    for split in splits:
        ev = evaluator_for(model, data_npz, split, evaluation, layers=layers, bias_statistics=bias_statistics,
                           reestimate_batchnorm=reestimate_batchnorm)
        for row, m in zip(rows, measure_all(ev, books, f"{what} ({split})")):
            if split == SELECT:
                row.update(select_kl=m.kl, select_changed=m.changed, select_images=m.n)
            else:
                row.update(measurement_columns(f"{split}_", m, baseline[f"{split}_accuracy"]))
        ev.release()
    return rows


def validate_front(front: pa.Table, measured: list[dict], baseline: dict, bound: float,
                   confidence: float, selection: str = "calib") -> pa.Table:
    """The predicted points with their measurements.

    ``selectable``: the point may be chosen (by ``selection``: its calibration loss, or its
    changed predictions on the selection images, meets the bound at ``confidence``);
    ``test_within_bound``: its test accuracy meets the bound (reported, never used to choose);
    ``on_front``: the Pareto set on the test split (for the plot).
    """
    rows = [{"point": r["point"], "k": r["k"], "groups": r.get("groups") or [1] * len(r["k"]), "choice": r["choice"],
             "cr": r["cr"], "predicted_al": r["predicted_al"], **m}
            for r, m in zip(front.to_pylist(), measured)]
    if rows:
        mask = pareto_mask([r["cr"] for r in rows], [r["test_al"] for r in rows])
        ok = selectable_rows(rows, baseline, bound, confidence, selection)
        within = meets_bound([r["test_accuracy"] for r in rows], baseline["test_accuracy"], bound)
        for r, m, c, w in zip(rows, mask, ok, within):
            r["on_front"], r["selectable"], r["test_within_bound"] = bool(m), bool(c), bool(w)
    return pa.Table.from_pylist(rows, schema=VALIDATED_SCHEMA)


def run(*, model_cfg: dict, data_npz: str, candidates_parquet: str, layers_parquet: str, front_parquet: str,
        baseline_json: str, bound: float, confidence: float, evaluation: dict, out: str,
        bias_statistics: str | None = None, reestimate_batchnorm: bool = False, selection: str = "calib") -> None:
    cands = CandidateSet(read_parquet(candidates_parquet), read_parquet(layers_parquet).to_pylist())
    baseline = read_json(baseline_json)
    front = read_parquet(front_parquet)
    points = front.to_pylist()
    books = [cands.codebooks_of(r["choice"]) for r in points]
    calib_columns = [name for name, _ in SPLIT_COLUMNS if name.startswith("calib_")]
    if points and all(r.get(c) is not None for r in points for c in calib_columns):
        # refine measured every point on calibration already: only the test split is left
        measured = measure_splits(model_cfg, data_npz, evaluation, cands.layer_names, books, baseline, "validate",
                                  splits=tuple(s for s in splits_for(selection) if s != "calib"),
                                  bias_statistics=bias_statistics,
                                  reestimate_batchnorm=reestimate_batchnorm)
        measured = [{**{c: r[c] for c in calib_columns}, **m} for r, m in zip(points, measured)]
    else:
        measured = measure_splits(model_cfg, data_npz, evaluation, cands.layer_names, books, baseline, "validate",
                                  splits=splits_for(selection), bias_statistics=bias_statistics,
                                  reestimate_batchnorm=reestimate_batchnorm)
    write_parquet(validate_front(front, measured, baseline, bound, confidence, selection), out)
