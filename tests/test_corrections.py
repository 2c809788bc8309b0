"""Grouped-channel codebooks, bias correction and data-aware centroids: the math against direct
computations, and the round trip through export and load."""

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from weight_sharing.compression import compression_rate
from weight_sharing.correct import (
    CorrectionInputs,
    LayerStatistics,
    bias_shift,
    gather_statistics,
    output_error,
    read_decisions,
    refit_centroids,
)
from weight_sharing.data import Split
from weight_sharing.evaluate import Evaluator
from weight_sharing.kmeans import kmeans_grid
from weight_sharing.models import build_model, create_model, shared_layers
from weight_sharing.packed import export_compressed, load_compressed
from weight_sharing.sharing import (
    assign_weight,
    codebook_values,
    grouped_codebooks,
    grouped_ks,
    layer_group_counts,
    shared_weight,
)
from weight_sharing.sweep import layer_codebooks


def test_cr_with_grouped_codebooks_by_hand():
    # the seed's example is unchanged with one codebook per layer
    assert round(compression_rate([25], [5], [1]), 2) == 3.40
    # layer a: 1,000 weights at K = 4 in 3 codebooks; layer b: 200 weights at K = 16, 1 codebook
    bits = 1000 * 2 + 3 * 4 * 32 + 200 * 4 + 1 * 16 * 32
    assert compression_rate([1000, 200], [4, 16], [3, 1]) == pytest.approx(1200 * 32 / bits)


def test_grouped_codebooks_uneven_last_group():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(10, 3, 3, 3)).astype(np.float32)
    w[8:] = np.round(w[8:])  # the last group (2 channels) has few distinct values: padded codebook
    books = grouped_codebooks(w, [4, 16], group=4, max_bins=1 << 16)
    for k, cb in books.items():
        assert cb.groups == 3 and cb.group == 4 and cb.centroids.shape[0] == 3
        idx = assign_weight(w, cb)
        shared = codebook_values(idx, cb)
        # each group is the optimal k-means of that group's weights alone
        for rows in (slice(0, 4), slice(4, 8), slice(8, 10)):
            alone = kmeans_grid(w[rows].ravel(), [k])[k]
            assert np.sum((w[rows] - shared[rows]) ** 2) == pytest.approx(alone.inertia, rel=1e-5, abs=1e-7)
            assert len(np.unique(shared[rows])) <= k
        # the torch path (evaluation) gives the same indices and values as the numpy path (export)
        t_idx, t_shared = shared_weight(torch.from_numpy(w), cb)
        assert np.array_equal(t_idx.numpy(), idx) and np.array_equal(t_shared.numpy(), shared)
    assert layer_group_counts((10, 3, 3, 3), "grouped_channel", 4) == [1, 3]
    assert layer_group_counts((4, 3), "grouped_channel", 4) == [1]  # one group: per tensor only
    assert layer_group_counts((10, 3), "tensor", 4) == [1]


def test_grouped_codebooks_are_swept_only_where_smaller_than_the_next_bit_width():
    # LeNet-5's fc1, one codebook per output channel: 48,000 weights, 120 codebooks. At K = 8: 3 bits
    # x 48,000 + 120 x 8 x 32 = 174,720 bits against 4 bits x 48,000 + 16 x 32 = 192,512 per tensor;
    # at K = 16: 4 x 48,000 + 120 x 16 x 32 = 253,440 against 5 x 48,000 + 32 x 32 = 241,024
    assert grouped_ks([2, 4, 8, 16, 1024], 48000, 120) == [2, 4, 8]
    # K = 3 has 2-bit indices: compared with the 3-bit tensor codebook (8 values)
    assert grouped_ks([3], 100, 2) == [3] and grouped_ks([3], 100, 60) == []
    # a depthwise 3x3 layer with one codebook per channel: 9 weights a codebook, never worth it
    assert grouped_ks([2, 4], 9 * 32, 32) == []
    w = np.random.default_rng(0).normal(size=(120, 400)).astype(np.float32)
    books = layer_codebooks(w, [2, 4, 8, 16, 32], 1 << 16, "grouped_channel", 1)
    assert sorted(books) == [(1, 2), (1, 4), (1, 8), (1, 16), (1, 32), (120, 2), (120, 4), (120, 8)]
    assert sorted(layer_codebooks(w[:, :9], [2, 4], 1 << 16, "grouped_channel", 1)) == [(1, 2), (1, 4)]


@pytest.mark.parametrize("conv", [
    dict(in_channels=4, out_channels=6, kernel_size=3, padding=1),
    dict(in_channels=4, out_channels=8, kernel_size=3, stride=2, padding=1, groups=2, bias=False),
    dict(in_channels=4, out_channels=4, kernel_size=3, padding=2, dilation=2, groups=4),  # depthwise
    dict(in_channels=4, out_channels=5, kernel_size=(1, 3), padding="same", padding_mode="reflect"),
])
def test_statistics_give_the_mean_output_of_a_convolution(conv):
    torch.manual_seed(0)
    layer = nn.Conv2d(**conv).eval()
    x = torch.randn(7, 4, 9, 9) + 0.3
    stats = LayerStatistics(second_moment=True)
    stats.add(layer, x)
    t = stats.tensors()
    with torch.no_grad():
        out = layer(x)
        bias = layer.bias if layer.bias is not None else torch.zeros(layer.out_channels)
        # E[out_c] - b_c = W_c . E[x]: the same as a bias shift of the whole weight
        mean_out = out.mean((0, 2, 3)).double() - bias.double()
        assert torch.allclose(bias_shift(layer.weight, torch.zeros_like(layer.weight), torch.from_numpy(t["mean"])),
                              mean_out, atol=1e-5)
        # second moment: E[out_c^2] of the bias-free output = w_c^T S w_c
        sq = ((out - bias[None, :, None, None]) ** 2).mean((0, 2, 3)).double()
        w = layer.weight.double().reshape(layer.out_channels, -1)
        s = torch.from_numpy(t["second"])[torch.arange(layer.out_channels) // (layer.out_channels // s_groups(t))]
        assert torch.allclose(torch.einsum("ri,rij,rj->r", w, s, w), sq, rtol=1e-4, atol=1e-6)


def s_groups(t):
    return t["second"].shape[0]


def test_timm_same_padding_statistics():
    from timm.layers import Conv2dSame

    torch.manual_seed(0)
    layer = Conv2dSame(3, 5, 3, stride=2).eval()
    x = torch.randn(4, 3, 10, 10)
    stats = LayerStatistics(second_moment=False)
    stats.add(layer, x)
    with torch.no_grad():
        mean_out = layer(x).mean((0, 2, 3)).double() - layer.bias.double()
        shift = bias_shift(layer.weight, torch.zeros_like(layer.weight), torch.from_numpy(stats.tensors()["mean"]))
    assert torch.allclose(shift, mean_out, atol=1e-5)


def direct_refit(w, idx, x_rows, k):
    """Least squares over the layer's outputs on the sample rows themselves: sum_r ||X w_r - X A_r c||^2."""
    out = w.shape[0]
    design = np.concatenate([x_rows @ np.eye(k)[idx[r]] for r in range(out)])  # (out * n, k)
    target = np.concatenate([x_rows @ w[r] for r in range(out)])
    return np.linalg.lstsq(design, target, rcond=None)[0]


@pytest.mark.parametrize("grouped", [False, True])
def test_refit_centroids_is_the_least_squares_optimum(grouped):
    rng = np.random.default_rng(1)
    layer = nn.Linear(6, 5, bias=False)
    w = rng.normal(size=(5, 6)).astype(np.float32)
    x = (rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6)) + 0.5).astype(np.float32)  # correlated inputs
    stats = LayerStatistics(second_moment=True)
    stats.add(layer, torch.from_numpy(x))
    t = stats.tensors()
    cb = grouped_codebooks(w, [3], 2, 1 << 16)[3] if grouped else kmeans_grid(w.ravel(), [3])[3]
    refit = refit_centroids(w, cb, t["second"])
    idx = assign_weight(w, cb)
    assert np.array_equal(assign_weight(w, refit), idx)  # the assignment is kept
    before = output_error(w, codebook_values(idx, cb), t["second"])
    after = output_error(w, codebook_values(idx, refit), t["second"])
    assert after < before
    rows = np.arange(5) // 2 if grouped else np.zeros(5, int)
    for g in range(cb.groups):
        sel = rows == g
        expected = direct_refit(w[sel].astype(np.float64), idx[sel], x.astype(np.float64), cb.size)
        got = refit.centroids[g] if grouped else refit.centroids
        assert np.allclose(got, expected, rtol=1e-4, atol=1e-5)
    # with the bias corrected too, the fit is on the covariance: the mean error is the bias's job
    centred = refit_centroids(w, cb, t["second"], t["mean"])
    xc = (x - x.mean(0)).astype(np.float64)
    for g in range(cb.groups):
        sel = rows == g
        expected = direct_refit(w[sel].astype(np.float64), idx[sel], xc, cb.size)
        got = centred.centroids[g] if grouped else centred.centroids
        assert np.allclose(got, expected, rtol=1e-4, atol=1e-5)


def digits_split(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return Split(x=rng.integers(0, 256, (n, 1, 32, 32), dtype=np.uint8), y=rng.integers(0, 10, n),
                 mean=np.full(1, 0.5, np.float32), std=np.full(1, 0.25, np.float32))


def test_bias_correction_keeps_the_first_layer_mean_output():
    torch.manual_seed(0)
    model = create_model({"source": "builtin", "arch": "lenet5"}).eval()
    split = Split(x=digits_split().x[:, :, 2:30, 2:30].copy(), y=digits_split().y, mean=np.full(1, 0.5, np.float32),
                  std=np.full(1, 0.25, np.float32))
    names = [n for n, _ in shared_layers(model)]
    stats = gather_statistics(Evaluator(model, split, device="cpu"), second_moment=False)
    ev = Evaluator(model, split, device="cpu", corrections=["bias"],
                   statistics={"mean": {n: s["mean"] for n, s in stats.items()}})
    conv1 = ev.layers["conv1"]
    outputs = []
    hook = conv1.register_forward_hook(lambda m, a, o: outputs.append(o.mean((0, 2, 3))))
    ev.predictions()
    books = {n: kmeans_grid(ev.originals[n].numpy().ravel(), [2])[2] for n in names}
    with ev.applied(books):
        ev.predictions()
    hook.remove()
    assert torch.allclose(outputs[0], outputs[1], atol=1e-5)  # the shift is corrected exactly
    plain = Evaluator(create_model({"source": "builtin", "arch": "lenet5"}).eval(), split, device="cpu")
    plain.model.load_state_dict(model.state_dict())
    assert ev.measure().kl < 1e-12  # restored: the unmodified network
    with plain.applied(books):
        kl_plain = plain.measure().kl
    with ev.applied(books):
        kl_corrected = ev.measure().kl
    assert kl_corrected != kl_plain


def test_grouped_and_bias_corrected_export_roundtrip(tmp_path):
    """Grouped codebooks on depthwise, pointwise and Linear layers (channel counts not multiples of the
    group), bias correction on layers built without a bias, refit values: the file alone reproduces the
    evaluated model's predictions and weights."""
    arch = {"source": "timm", "arch": "mobilenetv3_small_050", "kwargs": {"in_chans": 1, "num_classes": 10}}
    torch.manual_seed(0)
    model = create_model(arch).eval()
    split = digits_split()
    layers = shared_layers(model)
    kinds = {n: (m.groups > 1 if isinstance(m, nn.Conv2d) else "linear") for n, m in layers}
    assert True in kinds.values() and "linear" in kinds.values()  # depthwise and Linear layers are there
    stats = gather_statistics(Evaluator(model, split, device="cpu"), second_moment=True)
    calib = digits_split(seed=1)
    ev = Evaluator(copy.deepcopy(model), split, device="cpu", corrections=["bias", "bn"],
                   statistics={"mean": {n: s["mean"] for n, s in stats.items()}}, calibration=calib)
    group = 5
    books, uneven = {}, 0
    for i, (name, _) in enumerate(layers):
        w = ev.originals[name].numpy()
        k = 4 if i % 2 else 16
        grouped = w.shape[0] > group and i % 3  # every third layer keeps one codebook
        cb = grouped_codebooks(w, [k], group, 1 << 16)[k] if grouped else kmeans_grid(w.ravel(), [k])[k]
        uneven += bool(cb.group and w.shape[0] % group)
        books[name] = refit_centroids(w, cb, stats[name]["second"], stats[name]["mean"])
    assert uneven > 0
    ev.apply(books)
    expected = ev.predictions()
    logits = ev.model(torch.zeros(1, 1, 32, 32))
    overrides = {f"{n}.bias": m.bias.detach().numpy() for n, m in ev.layers.items()}
    overrides.update({k: v.numpy() for k, v in ev.model.state_dict().items() if "running_" in k})
    path = tmp_path / "m.safetensors"
    export_compressed(model, books, arch, path, overrides=overrides)
    loaded, meta = load_compressed(path)
    assert any(l.get("bias_added") for l in meta["shared_layers"])
    assert {l["group"] for l in meta["shared_layers"]} == {0, group}
    for (name, m), (_, m2) in zip(shared_layers(ev.model), shared_layers(loaded)):
        assert torch.equal(m.weight, m2.weight) and torch.equal(m.bias, m2.bias), name
    assert torch.equal(Evaluator(loaded, split, device="cpu").predictions(), expected)
    assert torch.equal(loaded(torch.zeros(1, 1, 32, 32)), logits)
    # the stored index stream holds ceil(log2 K) bits per weight, whatever the grouping
    from safetensors.numpy import load_file

    tensors = load_file(str(path))
    for name, m in layers:
        assert tensors[name + ".weight.indices"].nbytes == -(-m.weight.numel() * (2 if books[name].k == 4 else 4) // 8)
        want = (books[name].groups, books[name].size) if books[name].group else (books[name].size,)
        assert tensors[name + ".weight.codebook"].shape == want, name


def test_shared_weight_depthwise_matches_conv():
    """A grouped codebook applied to a depthwise layer computes what a convolution with those weights does."""
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 6, 3, groups=6, padding=1, bias=False)
    cb = grouped_codebooks(conv.weight.detach().numpy(), [2], 4, 1 << 16)[2]
    _, shared = shared_weight(conv.weight.detach(), cb)
    x = torch.randn(2, 6, 5, 5)
    for c in range(6):
        assert len(torch.unique(shared[(c // 4) * 4:(c // 4 + 1) * 4])) <= 2
    assert torch.allclose(F.conv2d(x, shared, padding=1, groups=6),
                          F.conv2d(x, torch.from_numpy(codebook_values(assign_weight(conv.weight.detach().numpy(), cb),
                                                                       cb)), padding=1, groups=6))


def _conv_with_statistics(seed: int, out_channels: int, images: int):
    """Random 3x3 convolution weights (out, 4, 3, 3) and the input statistics of random images."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(out_channels, 4, 3, 3)).astype(np.float32)
    x = torch.from_numpy((rng.normal(size=(images, 4, 8, 8)) + 0.2).astype(np.float32))
    stats = LayerStatistics(second_moment=True)
    stats.add(nn.Conv2d(4, out_channels, 3, padding=1), x)
    return w, stats.tensors()


def test_refit_by_conjugate_gradients_matches_the_direct_solution(monkeypatch):
    """Large layers are refit iteratively (the cost does not grow with K): same values as the direct solve."""
    import weight_sharing.correct as correct

    w, t = _conv_with_statistics(3, 12, 30)
    for cb in (kmeans_grid(w.ravel(), [16])[16], grouped_codebooks(w, [8], 5, 1 << 16)[8]):
        direct = refit_centroids(w, cb, t["second"], t["mean"])
        monkeypatch.setattr(correct, "DIRECT_MAX_WORK", 0)
        iterative = refit_centroids(w, cb, t["second"], t["mean"])
        monkeypatch.undo()
        assert np.allclose(iterative.centroids, direct.centroids, rtol=1e-4, atol=1e-5)
        assert not np.allclose(direct.centroids, cb.centroids, atol=1e-4)  # the refit moved the values


def test_grouped_refit_converges_per_codebook(monkeypatch):
    """One codebook per channel: the system is one K x K block per channel, and conjugate gradients run
    per block reach the direct solution in about K steps, not in the G x K steps of one joint run."""
    import weight_sharing.correct as correct

    w, t = _conv_with_statistics(4, 24, 40)
    cb = grouped_codebooks(w, [4], 1, 1 << 16)[4]
    direct = refit_centroids(w, cb, t["second"])
    monkeypatch.setattr(correct, "DIRECT_MAX_WORK", 0)
    monkeypatch.setattr(correct, "CG_MAX_STEPS", 6)  # K = 4 values per block, 24 blocks
    iterative = refit_centroids(w, cb, t["second"])
    assert np.allclose(iterative.centroids, direct.centroids, rtol=1e-4, atol=1e-5)


def test_batchnorm_reestimated_on_calibration_images_and_restored():
    torch.manual_seed(0)
    model = create_model({"source": "timm", "arch": "resnet10t", "kwargs": {"in_chans": 1, "num_classes": 10}})
    model.eval()
    calib, test = digits_split(seed=1), digits_split(seed=2)
    ev = Evaluator(model, test, device="cpu", corrections=["bn"], calibration=calib, batch_size=16)
    bn = ev.corrections[0].batchnorms[0]
    saved = bn.running_mean.clone()
    names = [n for n, _ in shared_layers(model)]
    books = {names[0]: kmeans_grid(ev.originals[names[0]].numpy().ravel(), [2])[2]}
    captured = []
    ev.apply(books)
    # the first BatchNorm's statistics: the cumulative average of its input's batch means on the
    # calibration images (its input, the shared first convolution's output, is the same in eval mode)
    hook = bn.register_forward_pre_hook(lambda m, a: captured.append(a[0].mean((0, 2, 3))))
    Evaluator(ev.model, calib, device="cpu", batch_size=16).predictions()
    hook.remove()
    assert len(captured) == 3  # 40 images in batches of 16
    assert torch.allclose(bn.running_mean, torch.stack(captured).mean(0), atol=1e-6)
    assert not torch.allclose(bn.running_mean, saved)
    ev.restore()
    assert torch.equal(bn.running_mean, saved)


def test_a_registered_correction_reaches_the_spec_the_snakefile_and_the_export(monkeypatch, tiny_npz,
                                                                               lenet_checkpoint, tmp_path):
    """The protocol is all the rest knows of a correction: one registered here is planned (its statistics),
    prepared from the calibration file, applied after the codebooks, undone, and its tensors exported."""
    from safetensors.numpy import save_file

    from weight_sharing.correct import CORRECTIONS, Correction, needed_statistics
    from weight_sharing.evaluate import EvaluationSpec

    class OutputShift(Correction):
        """Adds each shared layer's mean input (a toy rule) to the bias of fc3 while codebooks are applied."""

        key = "output_shift"
        statistics = ("mean",)

        def prepare(self, evaluator, inputs):
            self.shift = float(np.mean(inputs.statistics["mean"]["fc3"]))
            self.saved = evaluator.layers["fc3"].bias.detach().clone()

        def apply(self, evaluator, names):
            evaluator.layers["fc3"].bias.data += self.shift

        def restore(self, evaluator, names):
            evaluator.layers["fc3"].bias.data.copy_(self.saved)

        def export_tensors(self, evaluator):
            return {"fc3.bias": evaluator.layers["fc3"].bias.detach().numpy().copy()}

    monkeypatch.setitem(CORRECTIONS, OutputShift.key, OutputShift)
    assert needed_statistics({"output_shift": True}) == ("mean",)
    assert needed_statistics({"output_shift": False}) == ()
    stats = tmp_path / "calibration.safetensors"
    save_file({"fc3.mean": np.full((1, 84), 0.5)}, str(stats))
    model = {"source": "builtin", "arch": "lenet5", "checkpoint": str(lenet_checkpoint)}
    spec = EvaluationSpec(model=model, data=str(tiny_npz), engine={"device": "cpu"},
                          correct={"output_shift": True}, statistics=str(stats))
    ev = spec.evaluator("test", ["fc3"])
    before = ev.layers["fc3"].bias.detach().clone()
    books = {"fc3": kmeans_grid(ev.originals["fc3"].numpy().ravel(), [4])[4]}
    ev.apply(books)
    assert torch.allclose(ev.layers["fc3"].bias, before + 0.5)
    assert np.allclose(ev.export_tensors()["fc3.bias"], before.numpy() + 0.5)
    ev.restore()
    assert torch.equal(ev.layers["fc3"].bias, before)
    with pytest.raises(ValueError, match="no calibration statistics file"):
        EvaluationSpec(model=model, data=str(tiny_npz), correct={"output_shift": True}).evaluator("test", ["fc3"])


def test_conv1d_statistics_are_its_unfolded_inputs():
    """timm's ECA attention: a Conv1d over the channel axis; its input rows are the length-k windows."""
    from weight_sharing.correct import input_rows

    torch.manual_seed(0)
    conv = nn.Conv1d(1, 1, 3, padding=1, bias=False)
    x = torch.randn(4, 1, 7)
    rows = torch.cat(list(input_rows(conv, x)))
    padded = F.pad(x, (1, 1))
    want = torch.stack([padded[n, 0, i:i + 3] for n in range(4) for i in range(7)])
    assert rows.shape == (28, 1, 3) and torch.allclose(rows[:, 0], want)
    # each row times the weight is the layer's output
    assert torch.allclose((rows[:, 0] @ conv.weight.detach().view(3)).view(4, 7), conv(x).detach().view(4, 7),
                          atol=1e-6)
    stats = LayerStatistics(second_moment=True)
    stats.add(conv, x)
    t = stats.tensors()
    assert np.allclose(t["mean"][0], want.double().mean(0).numpy())
    with pytest.raises(TypeError, match="Conv3d is not one of Linear, Conv1d, Conv2d"):
        next(input_rows(nn.Conv3d(1, 1, 3), torch.randn(1, 1, 4, 4, 4)))


def test_batchnorm_reestimation_leaves_a_head_the_forward_never_calls_alone():
    """An auxiliary head's BatchNorm sees no calibration image: its statistics are kept, not reset, so the
    export stores them as they were."""

    class WithHead(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4)
            self.aux_bn = nn.BatchNorm2d(4)  # a training-only head
            self.fc = nn.Linear(4, 10)

        def forward(self, x):
            return self.fc(torch.relu(self.bn(self.conv(x))).mean((2, 3)))

    torch.manual_seed(0)
    model = WithHead().eval()
    with torch.no_grad():
        for bn in (model.bn, model.aux_bn):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            bn.num_batches_tracked.fill_(100)
    saved = model.aux_bn.running_mean.clone()
    calib = Split(x=np.random.default_rng(0).integers(0, 256, (20, 1, 8, 8), dtype=np.uint8), y=np.zeros(20, int),
                  mean=np.array([0.5], np.float32), std=np.array([0.25], np.float32))
    ev = Evaluator(model, calib, device="cpu", layers=["conv", "fc"], corrections=["bn"], calibration=calib)
    ev.apply({"conv": kmeans_grid(ev.originals["conv"].numpy().ravel(), [2])[2]})
    tensors = ev.export_tensors()  # runs the pass the re-estimation waits for
    assert int(model.bn.num_batches_tracked) == 1  # re-estimated on the 20 images (one batch)
    assert torch.equal(model.aux_bn.running_mean, saved) and int(model.aux_bn.num_batches_tracked) == 100
    assert torch.equal(torch.from_numpy(tensors["aux_bn.running_mean"]), saved)


def _bn_net():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, groups=8),
                          nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 10)).eval()
    with torch.no_grad():
        for bn in (model[1], model[4]):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2)
    return model


@pytest.mark.parametrize("shift", [False, True])  # correct.bn: true | shift
def test_batchnorm_reestimation_in_the_measuring_pass_equals_a_separate_pass(shift):
    """On the calibration split in one batch, the re-estimation rides on the measurement: one pass instead
    of two, with the same statistics and the same logits bit for bit as the statistics pass followed by an
    eval pass (the path of the test split and of calibration in several batches)."""
    from weight_sharing.correct import BatchNormReestimation, BatchNormShift

    kind = BatchNormShift if shift else BatchNormReestimation
    from weight_sharing import evaluate

    rng = np.random.default_rng(0)
    calib = Split(x=rng.integers(0, 256, (64, 1, 8, 8), dtype=np.uint8), y=rng.integers(0, 10, 64),
                  mean=np.array([0.5], np.float32), std=np.array([0.25], np.float32))
    runs = {}
    for fused in (True, False):
        model = _bn_net()
        # batch_size 64: the split is one batch (fused); the separate path gets a distinct calibration
        # evaluator over the same images, as the test split's evaluator does
        other = Split(x=calib.x, y=calib.y, mean=calib.mean, std=calib.std)
        ev = Evaluator(model, calib, batch_size=64, device="cpu", layers=["0", "3", "7"], corrections=[kind()],
                       calibration=calib if fused else other)
        assert ev.corrections[0].defers_to_pass == fused
        ev.reference()
        books = {n: kmeans_grid(ev.originals[n].numpy().ravel(), [3])[3] for n in ("0", "3")}
        before = evaluate.IMAGE_FORWARDS["images"]
        with ev.applied(books):
            m = ev.measure()
            stats = {k: v.copy() for k, v in ev.export_tensors().items()}
            logits = ev.model(torch.from_numpy((calib.x.astype(np.float32) - 127.5) / 63.75)).detach()
        runs[fused] = (m, stats, logits, evaluate.IMAGE_FORWARDS["images"] - before)  # the logits call: not counted
        # restored: the original statistics are back
        assert torch.equal(model[1].running_mean, _bn_net()[1].running_mean)
    (m1, s1, l1, n1), (m2, s2, l2, n2) = runs[True], runs[False]
    assert n1 == 64 and n2 == 128  # one pass over the 64 images instead of two
    assert m1 == m2
    assert s1.keys() == s2.keys() and all(np.array_equal(s1[k], s2[k]) for k in s1)
    assert not np.allclose(s1["1.running_mean"], _bn_net()[1].running_mean.numpy())  # re-estimated
    assert torch.equal(l1, l2)


def test_batchnorm_shift_is_the_trained_network_where_sharing_changes_nothing_and_moves_it_by_the_change():
    """``correct.bn: shift``: a codebook after every BatchNorm leaves the trained statistics exactly (plain
    re-estimation refits them to the calibration images anyway); a codebook before one moves its mean by the
    change of its input's mean and its variance by the ratio of its input's variances, on the same images."""
    from weight_sharing.correct import BatchNormShift, enabled_corrections

    assert enabled_corrections({"bn": "shift"}) == [BatchNormShift]
    rng = np.random.default_rng(3)
    calib = Split(x=rng.integers(0, 256, (64, 1, 8, 8), dtype=np.uint8), y=rng.integers(0, 10, 64),
                  mean=np.array([0.5], np.float32), std=np.array([0.25], np.float32))
    images = torch.from_numpy((calib.x.astype(np.float32) - 127.5) / 63.75)
    trained = _bn_net()
    plain = Evaluator(_bn_net(), calib, device="cpu", layers=["0", "3", "7"], corrections=["bn"], calibration=calib)
    ev = Evaluator(_bn_net(), calib, device="cpu", layers=["0", "3", "7"], corrections=[BatchNormShift()],
                   calibration=calib)
    head = {"7": kmeans_grid(ev.originals["7"].numpy().ravel(), [4])[4]}
    for e in (plain, ev):
        e.apply(head)
        e.measure()
    for i in (1, 4):
        assert torch.equal(ev.model[i].running_mean, trained[i].running_mean)
        assert torch.equal(ev.model[i].running_var, trained[i].running_var)
        assert not torch.allclose(plain.model[i].running_mean, trained[i].running_mean)
    ev.restore()

    books = {"0": kmeans_grid(ev.originals["0"].numpy().ravel(), [3])[3]}
    shared = copy.deepcopy(trained)
    with torch.no_grad():
        shared[0].weight.copy_(shared_weight(ev.originals["0"], books["0"])[1])
    before, after = trained[0](images), shared[0](images)  # the first BatchNorm's input, unmodified and shared
    ev.apply(books)
    ev.measure()
    bn = ev.model[1]
    assert torch.allclose(bn.running_mean, trained[1].running_mean + after.mean((0, 2, 3)) - before.mean((0, 2, 3)),
                          atol=1e-6)
    ratio = after.var((0, 2, 3), unbiased=True) / before.var((0, 2, 3), unbiased=True)
    assert torch.allclose(bn.running_var, trained[1].running_var * ratio, rtol=1e-5)
    assert not torch.allclose(bn.running_mean, trained[1].running_mean)


@pytest.mark.parametrize("stale", [True, False])
def test_batchnorm_auto_is_decided_by_the_calibration_stage_and_measures_as_the_chosen_mode(stale, tmp_path):
    """``correct.bn: auto``: labels that the re-estimated unmodified network gets right (its trained statistics
    are stale there) make the calibration stage write ``true``; labels that the trained network gets right
    (re-estimating can only break them) make it write ``shift``. Every later evaluator builds that mode, and
    measures as a spec set to it does, bit for bit."""
    from weight_sharing import calibration, prepare
    from weight_sharing.correct import BatchNormAuto, BatchNormReestimation, BatchNormShift, enabled_corrections
    from weight_sharing.evaluate import EvaluationSpec

    assert enabled_corrections({"bn": "auto"}) == [BatchNormAuto]
    model = {"source": "timm", "arch": "resnet10t", "kwargs": {"in_chans": 1, "num_classes": 10}}
    torch.manual_seed(0)
    torch.save(build_model(model).state_dict(), tmp_path / "trained.pt")
    model["checkpoint"] = str(tmp_path / "trained.pt")
    rng = np.random.default_rng(4)
    x = rng.integers(0, 256, (48, 1, 28, 28), dtype=np.uint8)
    data = {"x_calib": x, "x_test": x[:24], "y_test": np.zeros(24, dtype=np.int64), "mean": np.array([0.13]),
            "std": np.array([0.31])}
    unlabelled = tmp_path / "unlabelled.npz"
    np.savez(unlabelled, y_calib=np.zeros(48, dtype=np.int64), **data)
    plain = EvaluationSpec(model=model, data=str(unlabelled), engine={"device": "cpu"}).evaluator("calib")
    probe = BatchNormReestimation()
    probe.prepare(plain, CorrectionInputs(statistics={}, calibration=lambda: plain))
    trained_pred = plain.reference()[1].numpy()
    with probe._reestimating():  # the unmodified network, its statistics taken from these images
        reestimated_pred = plain.predictions().numpy()
    assert (reestimated_pred != trained_pred).any()  # re-estimating changes predictions on these images
    npz = tmp_path / "data.npz"
    np.savez(npz, y_calib=reestimated_pred if stale else trained_pred, **data)

    engine = {"device": "cpu", "batch_size": 1000}
    base = EvaluationSpec(model=model, data=str(npz), engine=engine)
    prepare.run(spec=base, out_baseline=str(tmp_path / "baseline.json"), out_layers=str(tmp_path / "layers.parquet"))
    stats = tmp_path / "calibration.safetensors"
    calibration.run(spec=base, layers=str(tmp_path / "layers.parquet"), correct={"bn": "auto"}, out=str(stats))
    decision = "true" if stale else "shift"
    assert read_decisions(str(stats)) == {"bn": decision}
    auto = replace(base, correct={"bn": "auto"}, statistics=str(stats))
    assert auto.corrections() == [BatchNormReestimation if stale else BatchNormShift]
    chosen = replace(base, correct={"bn": True if stale else "shift"})
    for split in ("calib", "test"):
        evs = [s.evaluator(split) for s in (auto, chosen)]
        trained = build_model(model)
        assert torch.equal(evs[0].model.bn1.running_mean, trained.bn1.running_mean)  # prepared, statistics kept
        name = next(iter(evs[0].originals))
        books = {name: kmeans_grid(evs[0].originals[name].numpy().ravel(), [3])[3]}
        for e in evs:
            e.apply(books)
        assert evs[0].measure() == evs[1].measure()
        t0, t1 = evs[0].export_tensors(), evs[1].export_tensors()
        assert t0.keys() == t1.keys() and all(np.array_equal(v, t1[k]) for k, v in t0.items())

    with pytest.raises(ValueError, match=r"calibration statistics decide None, not one of \['shift', 'true'\]"):
        from safetensors.numpy import save_file

        old = tmp_path / "old.safetensors"
        save_file({"conv1.0.mean": np.zeros((1, 9))}, str(old))
        replace(auto, statistics=str(old)).corrections()
    with pytest.raises(ValueError, match="no calibration statistics file"):
        replace(auto, statistics=None).evaluator("calib")


def test_batchnorm_reestimation_in_several_batches_takes_a_separate_pass():
    rng = np.random.default_rng(1)
    calib = Split(x=rng.integers(0, 256, (40, 1, 8, 8), dtype=np.uint8), y=rng.integers(0, 10, 40),
                  mean=np.array([0.5], np.float32), std=np.array([0.25], np.float32))
    model = _bn_net()
    ev = Evaluator(model, calib, batch_size=16, device="cpu", layers=["0", "3", "7"], corrections=["bn"],
                   calibration=calib)
    assert not ev.corrections[0].defers_to_pass  # 40 images in 3 batches
    ev.apply({"0": kmeans_grid(ev.originals["0"].numpy().ravel(), [2])[2]})
    assert int(model[1].num_batches_tracked) == 3  # taken over the three batches before any measurement



@pytest.mark.parametrize("batch_size", [1000, 16])  # calibration in one batch (the pass is the measurement) or not
def test_validate_sets_refines_corrected_tensors_for_the_same_measurements_without_the_calibration_passes(
        tiny_npz, tmp_path, batch_size):
    """Refine keeps what the corrections gave each point on calibration; validate sets it on the test split
    instead of correcting again: the same measurements, bit for bit, without a BatchNorm statistics pass over
    the calibration images per point."""
    from safetensors.numpy import save_file

    from weight_sharing import evaluate
    from weight_sharing.evaluate import EvaluationSpec, measure_all, measure_splits
    from weight_sharing.tables import read_point_tensors, write_point_tensors

    arch = {"source": "timm", "arch": "mobilenetv3_small_050", "kwargs": {"in_chans": 1, "num_classes": 10}}
    torch.manual_seed(0)
    checkpoint = tmp_path / "m.pt"
    torch.save(create_model(arch).state_dict(), checkpoint)
    model_cfg = {**arch, "checkpoint": str(checkpoint)}
    plain = EvaluationSpec(model=model_cfg, data=str(tiny_npz), engine={"device": "cpu", "batch_size": batch_size})
    probe = plain.evaluator("calib")
    names = list(probe.originals)
    stats = gather_statistics(probe, second_moment=False)
    save_file({f"{n}.mean": np.ascontiguousarray(s["mean"]) for n, s in stats.items()}, str(tmp_path / "c.st"))
    spec = EvaluationSpec(model=model_cfg, data=str(tiny_npz), engine={"device": "cpu", "batch_size": batch_size},
                          correct={"bias": True, "bn": True}, statistics=str(tmp_path / "c.st"))
    books = [{n: kmeans_grid(probe.originals[n].numpy().ravel(), [k])[k] for n in names} for k in (4, 16, 64)]
    kept = []
    calib = measure_all(spec.evaluator("calib"), books, "refine", kept=kept)
    assert {k.rsplit(".", 1)[-1] for k in kept[0]} == {"bias", "running_mean", "running_var", "num_batches_tracked"}
    path = tmp_path / "tensors.safetensors"
    write_point_tensors(dict(enumerate(kept)), str(path))
    given = read_point_tensors(str(path))
    assert sorted(given) == [0, 1, 2]
    assert [k for k, v in kept[0].items() if not np.array_equal(given[0][k], v)] == []
    base = {"calib_accuracy": 0.1, "test_accuracy": 0.1}
    counts = []
    for tensors in (None, [given[i] for i in range(3)]):
        before = evaluate.IMAGE_FORWARDS["images"]
        rows = measure_splits(spec, names, books, base, "validate", splits=("test",), tensors=tensors)
        counts.append((rows, evaluate.IMAGE_FORWARDS["images"] - before))
    (corrected, n_corrected), (set_, n_set) = counts
    assert set_ == corrected  # accuracy, KL, changed, broken, fixed: the same floats
    assert len({r["test_kl"] for r in set_}) == 3  # three different points, not one repeated
    assert n_corrected - n_set == 3 * 40  # each point's statistics pass over the 40 calibration images
    # both splits in one call (uniform, validate without refinement): calibration first, its tensors set on test
    before = evaluate.IMAGE_FORWARDS["images"]
    both = measure_splits(spec, names, books, base, "uniform", splits=("test", "calib"))
    # the two references, then per point: calibration (its statistics pass first, in several batches) and test
    per_point = (40 if batch_size >= 40 else 2 * 40) + 60
    assert evaluate.IMAGE_FORWARDS["images"] - before == 40 + 60 + 3 * per_point
    assert [{k: v for k, v in r.items() if k.startswith("test_")} for r in both] == corrected
    assert [r["calib_kl"] for r in both] == [m.kl for m in calib]
    # a point's tensors are put back after: the model measures as it did before any was set
    ev = plain.evaluator("test")
    ev.set_tensors(given[0])
    ev.restore()
    assert ev.accuracy() == plain.evaluator("test").accuracy()
