"""Stage search: NSGA-II over per-layer candidate indices, with the surrogate as the accuracy model (pymoo 0.6)."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.core.problem import Problem
from pymoo.operators.crossover.sbx import SBX
from pymoo.operators.mutation.pm import PM
from pymoo.operators.repair.rounding import RoundingRepair
from pymoo.operators.sampling.rnd import IntegerRandomSampling
from pymoo.optimize import minimize

from .candidates import CandidateSet
from .compression import compression_rates
from .io import read_json, read_parquet, write_parquet
from .pareto import pareto_mask
from .surrogate import candidate_features, design_matrix, predict


class WeightSharingProblem(Problem):
    """x[l] = candidate index of layer l; minimise (predicted AL, -CR)."""

    def __init__(self, cands: CandidateSet, surrogate: dict):
        if list(surrogate["layers"]) != cands.layer_names:
            raise ValueError("search: the surrogate's layers differ from the candidates' layers")
        self.cands, self.surrogate = cands, surrogate
        super().__init__(n_var=len(cands.sizes), n_obj=2, xl=0, xu=cands.sizes - 1, vtype=int)

    def objectives(self, choice: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predicted AL and exact CR of a (N, L) array of candidate indices."""
        c = np.asarray(choice, dtype=np.int64)
        x = design_matrix(self.surrogate["features"], candidate_features(self.cands, c))
        al = predict(self.surrogate, x)
        cr = compression_rates(self.cands.n_weights, self.cands.gather(self.cands.k, c))
        return al, cr

    def _evaluate(self, x, out, *args, **kwargs):
        al, cr = self.objectives(np.rint(x).astype(np.int64))
        out["F"] = np.column_stack([al, -cr])


FRONT_SCHEMA = pa.schema([
    ("point", pa.int64()), ("k", pa.list_(pa.int64())), ("choice", pa.list_(pa.int64())),
    ("predicted_al", pa.float64()), ("cr", pa.float64()),
])


def run_nsga2(cands: CandidateSet, surrogate: dict, pop_size: int, generations: int,
              seed: int) -> pa.Table:
    """The non-dominated set NSGA-II finds, one row per distinct K vector, sorted by CR."""
    if pop_size < 2:
        raise ValueError(f"search.pop_size must be >= 2, got {pop_size}")
    if generations < 1:
        raise ValueError(f"search.generations must be >= 1, got {generations}")
    problem = WeightSharingProblem(cands, surrogate)
    algorithm = NSGA2(
        pop_size=pop_size,
        sampling=IntegerRandomSampling(),
        crossover=SBX(prob=0.9, eta=15, vtype=float, repair=RoundingRepair()),
        mutation=PM(eta=20, vtype=float, repair=RoundingRepair()),
        eliminate_duplicates=True,
    )
    res = minimize(problem, algorithm, ("n_gen", generations), seed=seed, verbose=False)
    x = np.atleast_2d(np.rint(res.X).astype(np.int64))
    x = np.unique(x, axis=0)
    al, cr = problem.objectives(x)
    keep = pareto_mask(cr, al)
    x, al, cr = x[keep], al[keep], cr[keep]
    order = np.lexsort((al, cr))
    rows = [{"point": i, "k": cands.gather(cands.k, x[j]).tolist(), "choice": x[j].tolist(),
             "predicted_al": float(al[j]), "cr": float(cr[j])} for i, j in enumerate(order)]
    return pa.Table.from_pylist(rows, schema=FRONT_SCHEMA)


def run(*, candidates_parquet: str, layers_parquet: str, surrogate_json: str, pop_size: int, generations: int,
        seed: int, out: str) -> None:
    import logging

    cands = CandidateSet(read_parquet(candidates_parquet), read_parquet(layers_parquet).to_pylist())
    table = run_nsga2(cands, read_json(surrogate_json), pop_size, generations, seed)
    logging.getLogger(__name__).info("search: %d non-dominated points, CR %.2f..%.2f", table.num_rows,
                                     min(table.column("cr").to_pylist()), max(table.column("cr").to_pylist()))
    write_parquet(table, out)
