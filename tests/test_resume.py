"""Resumed passes (``resume``, ``Evaluator.resumed_at``): a sweep row runs only what its layer's output
reaches, and measures exactly what a pass of the whole network does."""
import logging

import numpy as np
import pytest
import timm
import torch
import torchvision
from torch import nn

from weight_sharing.correct import gather_statistics
from weight_sharing.data import Split
from weight_sharing.evaluate import IMAGE_FORWARDS, Evaluator
from weight_sharing.kmeans import kmeans_grid
from weight_sharing.models import shared_layers
from weight_sharing.resume import SplitModel
from weight_sharing.sweep import sweep_layers


def _eca_resnet():
    torch.manual_seed(0)
    return timm.create_model("resnet10t", num_classes=10, block_args={"attn_layer": "eca"}).eval()


def _split(n=48, px=32, channels=3, seed=0):
    rng = np.random.default_rng(seed)
    return Split(rng.integers(0, 256, (n, channels, px, px), dtype=np.uint8), rng.integers(0, 10, n),
                 np.full(channels, 0.5, np.float32), np.full(channels, 0.25, np.float32))


@pytest.mark.parametrize("name", ["eca_resnet10t", "googlenet"])
def test_prefix_then_suffix_is_the_forward_at_every_shared_layer(name):
    """Skip connections (ResNet), parallel branches (Inception), Conv1d attention (ECA) and functional
    ops on parameters all cross the split."""
    if name == "googlenet":
        torch.manual_seed(0)
        model, shape = torchvision.models.googlenet(num_classes=4, aux_logits=False, init_weights=True).eval(), (
            3, 64, 64)
    else:
        model, shape = _eca_resnet(), (3, 32, 32)
    splits = SplitModel(model, shape)
    assert splits.graph_module is not None, splits.reason
    x = torch.randn(3, *shape)
    names = [n for n, _ in shared_layers(model)]
    with torch.no_grad():
        whole = model(x)
        shares = []
        for layer in names:
            s = splits.split(layer)
            assert torch.allclose(s.suffix(*s.prefix(x)), whole, rtol=1e-5, atol=1e-6), layer
            assert layer in s.modules and s.bytes_per_image > 0
            shares.append(s.share)
    assert shares[0] == pytest.approx(1.0)  # the first convolution reaches everything
    assert 0 < shares[-1] < 0.05  # the classifier is a sliver of the network's work
    assert np.mean(shares) < 0.7


def _sweep_evaluator(model, split, batch_size=1000, resume=True, bn="bn"):
    stats_ev = Evaluator(model, split, batch_size=batch_size, device="cpu")
    raw = gather_statistics(stats_ev, second_moment=True)
    statistics = {w: {l: raw[l][w] for l in raw} for w in ("mean", "second")}
    ev = Evaluator(model, split, batch_size=batch_size, device="cpu", corrections=["bias", bn],
                   statistics=statistics, calibration=split, resume=resume)
    ev.reference()  # computed once, before either sweep counts its forwards
    return ev, {l: (statistics["second"][l], statistics["mean"][l]) for l in raw}


def _sweep(ev, layers, refit, resumed):
    ev.resume = resumed
    before = IMAGE_FORWARDS["images"]
    table = sweep_layers(ev, layers, [2, 8], ev.accuracy(), max_bins=1 << 16, refit=refit)[0]
    return table.drop(["seconds"]), IMAGE_FORWARDS["images"] - before


@pytest.mark.parametrize("shift", [False, True])  # correct.bn: true | shift
def test_resumed_sweep_is_the_whole_network_sweep(shift):
    """With every correction on (bias, BatchNorm re-estimation or shift, refit values), the rows are identical
    and the network's work is cut by the layers' shares."""
    from weight_sharing.correct import BatchNormShift

    ev, refit = _sweep_evaluator(_eca_resnet(), _split(), bn=BatchNormShift() if shift else "bn")
    state = {k: v.clone() for k, v in ev.model.state_dict().items()}
    layers = [l for l in ev.originals][1::3]
    assert any(l.endswith("se.conv") for l in layers)
    whole, whole_forwards = _sweep(ev, layers, {l: refit[l] for l in layers}, False)
    resumed, resumed_forwards = _sweep(ev, layers, {l: refit[l] for l in layers}, True)
    assert whole.equals(resumed)
    assert resumed_forwards < 0.8 * whole_forwards
    after = ev.model.state_dict()  # the weights and the BatchNorm statistics are put back
    assert all(torch.equal(v, after[k]) for k, v in state.items())


def test_resumed_passes_refuse_a_layer_before_the_split():
    ev = Evaluator(_eca_resnet(), _split(n=8), batch_size=100, device="cpu")
    first, later = list(ev.originals)[0], list(ev.originals)[5]
    book = kmeans_grid(ev.originals[first].numpy().ravel(), [4])[4]
    with ev.resumed_at(later), pytest.raises(RuntimeError, match=rf"\['{first}'\] come before"):
        ev.apply({first: book})


class _DataDependent(nn.Module):
    """A forward torch.fx cannot trace (a Python branch on a tensor's value)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 10)

    def forward(self, x):
        x = self.conv(x)
        if x.mean() > 0:
            x = x * 2
        return self.fc(x.mean((2, 3)))


class _Reused(nn.Module):
    """A layer the forward calls twice: its two calls cannot be split apart."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.fc = nn.Linear(3, 10)

    def forward(self, x):
        return self.fc(self.conv(self.conv(x)).mean((2, 3)))


class _InPlace(nn.Module):
    """A forward that adds the swept layer's output in place to a value computed before it."""

    def __init__(self):
        super().__init__()
        self.before = nn.Conv2d(3, 3, 3, padding=1)
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.fc = nn.Linear(3, 10)

    def forward(self, x):
        y = self.before(x)
        y.add_(self.conv(x))
        return self.fc(y.mean((2, 3)))


@pytest.mark.parametrize("model, reason", [(_DataDependent(), "torch.fx cannot trace"),
                                           (_Reused(), "calls it 2 times"),
                                           (_InPlace(), "changes a value computed before it in place")])
def test_an_unsplittable_model_runs_the_whole_network(model, reason, caplog):
    ev, refit = _sweep_evaluator(model, _split(n=16, px=8))
    with caplog.at_level(logging.INFO, logger="weight_sharing"):
        resumed, forwards = _sweep(ev, ["conv"], refit, True)
    assert reason in caplog.text
    whole, whole_forwards = _sweep(ev, ["conv"], refit, False)
    assert resumed.equals(whole) and forwards == whole_forwards


def test_batchnorm_over_several_batches_is_resumed_too():
    """BatchNorm statistics re-estimated over several batches take a pass of their own before each
    measurement: resumed, it reads the prefix values the whole network's statistics pass computes (the
    prefix's BatchNorms taking statistics batch by batch), and the rows are the same."""
    ev, refit = _sweep_evaluator(_eca_resnet(), _split(n=24), batch_size=8)
    assert any(c.statistics_pass for c in ev.corrections)
    layers = list(ev.originals)[4:6]
    resumed, forwards = _sweep(ev, layers, refit, True)
    whole, whole_forwards = _sweep(ev, layers, refit, False)
    assert resumed.equals(whole) and forwards < 0.8 * whole_forwards


def test_statistics_from_other_images_run_the_whole_network(caplog):
    """An evaluator whose BatchNorm statistics come from the calibration images (a test-split one) is not
    resumed: its statistics pass runs over another evaluator's images."""
    model = _eca_resnet()
    ev = Evaluator(model, _split(n=8, seed=1), batch_size=100, device="cpu", corrections=["bn"],
                   calibration=_split(n=8))
    with caplog.at_level(logging.INFO, logger="weight_sharing"), ev.resumed_at(list(ev.originals)[3]):
        assert ev._resumed is None
    assert "takes its statistics from other images" in caplog.text
