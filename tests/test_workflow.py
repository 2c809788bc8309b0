"""End-to-end runs of the workflow on the tiny config: every output, its content, and their consistency."""

import copy
import json
import math

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from workflow_utils import TINY, cr_by_hand, snakemake, write_config

LAYERS = ["conv1", "conv2", "fc1", "fc2", "fc3"]
WEIGHTS = [150, 2400, 48000, 10080, 840]
CHANNELS = [6, 16, 120, 84, 10]  # output channels: one codebook each with the default sharing.group 1
OUTPUTS = [28 * 28, 10 * 10, 1, 1, 1]  # output positions per image (28x28 input, conv1 padded)
MACS = [w * o for w, o in zip(WEIGHTS, OUTPUTS)]  # multiply-accumulates per image


def read(run, rel):
    return pq.read_table(run / "results" / "tiny" / rel).to_pylist()


def is_png(path, min_bytes=5000):
    data = path.read_bytes()
    return data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= min_bytes


def test_demo_data_checkpoint_and_baseline(tiny_run):
    net = tiny_run / "results" / "tiny"
    with np.load(net / "demo/data.npz") as z:
        assert z["x_train"].shape == (1500, 1, 28, 28) and z["x_calib"].shape == (200, 1, 28, 28)
        assert z["x_test"].shape == (300, 1, 28, 28) and z["x_test"].dtype == np.uint8
        assert sorted(np.unique(z["y_calib"])) == list(range(10))
    from weight_sharing.models import LeNet5

    LeNet5().load_state_dict(torch.load(net / "demo/checkpoint.pt", weights_only=True))
    baseline = json.loads((net / "baseline.json").read_text())
    assert baseline["calib_images"] == 200 and baseline["test_images"] == 300
    assert baseline["calib_accuracy"] > 0.8 and baseline["test_accuracy"] > 0.8  # trained, not chance
    assert baseline["shared_weights"] == sum(WEIGHTS) and baseline["unshared_layers"] == []
    assert [r["name"] for r in read(tiny_run, "layers.parquet")] == LAYERS
    assert [r["weights"] for r in read(tiny_run, "layers.parquet")] == WEIGHTS
    log = (net / "logs/prepare.log").read_text()
    assert f"baseline calib accuracy {baseline['calib_accuracy']:.4f}" in log


def test_sweep_rows(tiny_run):
    from weight_sharing.sharing import grouped_ks

    base = json.loads((tiny_run / "results/tiny/baseline.json").read_text())
    for layer, weights, channels in zip(LAYERS, WEIGHTS, CHANNELS):
        rows = read(tiny_run, f"sweep/{layer}.parquet")
        grid = sorted({min(k, weights) for k in TINY["sweep"]["k_values"]})
        tensor = [r for r in rows if r["groups"] == 1]
        per_channel = [r for r in rows if r["groups"] > 1]
        # the defaults: every K per tensor, and one codebook per output channel where those take fewer bits
        # than the next bit-width per tensor (none for conv1: 6 channels of 25 weights)
        assert [r["k"] for r in tensor] == grid
        assert [r["k"] for r in per_channel] == grouped_ks(grid, weights, channels)
        assert all(r["groups"] == channels and r["group"] == 1 for r in per_channel)
        assert (layer == "conv1") == (not per_channel)
        for r in rows:
            assert r["bits"] == math.ceil(math.log2(r["k"]))
            assert len(r["centroids"]) == r["groups"] * r["codebook_size"]
            assert len(r["thresholds"]) == r["groups"] * (r["codebook_size"] - 1)
            assert r["al"] == pytest.approx(base["calib_accuracy"] - r["accuracy"])
            # top-1 can move by at most the fraction of predictions that changed; KL is a divergence
            assert abs(r["al"]) <= r["changed"] + 1e-12 and r["kl"] >= 0
        for same in (tensor, per_channel):
            inertia = [r["inertia"] for r in same]
            assert all(a >= b for a, b in zip(inertia, inertia[1:]))  # more clusters never hurt
        for r in per_channel:  # k-means per channel fits each channel's weights at least as well
            assert r["inertia"] <= next(t["inertia"] for t in tensor if t["k"] == r["k"]) * (1 + 1e-9)
        assert tensor[-1]["kl"] < tensor[0]["kl"]  # the finest codebook perturbs the network less than K=2
        # the job's log counts the images it pushed through the network: its reference pass of the 200
        # calibration images, the pass caching what the layer's output does not reach, then per row (no
        # correction in the tiny config) a resumed pass, each image counted as the share of the network's
        # multiply-accumulates it computes: this layer's and every later layer's
        share = sum(MACS[LAYERS.index(layer):]) / sum(MACS)
        log = (tiny_run / f"results/tiny/logs/sweep/{layer}.log").read_text()
        counted = [int(line.rsplit(" ", 1)[1]) for line in log.splitlines() if "image-forwards of this job:" in line]
        assert counted == [pytest.approx(200 * (1 + (1 - share) + len(rows) * share), abs=1)], layer
        assert (layer == "conv1") == (counted[0] == 200 * (len(rows) + 1))  # conv1's output reaches everything


def dominated(point, others):
    return any(o["cr"] >= point["cr"] and o["test_al"] <= point["test_al"]
               and (o["cr"] > point["cr"] or o["test_al"] < point["test_al"]) for o in others)


def test_samples_front_and_surrogate_consistent(tiny_run):
    samples = read(tiny_run, "samples/shard_0.parquet") + read(tiny_run, "samples/shard_1.parquet")
    assert sorted(s["sample"] for s in samples) == list(range(60))
    assert len({tuple(s["choice"]) for s in samples}) == 60  # distinct combinations
    from weight_sharing.tables import CandidateSet

    cands = CandidateSet(pq.read_table(tiny_run / "results/tiny/candidates.parquet"), read(tiny_run, "layers.parquet"))
    for s in samples:
        assert cands.gather(cands.k, s["choice"]).tolist() == s["k"]
        assert s["cr"] == pytest.approx(cr_by_hand(WEIGHTS, s["k"], cands.gather(cands.groups, s["choice"])))
    validated = read(tiny_run, "front_validated.parquet")
    refined = read(tiny_run, "front_refined.parquet")
    assert [v["k"] for v in validated] == [p["k"] for p in refined] and validated
    # refinement validates every point it measured: the search's own front among them
    assert {tuple(p["k"]) for p in read(tiny_run, "front_predicted.parquet")} <= {tuple(p["k"]) for p in refined}
    rounds = json.loads((tiny_run / "results/tiny/refine.json").read_text())["rounds"]
    assert 1 <= len(rounds) <= TINY.get("refine", {}).get("rounds", 2) + 1
    assert sum(r["measured"] for r in rounds) == len(refined)
    assert any(g > 1 for v in validated for g in v["groups"])  # the search used per-channel codebooks
    for v in validated:
        assert v["cr"] == pytest.approx(cr_by_hand(WEIGHTS, v["k"], v["groups"]))
        # on_front: exactly the points no other validated point dominates on the test split
        assert v["on_front"] == (not dominated(v, validated))
    surrogate = json.loads((tiny_run / "results/tiny/surrogate.json").read_text())
    assert surrogate["n_samples"] == 60 and surrogate["layers"] == LAYERS
    assert min(surrogate["coef"]) >= 0  # positive: true
    # the stored coefficients reproduce the training fit the file reports
    energy = np.array([r["energy"] for r in read(tiny_run, "layers.parquet")])
    columns = {"layer_al": np.array([s["layer_al"] for s in samples]),
               "layer_kl": np.array([s["layer_kl"] for s in samples]),
               "layer_noise": np.array([s["layer_inertia"] for s in samples]) / energy}
    x = np.hstack([columns[f] for f in surrogate["features"]])
    assert surrogate["features"] == ["layer_kl", "layer_noise"]  # the default
    y = np.array([s["al"] for s in samples])
    pred = x @ np.array(surrogate["coef"]) + surrogate["intercept"]
    r2 = 1 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2)
    assert r2 == pytest.approx(surrogate["r2_train"], abs=1e-9)
    assert surrogate["r2_heldout"] <= surrogate["r2_train"] + 1e-9


def test_uniform_256_loses_almost_nothing(tiny_run):
    rows = {r["k"]: r for r in read(tiny_run, "uniform.parquet") if r["granularity"] == "tensor"}
    assert set(rows) == {2, 3, 4, 8, 16, 64, 256}
    assert abs(rows[256]["test_al"]) <= 0.01
    assert rows[2]["cr"] > rows[256]["cr"]
    assert rows[2]["calib_kl"] > rows[256]["calib_kl"]


def test_uniform_per_channel_reference(tiny_run):
    """The fair reference: the same K in every layer with one codebook per output channel (sharing.group 1),
    its codebooks the sweep's where the sweep has them, else per-channel k-means; its CR counts every
    channel's codebook; the summary's gain is against the better reference, named."""
    from weight_sharing.data import load_split
    from weight_sharing.evaluate import Evaluator
    from weight_sharing.kmeans import kmeans_grid
    from weight_sharing.models import LeNet5
    from weight_sharing.tables import codebook_from_row

    net = tiny_run / "results/tiny"
    rows = read(tiny_run, "uniform.parquet")
    assert {r["granularity"] for r in rows} == {"tensor", "channel"}
    channel = {r["k"]: r for r in rows if r["granularity"] == "channel"}
    by_hand = {k: 32 * sum(WEIGHTS) / sum(w * math.ceil(math.log2(min(k, w))) + c * min(k, w) * 32
                                          for w, c in zip(WEIGHTS, CHANNELS))
               for k in TINY["sweep"]["k_values"]}
    # per channel only where the codebooks still compress: K = 256 would store more than the float weights
    assert set(channel) == {k for k, cr in by_hand.items() if cr > 1} and by_hand[256] < 1 < by_hand[64]
    assert {r["k"] for r in rows if r["granularity"] == "tensor"} == set(by_hand)
    for k, r in channel.items():
        assert r["groups"] == CHANNELS and r["group"] == 1
        assert r["cr"] == pytest.approx(by_hand[k], rel=1e-12)
    # K = 4: fc1's per-channel codebooks are swept (its row is reused), conv1's are not (computed here);
    # measured again from those codebooks, the calibration accuracy is the table's
    model = LeNet5()
    model.load_state_dict(torch.load(net / "demo/checkpoint.pt", weights_only=True))
    books = {}
    for layer in LAYERS:
        swept = [s for s in read(tiny_run, f"sweep/{layer}.parquet") if s["groups"] > 1 and s["k"] == 4]
        if layer == "fc1":
            assert swept, "fc1 has per-channel sweep rows at K = 4"
        if layer == "conv1":
            assert not swept
        if swept:
            books[layer] = codebook_from_row(swept[0])
        else:
            w = getattr(model, layer).weight.detach().numpy()
            books[layer] = [kmeans_grid(w[c].ravel(), [4])[4] for c in range(w.shape[0])]
    ev = Evaluator(model, load_split(str(net / "demo/data.npz"), "calib"), batch_size=500, layers=LAYERS)
    with torch.no_grad():
        for layer, b in books.items():
            w = ev.layers[layer].weight
            if isinstance(b, list):  # per channel, by hand
                for c, cb in enumerate(b):
                    flat = w[c].detach().numpy().ravel()
                    w[c].copy_(torch.as_tensor(cb.centroids[np.searchsorted(cb.thresholds, flat, side="right")])
                               .view_as(w[c]))
            else:
                ev.apply({layer: b})
    assert ev.accuracy() == pytest.approx(channel[4]["calib_accuracy"], abs=1e-12)
    # the summary's gain: against the better of the two references
    summary = json.loads((net / "report/summary.json").read_text())
    better = max(("tensor", "channel"), key=lambda g: summary[f"uniform_{g}_cr"] or 0)
    assert summary["uniform_best_granularity"] == better
    assert summary["uniform_best_cr"] == summary[f"uniform_{better}_cr"]
    if summary["best_cr"] and summary["uniform_best_cr"]:
        line = next(line for line in (tiny_run / "results/summary.md").read_text().splitlines()
                    if line.startswith("| tiny |"))
        assert f"| {summary['best_cr'] / summary['uniform_best_cr']:.2f}x (per {better}) |" in line


def test_export_reloads_to_the_validated_model(tiny_run):
    from weight_sharing.data import load_split
    from weight_sharing.evaluate import Evaluator
    from weight_sharing.models import LeNet5
    from weight_sharing.packed import load_compressed
    from weight_sharing.tables import CandidateSet

    net = tiny_run / "results/tiny"
    table = read(tiny_run, "export.parquet")
    assert [(r["target"], r["format"]) for r in table] == [(t, f) for t in (1.0, 1.5) for f in ("packed", "onnx",
                                                                                                 "coreml")]
    rows = [r for r in table if r["format"] == "packed"]
    cands = CandidateSet(pq.read_table(net / "candidates.parquet"), read(tiny_run, "layers.parquet"))
    split = load_split(net / "demo/data.npz", "test")
    validated = {(tuple(v["k"]), v["cr"]): v for v in read(tiny_run, "front_validated.parquet")}
    for r in rows:
        path = net / "export" / r["file"]
        model, meta = load_compressed(path)
        assert meta["architecture"] == {"source": "builtin", "arch": "lenet5", "kwargs": {}}
        assert [l["k"] for l in meta["shared_layers"]] == r["k"]
        point = validated[tuple(r["k"]), r["cr"]]
        # one codebook per layer, or one per output channel where the point has per-channel codebooks
        groups = [math.ceil(l["shape"][0] / l["group"]) if l["group"] else 1 for l in meta["shared_layers"]]
        assert groups == point["groups"]
        # the file alone predicts what the original checkpoint with the chosen codebooks predicts
        original = LeNet5()
        original.load_state_dict(torch.load(net / "demo/checkpoint.pt", weights_only=True))
        reference = Evaluator(original, split, device="cpu")
        reference.apply(cands.codebooks_of(point["choice"]))
        got = Evaluator(model, split, device="cpu").predictions()
        assert torch.equal(reference.predictions(), got)
        assert float((got.numpy() == split.y).mean()) == r["test_accuracy"] == point["test_accuracy"]
        # index bytes as stored: each layer's stream of ceil(log2 K)-bit indices rounded up to whole bytes
        assert r["index_bytes"] == sum(math.ceil(w * math.ceil(math.log2(k)) / 8) for w, k in zip(WEIGHTS, r["k"]))
        assert r["codebook_bytes"] <= 4 * sum(g * k for g, k in zip(groups, r["k"]))
        assert r["file_bytes"] < 4 * sum(WEIGHTS) / 4  # the file is far smaller than the float32 weights
    # the device formats of each target: the same point, verified, and their sizes as stored
    import onnxruntime as ort

    from weight_sharing.formats.coreml import decode_lut, read_luts

    for r in table:
        packed = next(p for p in rows if p["target"] == r["target"])
        assert (r["k"], r["cr"], r["point"]) == (packed["k"], packed["cr"], packed["point"])
        assert r["cr_float32"] == pytest.approx(32 * sum(WEIGHTS) / (r["index_bits"] + r["codebook_bits"]))
        assert r["cr_float16"] == pytest.approx(r["cr_float32"] / 2)
        if r["format"] == "onnx":
            session = ort.InferenceSession(str(net / "export" / r["file"]), providers=["CPUExecutionProvider"])
            mean, std = (np.asarray(v, np.float32).reshape(1, -1, 1, 1) * np.float32(255)
                         for v in (split.mean, split.std))
            x = (np.asarray(split.x, np.float32) - mean) / std
            got = session.run(None, {"x": x})[0].argmax(1)
            assert float((got == split.y).mean()) == r["test_accuracy"] == packed["test_accuracy"]
        if r["format"] == "coreml":
            model, _ = load_compressed(net / "export" / packed["file"])
            luts, _ = read_luts(str(net / "export" / r["file"]))
            assert sorted(luts) == sorted(LAYERS)
            for layer, (lut, idx) in luts.items():  # float16 LUTs: the packed file's weights, rounded
                want = dict(model.named_modules())[layer].weight.detach().numpy().astype(np.float16)
                assert np.array_equal(decode_lut(lut, idx).astype(np.float16), want)


def test_plots_and_summary_content(tiny_run):
    net = tiny_run / "results/tiny"
    for png in ("report/fronts.png", "report/sensitivity.png", "surrogate.png"):
        assert is_png(net / png), png
    row = json.loads((net / "report/summary.json").read_text())
    summary = (tiny_run / "results/summary.md").read_text()
    line = next(line for line in summary.splitlines() if line.startswith("| tiny |"))
    assert line.startswith("| tiny | heavy | 99% (conf. 0.9, normal, ascending) | 5 | 0.246 |")
    baseline = json.loads((net / "baseline.json").read_text())
    assert (f"| 0.246 | {100 * baseline['calib_accuracy']:.2f} / {100 * baseline['test_accuracy']:.2f} |"
            in line)
    # the reported choice is the highest-CR point selectable on calibration, with its test loss as measured
    validated = read(tiny_run, "front_validated.parquet")
    ok = [v for v in validated if v["selectable"]]
    if ok:
        best = max(ok, key=lambda v: v["cr"])
        assert row["best_cr"] == best["cr"] and row["best_cr_test_al"] == best["test_al"]
        assert row["best_cr_test_meets_bound"] == best["test_within_bound"]
    assert f"| {row['surrogate_r2']:.3f} " in line
    csv_lines = (tiny_run / "results/summary.csv").read_text().splitlines()
    assert csv_lines[0].startswith("network,") and csv_lines[1].startswith("tiny,heavy,")
    assert row["time_total_s"] == pytest.approx(sum(row[f"time_{s}_s"] for s in (
        "prepare", "sweep", "candidates", "sample", "surrogate", "search", "refine", "validate", "uniform",
        "export")))
    assert row["time_sweep_s"] > 0 and row["time_sample_s"] > 0


def test_snakemake_report_contains_every_plot(tiny_run):
    proc = snakemake(tiny_run, "--report", "report.html")
    assert proc.returncode == 0, proc.stderr[-3000:]
    html = (tiny_run / "report.html").read_text(errors="replace")
    for name in ("fronts.png", "sensitivity.png", "surrogate.png", "summary.csv"):
        assert name in html, name
    assert "Per-layer sensitivity" in html and "Compression rate against accuracy loss" in html


def test_bad_config_stops_before_any_work(tmp_path):
    cfg = copy.deepcopy(TINY)
    cfg["networks"]["tiny"]["bound"] = 1.5
    write_config(tmp_path, cfg)
    proc = snakemake(tmp_path, "--cores", "1")
    assert proc.returncode != 0
    assert "bound" in proc.stderr and "1.5" in proc.stderr
    assert not (tmp_path / "results").exists()

    cfg = copy.deepcopy(TINY)
    cfg["networks"]["mine"] = {"category": "light", "model": {"source": "timm", "arch": "resnet18",
                                                              "checkpoint": str(tmp_path / "missing.pt")},
                               "data": {"npz": str(tmp_path / "missing.npz")}}
    write_config(tmp_path, cfg)
    proc = snakemake(tmp_path, "--cores", "1")
    assert proc.returncode != 0
    assert "networks.mine.model.checkpoint" in proc.stderr and "missing.pt" in proc.stderr
    assert not (tmp_path / "results").exists()

    cfg = copy.deepcopy(TINY)
    cfg["sharing"] = {"granularity": "grouped_channel", "group": 120}  # LeNet-5's widest layer has 120 outputs
    write_config(tmp_path, cfg)
    proc = snakemake(tmp_path, "--cores", "1")
    assert proc.returncode != 0
    assert "sharing.group: 120" in proc.stderr
    assert not (tmp_path / "results").exists()


def test_corrections_and_grouped_codebooks_end_to_end(tmp_path):
    """Every correction on, grouped codebooks, choices on the unlabelled selection images: the run completes,
    the search may mix per-tensor and grouped codebooks, each export reloads to exactly what validation
    measured (bias-corrected, refit values), and the reported point follows the selection images."""
    from weight_sharing.correct import read_statistics
    from weight_sharing.data import load_split
    from weight_sharing.evaluate import Evaluator
    from weight_sharing.models import LeNet5
    from weight_sharing.packed import load_compressed
    from weight_sharing.tables import CandidateSet

    cfg = copy.deepcopy(TINY)
    cfg["sharing"] = {"granularity": "grouped_channel", "group": 5}
    cfg["correct"] = {"bias": True, "centroids": True, "bn": True}  # bn: LeNet-5 has none, the wiring runs
    cfg["select"] = {"split": "unlabelled", "confidence": 0.5}
    cfg["demo"]["n_select"] = 400
    # Core ML's LUTs need groups that split every layer's channels (5 does not split conv1's 6); ONNX takes a
    # short last group, with the bias correction's added biases
    cfg["export"] = {"formats": ["onnx"]}
    write_config(tmp_path, cfg)
    proc = snakemake(tmp_path, "--cores", "2")
    assert proc.returncode == 0, proc.stderr[-4000:]
    net = tmp_path / "results" / "tiny"
    sweep = {}
    for r in read(tmp_path, "sweep/conv2.parquet"):  # 16 channels: 4 codebooks of 5, 5, 5 and 1 channels
        sweep.setdefault(r["groups"], []).append(r)
    assert set(sweep) == {1, 4} and all(r["group"] == 5 for r in sweep[4])
    means = read_statistics(str(net / "calibration.safetensors"), LAYERS, "mean")
    split = load_split(net / "demo/data.npz", "test")
    cands = CandidateSet(pq.read_table(net / "candidates.parquet"), read(tmp_path, "layers.parquet"))
    assert cands.groups.max() > 1
    validated = {tuple(v["choice"]): v for v in read(tmp_path, "front_validated.parquet")}
    for v in validated.values():
        assert v["cr"] == pytest.approx(cr_by_hand(WEIGHTS, v["k"], v["groups"]))
    onnx_rows = [r for r in read(tmp_path, "export.parquet") if r["format"] == "onnx"]
    assert len(onnx_rows) == 2 and all(r["predictions_differing"] == 0 for r in onnx_rows)
    for r in read(tmp_path, "export.parquet"):
        if r["format"] != "packed":
            continue
        model, meta = load_compressed(net / "export" / r["file"])
        original = LeNet5()
        original.load_state_dict(torch.load(net / "demo/checkpoint.pt", weights_only=True))
        point = next(v for v in validated.values() if v["k"] == r["k"] and v["cr"] == r["cr"])
        reference = Evaluator(original, split, device="cpu", corrections=["bias"], statistics={"mean": means})
        reference.apply(cands.codebooks_of(point["choice"]))
        got = Evaluator(model, split, device="cpu").predictions()
        assert torch.equal(reference.predictions(), got)
        assert float((got.numpy() == split.y).mean()) == r["test_accuracy"] == point["test_accuracy"]
    # select.split unlabelled: every validated and uniform point measured on the 400 digits the demo held out
    # of training as x_select; the report's choice is the highest CR changing at most 1 - bound of them, among
    # the points from the lowest CR up to the first that changes more (select.family: ascending)
    for table in ("front_validated.parquet", "uniform.parquet"):
        rows = read(tmp_path, table)
        assert all(r["select_images"] == 400 and 0 <= r["select_changed"] <= 1 for r in rows)
    rows = list(validated.values())
    ok = []
    for r in sorted(rows, key=lambda r: r["cr"]):
        if r["select_changed"] > (1 - 0.99) + 1e-12:
            break
        ok.append(r)
    row = json.loads((net / "report/summary.json").read_text())
    assert row["selection"] == "unlabelled"
    assert row["best_cr"] == (max(r["cr"] for r in ok) if ok else None)
    assert [r["selectable"] for r in rows] == [r in ok for r in rows]
    with np.load(net / "demo/data.npz") as z:
        assert len(z["x_train"]) == 1500 and len(z["x_select"]) == 400
    point = max(rows, key=lambda r: r["cr"])
    original = LeNet5()
    original.load_state_dict(torch.load(net / "demo/checkpoint.pt", weights_only=True))
    ev = Evaluator(original, load_split(net / "demo/data.npz", "select"), device="cpu", corrections=["bias"],
                   statistics={"mean": means})
    before = ev.predictions().clone()
    ev.apply(cands.codebooks_of(point["choice"]))
    assert float((ev.predictions() != before).double().mean()) == pytest.approx(point["select_changed"], abs=1e-12)
    # the summary's row says what its choice was made on (the header names both rules, the row only its own)
    summary = (tmp_path / "results" / "summary.md").read_text()
    assert "| tiny | heavy | 99% (conf. 0.5, unlabelled, ascending) |" in summary
    _, meta = load_compressed(net / "export" / "loss_1.0x.safetensors")
    selected_on = json.loads(meta["selected_on"])
    assert selected_on["split"] == "unlabelled" and selected_on["confidence"] == 0.5
    assert selected_on["bound"] == pytest.approx(0.99)


def test_the_readmes_loading_snippets_run(tiny_run, monkeypatch, capsys):
    """The README's snippets (packed, ONNX Runtime, Core ML) run as written on the tiny config's files."""
    import re

    from workflow_utils import REPO

    text = (REPO / "README.md").read_text()
    section = text[text.index("## The compressed model you ship"):text.index("## Bring your own model")]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 3
    monkeypatch.chdir(tiny_run)
    for code in blocks:
        exec(compile(code.replace("lenet5_mnist", "tiny"), "README.md", "exec"), {})
    printed = capsys.readouterr().out
    packed = next(r for r in read(tiny_run, "export.parquet") if r["format"] == "onnx" and r["target"] == 1.0)
    assert f"top-1 {packed['test_accuracy']}" in printed
