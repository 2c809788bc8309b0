"""Search methods: the front of (predicted loss, compression rate) over per-layer candidates (the loss: the
surrogate's target, network AL or KL).

``exact``: the surrogate is linear in per-layer features, so the predicted loss
of a combination is a sum over layers; with the layer's bits (indices plus
codebook) as its cost, the best combination at every size is a multiple-choice
knapsack, solved exactly by a dynamic program over layers that keeps, after each
layer, every non-dominated (bits, loss) pair. ``nsga2``: the paper's search
(pymoo), with a mutation that can reach every candidate of every layer.
:data:`SEARCH_METHODS` maps ``search.method`` to its function, which takes the
method's own options (``search.<method>.*``) as keywords; the search and refine
stages both search through :func:`run_search`.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.core.mutation import Mutation
from pymoo.core.problem import Problem
from pymoo.operators.crossover.sbx import SBX
from pymoo.operators.repair.rounding import RoundingRepair
from pymoo.operators.sampling.rnd import IntegerRandomSampling
from pymoo.optimize import minimize

from .compression import FLOAT_BITS
from .pareto import pareto_mask
from .surrogate_model import candidate_features, design_matrix, predict
from .tables import FRONT_SCHEMA, CandidateSet


class WeightSharingProblem(Problem):
    """x[l] = candidate index of layer l; minimise (the surrogate's predicted AL or KL, -CR)."""

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
        cr = self.cands.compression_rates(c)
        return al, cr

    def _evaluate(self, x, out, *args, **kwargs):
        al, cr = self.objectives(np.rint(x).astype(np.int64))
        out["F"] = np.column_stack([al, -cr])


class ResampleMutation(Mutation):
    """Each gene, with probability 1/L, moves to another of its layer's candidates, drawn uniformly.

    Polynomial mutation followed by rounding almost never changes a gene whose
    layer has 2-4 candidates (eta = 20: 0 changes in 100,000 genes for 2
    candidates); a value lost from the population would never come back.
    """

    def _do(self, problem, X, random_state=None, **kwargs):
        X = np.rint(np.asarray(X, dtype=float)).astype(np.int64)
        upper = np.asarray(problem.xu, dtype=np.int64)
        prob = self.get_prob_var(problem, size=len(X))
        for k in range(X.shape[1]):
            if upper[k] == 0:
                continue  # one candidate: nothing to mutate to
            rows = np.flatnonzero(random_state.random(len(X)) < prob)
            step = random_state.integers(1, upper[k] + 1, size=len(rows))  # never the current value
            X[rows, k] = (X[rows, k] + step) % (upper[k] + 1)
        return X.astype(float)


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
        mutation=ResampleMutation(),
        eliminate_duplicates=True,
    )
    res = minimize(problem, algorithm, ("n_gen", generations), seed=seed, verbose=False)
    x = np.atleast_2d(np.rint(res.X).astype(np.int64))
    x = np.unique(x, axis=0)
    al, cr = problem.objectives(x)
    keep = pareto_mask(cr, al)
    x, al, cr = x[keep], al[keep], cr[keep]
    order = np.lexsort((al, cr))
    return pa.Table.from_pylist(cands.front_rows(x[order], al[order], cr[order]), schema=FRONT_SCHEMA)


def layer_costs(cands: CandidateSet) -> np.ndarray:
    """(L, C) bits of each candidate: W x ceil(log2 K) index bits plus G x K float codebook entries."""
    return cands.bits().astype(np.float64)


def layer_losses(cands: CandidateSet, surrogate: dict) -> np.ndarray:
    """(L, C) each candidate's additive share of the predicted loss (the surrogate's terms for that layer)."""
    n_layers, pad = cands.k.shape
    coef = np.asarray(surrogate["coef"], dtype=np.float64).reshape(len(surrogate["features"]), n_layers)
    choice = np.tile(np.arange(pad), (n_layers, 1)).T  # (pad, L): row j picks candidate j of every layer
    choice = np.minimum(choice, cands.sizes - 1)
    features = candidate_features(cands, choice)
    return sum(coef[i][None, :] * features[f] for i, f in enumerate(surrogate["features"])).T


def knapsack_front(costs: list[np.ndarray], losses: list[np.ndarray], max_states: int = 200_000
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every non-dominated (total cost, total loss) of picking one item per layer, with the picks.

    Exact: after each layer only pairs that no cheaper-or-equal pair beats are kept (an optimal
    combination's prefix is itself optimal for its cost). Returns costs and losses (ascending
    cost, strictly descending loss) and the (N, L) picks. ``max_states`` bounds the pairs kept
    per layer (a ValueError beyond it rather than a silent approximation).
    """
    cost, loss = np.zeros(1), np.zeros(1)
    parents, picks = [], []
    for c, v in zip(costs, losses):
        c, v = np.asarray(c, dtype=np.float64), np.asarray(v, dtype=np.float64)
        tc = (cost[:, None] + c[None, :]).ravel()
        tv = (loss[:, None] + v[None, :]).ravel()
        order = np.lexsort((tv, tc))
        tc, tv = tc[order], tv[order]
        best_before = np.concatenate(([np.inf], np.minimum.accumulate(tv)[:-1]))
        keep = tv < best_before
        idx = order[keep]
        cost, loss = tc[keep], tv[keep]
        if len(cost) > max_states:
            raise ValueError(f"search: {len(cost)} non-dominated partial combinations exceed {max_states}")
        parents.append(idx // len(c))
        picks.append(idx % len(c))
    choice = np.empty((len(cost), len(costs)), dtype=np.int64)
    state = np.arange(len(cost))
    for layer in range(len(costs) - 1, -1, -1):
        choice[:, layer] = picks[layer][state]
        state = parents[layer][state]
    return cost, loss, choice


def spread(values: np.ndarray, n: int) -> np.ndarray:
    """Indices of at most ``n`` points spread evenly over the range of sorted ``values`` (ends kept)."""
    if len(values) <= n:
        return np.arange(len(values))
    targets = np.linspace(values[0], values[-1], n)
    idx = np.searchsorted(values, targets).clip(0, len(values) - 1)
    idx[0], idx[-1] = 0, len(values) - 1  # the ends themselves, also where the last value is tied
    return np.unique(idx)


def run_exact(cands: CandidateSet, surrogate: dict, max_points: int) -> pa.Table:
    """The exact front of a linear surrogate, thinned to ``max_points`` spread evenly in CR."""
    if list(surrogate["layers"]) != cands.layer_names:
        raise ValueError("search: the surrogate's layers differ from the candidates' layers")
    cost, loss = layer_costs(cands), layer_losses(cands, surrogate)
    total, value, choice = knapsack_front([cost[i, :s] for i, s in enumerate(cands.sizes)],
                                          [loss[i, :s] for i, s in enumerate(cands.sizes)])
    cr = float(cands.n_weights.sum() * FLOAT_BITS) / total
    order = np.argsort(cr, kind="stable")
    keep = order[spread(cr[order], max_points)]
    x = choice[keep]
    al = value[keep] + float(surrogate["intercept"])
    crs = cands.compression_rates(x)
    order = np.argsort(crs, kind="stable")
    return pa.Table.from_pylist(cands.front_rows(x[order], al[order], crs[order]), schema=FRONT_SCHEMA)


# search.method -> the function giving the predicted front; each takes its own options, the
# ``search.<method>`` config section, as keywords
SEARCH_METHODS = {"exact": run_exact, "nsga2": run_nsga2}


def run_search(cands: CandidateSet, surrogate: dict, search: dict) -> pa.Table:
    """The predicted front by the configured method (``search``: the config section)."""
    method = search["method"]
    if method not in SEARCH_METHODS:
        raise ValueError(f"search.method: {method!r}; allowed: {', '.join(SEARCH_METHODS)}")
    return SEARCH_METHODS[method](cands, surrogate, **(search.get(method) or {}))
