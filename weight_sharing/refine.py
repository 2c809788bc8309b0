"""Stage refine: rounds of measure the predicted front, refit the surrogate, search again.

The random samples rarely land where the front is; the predicted front's own
points, measured on the calibration split, are the most informative data the
surrogate can get. Each round adds them to the surrogate's data, refits it and
searches again; the rounds stop after ``rounds`` or as soon as the best CR
chosen on calibration stops improving. Everything here is calibration data.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pyarrow as pa

from .bound import SelectRule, choose
from .evaluate import EvaluationSpec, measure_all, measurement_columns
from .io import read_json, read_parquet, write_json, write_parquet
from .search_methods import run_search
from .surrogate_model import candidate_features, design_matrix, fit_surrogate, sample_features, target_column
from .tables import REFINED_SCHEMA, CandidateSet, read_samples, write_point_tensors

log = logging.getLogger(__name__)


def refine_front(evaluator, cands: CandidateSet, samples: pa.Table, surrogate: dict, front: pa.Table, baseline: dict,
                 bound: float, rule: SelectRule, rounds: int, search: dict,
                 tensors: dict | None = None) -> tuple[pa.Table, dict, list[dict]]:
    """Up to ``rounds`` rounds; returns every front point of every round (for validation, in CR order),
    the last surrogate and one record per round. ``tensors``: a dict that receives, per returned point, the
    model tensors the corrections gave it (``Evaluator.export_tensors``)."""
    features, positive = surrogate["features"], surrogate["positive"]
    target = surrogate.get("target", "al")
    column = target_column(target)
    energy = cands.energy
    x = design_matrix(features, sample_features(samples, energy))
    y = np.asarray(samples.column(column).to_numpy(), dtype=np.float64)
    base = baseline["calib_accuracy"]
    history, best_cr = [], None
    seen: dict[tuple, dict] = {}
    corrected: dict[tuple, dict] = {}
    for r in range(rounds + 1):
        points = front.to_pylist()
        new = [p for p in points if tuple(p["choice"]) not in seen]
        kept = [] if tensors is not None else None
        measured = measure_all(evaluator, [cands.codebooks_of(p["choice"]) for p in new], f"refine round {r}",
                               kept=kept)
        rows = [{**p, **measurement_columns("calib_", m, base)} for p, m in zip(new, measured)]
        seen.update({tuple(r["choice"]): r for r in rows})
        corrected.update({tuple(p["choice"]): t for p, t in zip(new, kept or [])})
        # the search's own stopping rule: the report's choice among every point measured so far
        everything = list(seen.values())
        pick = choose(everything, baseline, bound, rule)
        cr = everything[pick]["cr"] if pick is not None else None
        history.append({"round": r, "measured": len(rows), "r2_heldout": surrogate["r2_heldout"],
                        "best_calib_cr": cr, "samples": int(len(y))})
        log.info("refine round %d: %d new front points measured, surrogate held-out R2 %.3f, best CR chosen on "
                 "calibration %s", r, len(rows), surrogate["r2_heldout"], f"{cr:.2f}" if cr else "none")
        improved = cr is not None and (best_cr is None or cr > best_cr + 1e-9)
        if r > 0 and not improved:
            break
        best_cr = max(best_cr or 0.0, cr or 0.0) or None
        if r == rounds or not rows:
            break
        choice = np.array([p["choice"] for p in new], dtype=np.int64)
        x = np.vstack([x, design_matrix(features, candidate_features(cands, choice))])
        y = np.concatenate([y, [row[f"calib_{column}"] for row in rows]])
        surrogate, _ = fit_surrogate(x, y, cands.layer_names, folds=surrogate["folds"], seed=surrogate["seed"],
                                     feature_names=features, positive=positive, target=target)
        front = run_search(cands, surrogate, search)
    union = sorted(seen.values(), key=lambda p: (p["cr"], p["predicted"]))
    table = pa.Table.from_pylist([{**p, "point": i} for i, p in enumerate(union)], schema=REFINED_SCHEMA)
    if tensors is not None:
        tensors.update({i: corrected[tuple(p["choice"])] for i, p in enumerate(union)})
    return table, surrogate, history


def run(*, spec: EvaluationSpec, candidates: str, layers: str, samples: list[str], surrogate: str, front: str,
        baseline: str, bound: float, select: dict, refine: dict, search: dict,
        out_front: str, out_rounds: str, out_tensors: str) -> None:
    """``refine.rounds`` rounds (the ``refine`` section) with the ``search`` section's method; after each
    round the best CR is chosen on calibration by the ``select`` section's rule (its ``split`` aside: the
    selection images, if any, are measured in validate). ``out_tensors``: each measured
    point's corrected tensors (``tables.write_point_tensors``; no point without rounds)."""
    cands = CandidateSet.read(candidates, layers)
    table = read_samples(samples)
    base = read_json(baseline)
    points = read_parquet(front)
    model = read_json(surrogate)
    rounds = refine["rounds"]
    tensors: dict[int, dict] = {}
    if rounds > 0:
        ev = spec.evaluator("calib", cands.layer_names)
        rule = dataclasses.replace(SelectRule.from_config(select), split="calib")
        points, model, history = refine_front(ev, cands, table, model, points, base, bound, rule, rounds, search,
                                              tensors=tensors)
        ev.release()
    else:
        history = []
    write_point_tensors(tensors, out_tensors)
    write_parquet(points, out_front)
    write_json({"rounds": history, "surrogate": model}, out_rounds)
