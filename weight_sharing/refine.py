"""Stage refine: rounds of measure the predicted front, refit the surrogate, search again.

The random samples rarely land where the front is; the predicted front's own
points, measured on the calibration split, are the most informative data the
surrogate can get. Each round adds them to the surrogate's data, refits it and
searches again; the rounds stop after ``rounds`` or as soon as the best CR
chosen on calibration stops improving. Everything here is calibration data.
"""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa

from .bound import choose
from .candidates import CandidateSet
from .evaluate import evaluator_for, measurement_columns
from .io import read_json, read_parquet, write_json, write_parquet
from .sample import read_samples
from .search import FRONT_SCHEMA, run_search
from .surrogate import candidate_features, design_matrix, fit_surrogate, sample_features
from .validate import SPLIT_COLUMNS, measure_all

log = logging.getLogger(__name__)

# the front's columns plus the calibration measurement of each point (validate does not repeat it)
REFINED_SCHEMA = pa.schema(list(FRONT_SCHEMA) + [f for f in SPLIT_COLUMNS if f[0].startswith("calib_")])


def refine(evaluator, cands: CandidateSet, samples: pa.Table, surrogate: dict, front: pa.Table, baseline: dict,
           bound: float, confidence: float, rounds: int, search: dict) -> tuple[pa.Table, dict, list[dict]]:
    """Up to ``rounds`` rounds; returns every front point of every round (for validation, in CR order),
    the last surrogate and one record per round."""
    features, positive = surrogate["features"], surrogate["positive"]
    energy = cands.energy
    x = design_matrix(features, sample_features(samples, energy))
    y = np.asarray(samples.column("al").to_numpy(), dtype=np.float64)
    base = baseline["calib_accuracy"]
    history, best_cr = [], None
    seen: dict[tuple, dict] = {}
    for r in range(rounds + 1):
        points = front.to_pylist()
        new = [p for p in points if tuple(p["choice"]) not in seen]
        measured = measure_all(evaluator, [cands.codebooks_of(p["choice"]) for p in new], f"refine round {r}")
        rows = [{**p, **measurement_columns("calib_", m, base)} for p, m in zip(new, measured)]
        seen.update({tuple(r["choice"]): r for r in rows})
        pick = choose(rows, baseline, bound, confidence)  # the search's own stopping rule: calibration
        cr = rows[pick]["cr"] if pick is not None else None
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
        y = np.concatenate([y, [row["calib_al"] for row in rows]])
        surrogate, _ = fit_surrogate(x, y, cands.layer_names, folds=surrogate["folds"], seed=surrogate["seed"],
                                     feature_names=features, positive=positive)
        front = run_search(cands, surrogate, **search)
    union = sorted(seen.values(), key=lambda p: (p["cr"], p["predicted_al"]))
    table = pa.Table.from_pylist([{**p, "point": i} for i, p in enumerate(union)], schema=REFINED_SCHEMA)
    return table, surrogate, history


def run(*, model_cfg: dict, data_npz: str, candidates_parquet: str, layers_parquet: str, sample_files: list[str],
        surrogate_json: str, front_parquet: str, baseline_json: str, bound: float, confidence: float, rounds: int,
        search: dict, evaluation: dict, out_front: str, out_json: str, bias_statistics: str | None = None,
        reestimate_batchnorm: bool = False) -> None:
    cands = CandidateSet(read_parquet(candidates_parquet), read_parquet(layers_parquet).to_pylist())
    samples = read_samples(sample_files)
    baseline = read_json(baseline_json)
    front = read_parquet(front_parquet)
    surrogate = read_json(surrogate_json)
    if rounds > 0:
        ev = evaluator_for(model_cfg, data_npz, "calib", evaluation, layers=cands.layer_names,
                           bias_statistics=bias_statistics, reestimate_batchnorm=reestimate_batchnorm)
        front, surrogate, history = refine(ev, cands, samples, surrogate, front, baseline, bound, confidence,
                                           rounds, search)
        ev.release()
    else:
        history = []
    write_parquet(front, out_front)
    write_json({"rounds": history, "surrogate": surrogate}, out_json)
