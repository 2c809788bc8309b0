import numpy as np
import pyarrow as pa
import pytest

from weight_sharing.bound import SelectRule
from weight_sharing.compression import compression_rates
from weight_sharing.pareto import pareto_mask
from weight_sharing.sample import draw_combinations, shard_bounds
from weight_sharing.search_methods import run_nsga2
from weight_sharing.surrogate_model import design_matrix, fit_surrogate, predict
from weight_sharing.tables import CandidateSet
from workflow_utils import cr_by_hand

PLAIN = SelectRule(confidence=0.5, split="calib", interval="normal", family="none")  # the measured loss


def test_surrogate_recovers_known_linear_model():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 0.05, size=(400, 4))
    coef, intercept = np.array([1.0, 0.5, 2.0, 0.0]), 0.003
    y = x @ coef + intercept + rng.normal(0, 1e-4, 400)
    model, oof = fit_surrogate(x, y, ["a", "b", "c", "d"], folds=5, seed=0)
    assert np.allclose(model["coef"], coef, atol=0.01)
    assert model["intercept"] == pytest.approx(intercept, abs=1e-3)
    assert model["r2_heldout"] > 0.99
    assert model["rmse_heldout"] == pytest.approx(1e-4, rel=0.3)
    assert np.allclose(predict(model, x), x @ np.array(model["coef"]) + model["intercept"])
    assert oof.shape == y.shape


def test_surrogate_heldout_score_exposes_noise():
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(200, 3))
    y = rng.uniform(size=200)  # unrelated
    model, _ = fit_surrogate(x, y, ["a", "b", "c"], folds=4, seed=0)
    assert model["r2_heldout"] < 0.05


def test_positive_coefficients_and_design_matrix():
    rng = np.random.default_rng(2)
    al, noise = rng.uniform(size=(300, 2)), rng.uniform(size=(300, 2))
    x = design_matrix(["layer_al", "layer_noise"], {"layer_al": al, "layer_noise": noise})
    assert x.shape == (300, 4) and np.array_equal(x[:, 2:], noise)
    y = x @ np.array([1.0, -0.5, 0.2, 0.0]) + rng.normal(0, 0.01, 300)
    free, _ = fit_surrogate(x, y, ["a", "b"], feature_names=["layer_al", "layer_noise"])
    pos, _ = fit_surrogate(x, y, ["a", "b"], feature_names=["layer_al", "layer_noise"], positive=True)
    assert min(free["coef"]) < -0.4
    assert min(pos["coef"]) >= 0
    with pytest.raises(ValueError, match="allowed"):
        design_matrix(["layer_magic"], {})


def test_positive_fit_of_features_spanning_orders_of_magnitude():
    """Per-layer KL (1e-6..1e-1) next to quantisation noise (1e-4..3), more columns than samples, as in a
    refinement round of a 58-layer network: scipy 1.17's non-negative solver on the raw columns stops at
    its iteration limit here; the fit converges to the constrained optimum."""
    from scipy.optimize import nnls

    rng = np.random.default_rng(5)
    n, layers, cands = 80, 58, 4
    kl, noise = 10.0 ** rng.uniform(-6, -1, (layers, cands)), 10.0 ** rng.uniform(-4, 0.5, (layers, cands))
    choice = rng.integers(0, cands, (n, layers))
    x = np.hstack([kl[np.arange(layers), choice], noise[np.arange(layers), choice]])
    y = x[:, :layers] @ rng.uniform(0, 0.5, layers) + rng.normal(scale=0.002, size=n)
    xc, yc = x - x.mean(0), y - y.mean()
    model, oof = fit_surrogate(x, y, [f"l{i}" for i in range(layers)], folds=5,
                               feature_names=["layer_kl", "layer_noise"], positive=True)
    coef = np.array(model["coef"])
    assert coef.min() >= 0 and np.isfinite(oof).all()
    optimum, _ = nnls(xc, yc, maxiter=100 * x.shape[1])  # the raw solver given enough iterations
    fitted = predict(model, x)
    assert np.sum((y - fitted) ** 2) == pytest.approx(np.sum((yc - xc @ optimum) ** 2), rel=1e-6)


def test_surrogate_rejects_bad_shapes():
    with pytest.raises(ValueError, match="folds"):
        fit_surrogate(np.zeros((10, 2)), np.zeros(10), ["a", "b"], folds=1)
    with pytest.raises(ValueError, match="do not match"):
        fit_surrogate(np.zeros((10, 2)), np.zeros(9), ["a", "b"])


def test_pareto_mask():
    cr = [1, 2, 3, 3, 2]
    al = [0.0, 0.1, 0.2, 0.3, 0.2]
    assert pareto_mask(cr, al).tolist() == [True, True, True, False, False]


def test_draw_is_seeded_distinct_and_shard_independent():
    sizes = np.array([3, 4, 5])
    a = draw_combinations(sizes, 40, seed=7)
    assert np.array_equal(a, draw_combinations(sizes, 40, seed=7))
    assert len({r.tobytes() for r in a}) == 40
    assert (a >= 0).all() and (a < sizes).all()
    assert len(draw_combinations(sizes, 1000, seed=0)) == 60  # whole space
    for shards in (1, 3, 7):
        parts = [a[slice(*shard_bounds(len(a), shards, s))] for s in range(shards)]
        assert np.array_equal(np.concatenate(parts), a)


def make_candidates(n_layers=4, per_layer=5, seed=0):
    rng = np.random.default_rng(seed)
    rows, layers = [], []
    for l in range(n_layers):
        layers.append({"name": f"l{l}", "weights": int(rng.integers(100, 5000))})
        for j, k in enumerate([2, 4, 8, 16, 32][:per_layer]):
            rows.append({"layer": f"l{l}", "k": k, "al": float(0.05 / (j + 1) * rng.uniform(0.5, 1.5)),
                         "inertia": 1.0 / k, "thresholds": [0.0] * (k - 1), "centroids": [0.0] * k})
    return CandidateSet(pa.Table.from_pylist(rows), layers)


def test_nsga2_returns_non_dominated_exact_points():
    cands = make_candidates()
    surrogate = {"kind": "linear", "features": ["layer_al"], "layers": cands.layer_names,
                 "coef": [1.0, 0.8, 1.2, 0.5], "intercept": 0.0}
    front = run_nsga2(cands, surrogate, pop_size=40, generations=60, seed=1)
    choice = np.array(front.column("choice").to_pylist())
    cr = np.array(front.column("cr").to_pylist())
    al = np.array(front.column("predicted").to_pylist())
    assert len(front) >= 5
    assert pareto_mask(cr, al).all()
    ks = np.array(front.column("k").to_pylist())
    assert np.allclose(cr, [cr_by_hand(cands.n_weights, row) for row in ks])
    assert np.allclose(al, predict(surrogate, np.stack([cands.gather(cands.al, c) for c in choice])))
    # exhaustive check: no point of the whole space dominates a returned point
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in cands.sizes], indexing="ij"), -1).reshape(-1, 4)
    all_cr = compression_rates(cands.n_weights, np.stack([cands.gather(cands.k, c) for c in grid]))
    all_al = predict(surrogate, np.stack([cands.gather(cands.al, c) for c in grid]))
    true_front = pareto_mask(all_cr, all_al)
    for c, a in zip(cr, al):
        dominated = (all_cr >= c) & (all_al <= a) & ((all_cr > c + 1e-12) | (all_al < a - 1e-12))
        assert not dominated.any()
    assert len(front) >= 0.8 * true_front.sum()


def test_nsga2_seeded():
    cands = make_candidates(seed=3)
    surrogate = {"kind": "linear", "features": ["layer_al", "layer_noise"], "layers": cands.layer_names,
                 "coef": [1.0] * 8, "intercept": 0.0}
    a = run_nsga2(cands, surrogate, 20, 20, seed=5)
    b = run_nsga2(cands, surrogate, 20, 20, seed=5)
    assert a.equals(b)


def test_nsga2_with_a_single_candidate_layer():
    """A layer with one candidate (e.g. a fallback layer) is fixed; the search still explores the others."""
    rng = np.random.default_rng(4)
    layers = [{"name": f"l{i}", "weights": int(rng.integers(100, 2000))} for i in range(3)]
    rows = []
    for i, ks in enumerate(([2, 4, 8, 16], [64], [2, 4, 8])):
        for j, k in enumerate(ks):
            rows.append({"layer": f"l{i}", "k": k, "al": 0.05 / (j + 1), "inertia": 1.0 / k,
                         "thresholds": [0.0] * (k - 1), "centroids": [0.0] * k})
    cands = CandidateSet(pa.Table.from_pylist(rows), layers)
    surrogate = {"kind": "linear", "features": ["layer_al"], "layers": cands.layer_names,
                 "coef": [1.0, 1.0, 1.0], "intercept": 0.0}
    front = run_nsga2(cands, surrogate, pop_size=20, generations=30, seed=0)
    ks = np.array(front.column("k").to_pylist())
    assert (ks[:, 1] == 64).all()
    assert len(front) >= 4 and len(set(map(tuple, ks[:, [0, 2]]))) == len(front)


def test_all_zero_layer_gives_finite_features():
    """A layer of zeros (energy 0) has no relative noise to measure: 0, not NaN, in the fit and the search."""
    from weight_sharing.surrogate_model import feature_values

    f = feature_values(al=np.zeros((3, 2)), kl=np.zeros((3, 2)), inertia=np.array([[0.0, 1.0]] * 3),
                       energy=np.array([0.0, 4.0]))
    assert np.array_equal(f["layer_noise"], np.array([[0.0, 0.25]] * 3))
    rows = [{"layer": name, "k": k, "al": 0.01 / k, "inertia": (0.0 if name == "z" else 1.0 / k),
             "thresholds": [0.0] * (k - 1), "centroids": [0.0] * k} for name in ("z", "w") for k in (2, 4)]
    cands = CandidateSet(pa.Table.from_pylist(rows), [{"name": "z", "weights": 10, "energy": 0.0},
                                                      {"name": "w", "weights": 10, "energy": 2.0}])
    surrogate = {"kind": "linear", "features": ["layer_al", "layer_noise"], "layers": ["z", "w"],
                 "coef": [1.0, 1.0, 1.0, 1.0], "intercept": 0.0}
    front = run_nsga2(cands, surrogate, pop_size=8, generations=5, seed=0)
    assert np.isfinite(front.column("predicted").to_numpy()).all()


@pytest.mark.parametrize("seed", range(8))
def test_knapsack_front_is_exact_against_brute_force(seed):
    """Every returned point is optimal for its cost, and every Pareto point of the whole space is returned."""
    import itertools

    from weight_sharing.search_methods import knapsack_front

    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 5, size=int(rng.integers(2, 6)))
    costs = [rng.integers(1, 20, s).astype(float) for s in sizes]
    losses = [rng.normal(0, 1, s).round(1) for s in sizes]  # rounding makes ties
    cost, loss, choice = knapsack_front(costs, losses)
    space = list(itertools.product(*[range(s) for s in sizes]))
    all_c = np.array([sum(costs[l][j] for l, j in enumerate(p)) for p in space])
    all_v = np.array([sum(losses[l][j] for l, j in enumerate(p)) for p in space])
    for c, v, pick in zip(cost, loss, choice):
        assert c == pytest.approx(sum(costs[l][j] for l, j in enumerate(pick)))
        assert v == pytest.approx(sum(losses[l][j] for l, j in enumerate(pick)))
        assert v <= all_v[all_c <= c + 1e-9].min() + 1e-9  # nothing as cheap is better
    pareto = {(c, round(v, 9)) for c, v in zip(all_c, all_v)
              if not ((all_c <= c) & (all_v < v - 1e-9)).any() and not ((all_c < c) & (all_v <= v + 1e-9)).any()}
    assert {(c, round(v, 9)) for c, v in zip(cost, loss)} == pareto
    assert np.all(np.diff(cost) > 0) and np.all(np.diff(loss) < 0)


def test_exact_search_front_dominates_nsga2():
    from weight_sharing.search_methods import run_exact

    cands = make_candidates(n_layers=5, seed=2)
    surrogate = {"kind": "linear", "features": ["layer_al", "layer_noise"], "layers": cands.layer_names,
                 "coef": [1.0, 0.8, 1.2, 0.5, 0.3] + [0.01] * 5, "intercept": 0.001}
    exact = run_exact(cands, surrogate, max_points=1000)
    nsga = run_nsga2(cands, surrogate, pop_size=20, generations=10, seed=0)
    ecr, eal = exact.column("cr").to_numpy(), exact.column("predicted").to_numpy()
    for cr, al in zip(nsga.column("cr").to_numpy(), nsga.column("predicted").to_numpy()):
        better = ecr >= cr - 1e-12
        assert eal[better].min() <= al + 1e-12  # the exact front is at least as good at every CR
    ks = np.array(exact.column("k").to_pylist())
    assert np.allclose(exact.column("cr").to_numpy(), [cr_by_hand(cands.n_weights, row) for row in ks])
    thinned = run_exact(cands, surrogate, max_points=5)
    assert len(thinned) <= 7 and thinned.column("cr").to_numpy().max() == pytest.approx(ecr.max())


def test_mutation_reaches_every_candidate():
    """A 2-candidate layer flips; a 3-candidate layer reaches both other values; 1 candidate stays."""
    from pymoo.core.problem import Problem

    from weight_sharing.search_methods import ResampleMutation

    problem = Problem(n_var=3, n_obj=1, xl=0, xu=np.array([1, 2, 0]), vtype=int)
    x = np.zeros((20000, 3))
    out = ResampleMutation()._do(problem, x, random_state=np.random.default_rng(0))
    changed = (out != x).mean(axis=0)
    assert changed[0] == pytest.approx(1 / 3, abs=0.02) and changed[2] == 0
    assert set(np.unique(out[:, 0])) == {0, 1} and set(np.unique(out[:, 1])) == {0, 1, 2}
    assert np.array_equal(np.unique(out[:, 1][out[:, 1] != 0]), [1, 2])


class FakeEvaluator:
    """Measures a combination by a fixed rule: each layer at its smallest candidate breaks ``cost`` images."""

    def __init__(self, cands, cost, kl_per_image=0.0):
        self.cands, self.cost, self.books, self.kl_per_image = cands, cost, {}, kl_per_image

    def apply(self, books):
        self.books = books

    def restore(self, names=None):
        self.books = {}

    def measure(self):
        from weight_sharing.evaluate import Measurement

        broken = sum(self.cost[i] for i, n in enumerate(self.cands.layer_names)
                     if self.books[n].k == self.cands.k[i, 0])
        return Measurement(accuracy=0.9 - broken / 500, kl=self.kl_per_image * broken, changed=broken / 500,
                           broken=broken, fixed=0, n=500)


def test_refinement_rounds_add_data_and_stop():
    from weight_sharing.refine import refine_front
    from weight_sharing.sample import draw_combinations

    cands = make_candidates(n_layers=4, seed=5)
    ev = FakeEvaluator(cands, cost=[1, 2, 8, 0])
    choices = draw_combinations(cands.sizes, 40, seed=0)
    rows = []
    for i, c in enumerate(choices):
        ev.apply(cands.codebooks_of(c))
        m = ev.measure()
        v = cands.layer_values(c)
        rows.append({"sample": i, "layer_al": v["al"].tolist(), "layer_kl": v["kl"].tolist(),
                     "layer_inertia": v["inertia"].tolist(), "al": 0.9 - m.accuracy})
    samples = pa.Table.from_pylist(rows)
    x = design_matrix(["layer_al"], {"layer_al": np.array([r["layer_al"] for r in rows])})
    surrogate, _ = fit_surrogate(x, samples.column("al").to_numpy(), cands.layer_names, folds=4,
                                 feature_names=["layer_al"], positive=True)
    search = {"method": "exact", "exact": {"max_points": 30}, "nsga2": {"pop_size": 10, "generations": 5, "seed": 0}}
    from weight_sharing.search_methods import run_search

    front = run_search(cands, surrogate, search)
    baseline = {"calib_images": 500, "calib_accuracy": 0.9}
    out, final, history = refine_front(ev, cands, samples, surrogate, front, baseline, 0.99, PLAIN, 5, search)
    assert 1 <= len(history) <= 6 and history[0]["round"] == 0
    assert history[-1]["samples"] == 40 + sum(h["measured"] for h in history[:-1])
    # it stopped because the chosen CR stopped improving (or the rounds ran out)
    crs = [h["best_calib_cr"] or 0 for h in history]
    assert len(history) == 6 or crs[-1] <= max(crs[:-1]) + 1e-9
    assert len(out) == sum(h["measured"] for h in history)
    assert {tuple(r["choice"]) for r in front.to_pylist()} <= {tuple(r["choice"]) for r in out.to_pylist()}
    none, _, h0 = refine_front(ev, cands, samples, surrogate, front, baseline, 0.99, PLAIN, 0, search)
    assert len(h0) == 1 and len(none) == len(front)


def test_surrogate_of_a_tiny_search_space():
    """Fewer combinations than folds (every layer kept one or two candidates): leave-one-out, or with one
    combination no held-out score, instead of stopping the run."""
    from weight_sharing.surrogate_model import fit_surrogate

    x = np.array([[0.1, 0.2], [0.3, 0.1]])
    model, oof = fit_surrogate(x, np.array([0.01, 0.03]), ["a", "b"], folds=5)
    assert model["folds"] == 5 and model["folds_used"] == 2 and np.isfinite(oof).all()
    model, oof = fit_surrogate(x[:1], np.array([0.02]), ["a", "b"], folds=5)
    assert np.isnan(model["r2_heldout"]) and np.isnan(oof).all()
    assert model["intercept"] + np.dot(model["coef"], x[0]) == pytest.approx(0.02)


def test_spread_keeps_at_most_n_points_with_ties_at_the_end():
    from weight_sharing.search_methods import spread

    values = np.array([1.0, 2.0, 3.0, 3.0, 3.0])
    picked = spread(values, 2)
    assert len(picked) <= 2 and picked[0] == 0 and picked[-1] == len(values) - 1
    for n in range(2, 8):
        rng = np.random.default_rng(n)
        v = np.sort(rng.integers(0, 4, size=12)).astype(float)
        got = spread(v, n)
        assert len(got) <= n and got[0] == 0 and got[-1] == len(v) - 1


def test_refinement_with_the_kl_target_refits_on_the_measured_kl():
    """``surrogate.target: kl``: the samples' KL and then each measured point's calibration KL are the data.
    Here the KL is 3/500 per broken image, i.e. exactly 3x the top-1 loss, so the KL run must measure the same
    points as a top-1 run and end with exactly 3x its coefficients; a round refitted on the top-1 loss
    instead would break that."""
    from weight_sharing.refine import refine_front
    from weight_sharing.sample import draw_combinations, evaluate_combinations
    from weight_sharing.search_methods import run_search

    cands = make_candidates(n_layers=4, seed=5)
    ev = FakeEvaluator(cands, cost=[1, 2, 8, 0], kl_per_image=3 / 500)
    samples = evaluate_combinations(ev, cands, draw_combinations(cands.sizes, 40, seed=0), 0.9)
    assert np.allclose(samples.column("kl").to_numpy(), 3 * samples.column("al").to_numpy())
    x = design_matrix(["layer_al"], {"layer_al": np.array(samples.column("layer_al").to_pylist())})
    search = {"method": "exact", "exact": {"max_points": 30}}
    baseline = {"calib_images": 500, "calib_accuracy": 0.9}
    runs = {}
    for target in ("al", "kl"):
        surrogate, _ = fit_surrogate(x, samples.column(target).to_numpy(), cands.layer_names, folds=4,
                                     feature_names=["layer_al"], positive=True, target=target)
        front = run_search(cands, surrogate, search)
        runs[target] = refine_front(ev, cands, samples, surrogate, front, baseline, 0.99, PLAIN, 3, search)
    (al_points, al_model, al_history), (kl_points, kl_model, _) = runs["al"], runs["kl"]
    assert len(al_history) >= 2 and al_history[-1]["samples"] > 40  # at least one refit on measured points
    assert kl_model["target"] == "kl" and al_model["target"] == "al"
    assert al_points.column("choice").to_pylist() == kl_points.column("choice").to_pylist()
    assert np.allclose(kl_model["coef"], 3 * np.asarray(al_model["coef"]))
    assert np.allclose(kl_points.column("predicted").to_numpy(), 3 * al_points.column("predicted").to_numpy())
    with pytest.raises(ValueError, match="surrogate.target: 'top5'; allowed: al, kl"):
        fit_surrogate(x, samples.column("al").to_numpy(), cands.layer_names, feature_names=["layer_al"],
                      target="top5")
