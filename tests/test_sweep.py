from dataclasses import replace

import numpy as np
import pytest
import torch

from weight_sharing import sweep
from weight_sharing.correct import gather_statistics, refit_centroids
from weight_sharing.data import Split
from weight_sharing.evaluate import Evaluator
from weight_sharing.grid import k_grid, layer_grid, resolve_grid
from weight_sharing.kmeans import kmeans_grid
from weight_sharing.models import LeNet5
from weight_sharing.sweep import cluster_layers, sweep_layers
from weight_sharing.tables import codebook_from_row


def test_paper_grid():
    grid = k_grid(2, 1024, 100)
    assert grid[0] == 2 and grid[-1] == 1024 and grid == sorted(set(grid))
    assert len(grid) == 81  # 100 log-spaced values, rounded, de-duplicated


def test_explicit_grid_and_errors():
    assert resolve_grid({"k_values": [8, 2, 8, 4]}) == [2, 4, 8]
    with pytest.raises(ValueError, match=r"k_values.*\[0\]"):
        resolve_grid({"k_values": [0, 2]})
    with pytest.raises(ValueError, match="k_max"):
        k_grid(8, 4, 10)
    assert layer_grid([2, 16, 64], 20) == [2, 16, 20]


def _evaluator():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    split = Split(rng.integers(0, 256, (64, 1, 28, 28), dtype=np.uint8), rng.integers(0, 10, 64),
                  np.array([0.5], np.float32), np.array([0.25], np.float32))
    return Evaluator(LeNet5(), split, batch_size=32, device="cpu")


def test_parallel_clustering_gives_the_same_sweep():
    ev = _evaluator()
    base = ev.accuracy()
    layers = ["conv1", "conv2", "fc1", "fc3"]
    serial, secs1, _ = sweep_layers(ev, layers, [2, 4, 16, 256], base, max_bins=1 << 16, workers=1)
    parallel, secs2, _ = sweep_layers(ev, layers, [2, 4, 16, 256], base, max_bins=1 << 16, workers=3)
    overlapped, secs3, _ = sweep_layers(ev, layers, [2, 4, 16, 256], base, max_bins=1 << 16, workers=2,
                                        overlap=True)
    assert serial.drop(["seconds"]).equals(parallel.drop(["seconds"]))
    assert serial.drop(["seconds"]).equals(overlapped.drop(["seconds"]))
    assert list(secs1) == list(secs2) == list(secs3) == layers
    # rows in layer order, K capped at the layer's size (conv1 has 150 weights)
    assert serial.column("layer").to_pylist()[:4] == ["conv1"] * 4
    assert serial.column("k").to_pylist()[:4] == [2, 4, 16, 150]
    # the weights are restored after the sweep
    assert ev.accuracy() == base


def test_refit_values_kept_only_where_the_network_kl_is_lower(monkeypatch):
    """correct.centroids: each row keeps the refit values only where they lower the network's KL,
    and a row's KL is the network measured with the values it stores."""
    ev = _evaluator()
    base = ev.accuracy()
    layers, grid = ["conv1", "conv2", "fc1", "fc3"], [2, 4, 16]
    stats = gather_statistics(ev, second_moment=True)
    refit = {l: (stats[l]["second"], None) for l in layers}
    plain = sweep_layers(ev, layers, grid, base, max_bins=1 << 16)[0].to_pylist()
    rows = sweep_layers(ev, layers, grid, base, max_bins=1 << 16, refit=refit)[0].to_pylist()
    assert not any(r["refit"] for r in plain) and all(r["refit_kl"] is None for r in plain)
    assert 0 < sum(r["refit"] for r in rows) < len(rows)  # both outcomes occur here
    books = {}
    for l in layers:
        w = ev.originals[l].numpy()
        books.update({(l, k): cb for k, cb in kmeans_grid(w.ravel(), layer_grid(grid, w.size)).items()})
    for p, r in zip(plain, rows):
        assert (r["layer"], r["k"]) == (p["layer"], p["k"])
        assert r["kmeans_kl"] == p["kl"]  # the k-means values measured either way
        assert r["kl"] == min(r["kmeans_kl"], r["refit_kl"])
        cb = books[r["layer"], r["k"]]
        if r["refit"]:
            expected = refit_centroids(ev.originals[r["layer"]], cb, stats[r["layer"]]["second"])
            assert np.allclose(r["centroids"], expected.centroids, rtol=1e-6, atol=1e-7)
            assert r["kl"] < r["kmeans_kl"]
        else:
            assert r["centroids"] == p["centroids"] and r["kl"] == p["kl"]
        with ev.applied({r["layer"]: codebook_from_row(r)}):
            assert ev.measure().kl == pytest.approx(r["kl"], rel=1e-9, abs=1e-15)
    # a refit that hurts everywhere is never kept: the sweep is the plain one
    monkeypatch.setattr(sweep, "refit_centroids", lambda w, cb, *a, **kw: replace(cb, centroids=3 * cb.centroids))
    hurt = sweep_layers(ev, layers, grid, base, max_bins=1 << 16, refit=refit)[0].to_pylist()
    assert not any(r["refit"] for r in hurt)
    same = ("centroids", "kl", "inertia")
    assert [[r[c] for c in same] for r in hurt] == [[p[c] for c in same] for p in plain]


class _BatchNormFed(torch.nn.Module):
    """conv1 feeds a BatchNorm; conv2 reaches one only through a ReLU; conv3 is called twice, once into a
    BatchNorm and once not; fc feeds none."""

    def __init__(self):
        super().__init__()
        nn = torch.nn
        self.conv1, self.bn1 = nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4)
        self.conv2, self.bn2 = nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4)
        self.conv3, self.bn3 = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 10)

    def forward(self, x):
        x = self.bn1(self.conv1(x))
        x = self.bn2(torch.relu(self.conv2(x)))
        x = self.bn3(self.conv3(x)) + self.conv3(x)
        return self.fc(x.mean((2, 3)))


def test_batchnorm_fed_layers_are_those_whose_output_is_a_batchnorms_input():
    from weight_sharing.models import batchnorm_fed_layers

    torch.manual_seed(0)
    assert batchnorm_fed_layers(_BatchNormFed(), (1, 12, 12)) == ["conv1"]
    assert batchnorm_fed_layers(LeNet5(), (1, 28, 28)) == []


@pytest.mark.parametrize("centroids, bn, refit", [(True, True, {"conv1", "conv2", "conv3", "fc"}),
                                                  ("unnormalized", True, {"conv2", "conv3", "fc"}),
                                                  ("unnormalized", False, {"conv1", "conv2", "conv3", "fc"}),
                                                  (False, True, set())])
def test_refit_scope_unnormalized_keeps_k_means_values_where_a_reestimated_batchnorm_follows(
        monkeypatch, centroids, bn, refit):
    """correct.centroids: unnormalized: the layers feeding a BatchNorm that correct.bn re-estimates get one
    measurement per row (k-means values, no refit KL); every other layer is refit and checked as before."""
    from weight_sharing.evaluate import EvaluationSpec

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    split = Split(rng.integers(0, 256, (48, 1, 12, 12), dtype=np.uint8), rng.integers(0, 10, 48),
                  np.array([0.5], np.float32), np.array([0.25], np.float32))
    ev = Evaluator(_BatchNormFed().eval(), split, batch_size=48, device="cpu")
    layers = list(ev.originals)
    stats = gather_statistics(ev, second_moment=True)
    spec = EvaluationSpec(model={}, data="", correct={"centroids": centroids, "bn": bn})
    monkeypatch.setattr(EvaluationSpec, "read_statistics",
                        lambda self, what, names: {l: stats[l][what] for l in names})
    statistics = sweep.refit_statistics(spec, layers, ev)
    if not refit:
        assert statistics is None
        return
    assert {l for l, s in statistics.items() if s is not None} == refit
    rows = sweep_layers(ev, layers, [2, 4], ev.accuracy(), max_bins=1 << 16, refit=statistics)[0].to_pylist()
    assert {r["layer"] for r in rows if r["refit_kl"] is not None} == refit
    assert not any(r["refit"] for r in rows if r["layer"] not in refit)


def test_refit_scope_rejects_unknown_values():
    with pytest.raises(ValueError, match=r"correct.centroids: 'some'; allowed: true, false, unnormalized"):
        sweep.refit_scope({"centroids": "some"})


def test_sweep_rejects_unknown_layer():
    with pytest.raises(ValueError, match=r"\['nope'\] are not shared layers"):
        sweep_layers(_evaluator(), ["conv1", "nope"], [2], 0.1, max_bins=1 << 16)


def test_cluster_layers_in_order_and_errors_propagate():
    rng = np.random.default_rng(1)
    weights = {f"l{i}": rng.normal(size=500 + 100 * i) for i in range(5)}
    got = list(cluster_layers(weights, [2, 8], 1 << 16, workers=2))
    assert [g[0] for g in got] == list(weights)
    for name, books, seconds in got:
        ref = kmeans_grid(weights[name], [2, 8])
        assert np.array_equal(books[1, 8].centroids, ref[8].centroids) and seconds >= 0
        assert set(books) == {(1, 2), (1, 8)}  # per tensor only by default
    # grouped: a 2-D layer of 10 rows of 40 in groups of 4 gets the per-tensor and the 3-group codebooks
    # (at K = 8: 400 x 3 + 3 x 8 x 32 = 1,968 bits, below 400 x 4 + 16 x 32 = 2,112 per tensor at 4 bits)
    grouped = dict((n, b) for n, b, _ in cluster_layers({"w": rng.normal(size=(10, 40))}, [2, 8], 1 << 16,
                                                        granularity="grouped_channel", group=4))["w"]
    assert set(grouped) == {(1, 2), (1, 8), (3, 2), (3, 8)} and grouped[3, 8].groups == 3
    weights["l2"] = np.array([1.0, np.nan])
    with pytest.raises(ValueError, match="NaN"):
        list(cluster_layers(weights, [2], 1 << 16, workers=2))
    with pytest.raises(ValueError, match="workers must be >= 1, got 0"):
        list(cluster_layers(weights, [2], 1 << 16, workers=0))


def test_compiled_evaluation_gives_the_same_measurements():
    """evaluation.compile: torch.compile'd forward measures what the eager one does."""
    ev = _evaluator()
    compiled = Evaluator(ev.model, Split(ev.host_x, ev.y.numpy(), np.array([0.5], np.float32),
                                         np.array([0.25], np.float32)), batch_size=32, device="cpu", compile=True)
    books = {"fc1": kmeans_grid(ev.originals["fc1"].numpy().ravel(), [4])[4]}
    for e in (ev, compiled):
        e.apply(books)
    a, b = ev.measure(), compiled.measure()
    assert a.accuracy == b.accuracy and a.changed == b.changed
    assert b.kl == pytest.approx(a.kl, rel=1e-4, abs=1e-7) and a.kl > 0


def test_kl_and_paired_counts_against_a_direct_computation():
    """measure(): mean KL(p_base || p_shared), changed, broken and fixed, computed batch by batch,
    equal a direct computation on the whole split's logits."""
    ev = _evaluator()
    x = (torch.from_numpy(np.array(ev.host_x)).float() - ev.mean) / ev.std
    with torch.no_grad():
        base_logits = ev.model(x)
        books = {"conv2": kmeans_grid(ev.originals["conv2"].numpy().ravel(), [3])[3]}
        ev.apply(books)
        shared_logits = ev.model(x)
    m = ev.measure()
    p = torch.softmax(base_logits.double(), 1)
    direct = (p * (torch.log_softmax(base_logits.double(), 1) - torch.log_softmax(shared_logits.double(), 1))).sum(1)
    assert m.kl == pytest.approx(float(direct.mean()), rel=1e-5) and m.kl > 0
    b, s, y = base_logits.argmax(1), shared_logits.argmax(1), ev.y
    assert m.changed == float((b != s).float().mean())
    assert m.broken == int(((b == y) & (s != y)).sum()) and m.fixed == int(((b != y) & (s == y)).sum())
    assert m.accuracy == float((s == y).float().mean())
    ev.restore()
    assert ev.measure().kl == 0.0 and ev.measure().changed == 0.0
