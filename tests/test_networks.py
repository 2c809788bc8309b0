"""The shipped configs' networks build, check and run; pretrained torchvision models survive export;
layers that never run at evaluation are not shared; bad weights and shared images stop the run."""

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from weight_sharing.config import (
    ConfigError,
    architecture_layers,
    check_config,
    demo_image_shape,
    load_config,
    network_demo,
    validate_schema,
)
from weight_sharing.data import Split
from weight_sharing.evaluate import Evaluator
from weight_sharing.kmeans import kmeans_grid
from weight_sharing.models import architecture, build_model, create_model, layer_records, shared_layers
from weight_sharing.packed import export_compressed, load_compressed

REPO = Path(__file__).resolve().parents[1]
SHIPPED = [REPO / "config.yaml", REPO / "configs/imagenet.yaml", REPO / "configs/benchmark.yaml",
           REPO / "configs/transfer.yaml"]
TV_AUX = {"googlenet", "inception_v3"}


def torchvision_weights_state(arch):
    """A state_dict of the shapes torchvision's weights file for ``arch`` has (random values)."""
    import torchvision

    n = len(torchvision.models.get_model_weights(arch).DEFAULT.meta["categories"])
    extra = {"aux_logits": True, "init_weights": False} if arch in TV_AUX else {}
    torch.manual_seed(0)
    return torchvision.models.get_model(arch, num_classes=n, **extra).state_dict()


@pytest.fixture
def offline_weights(monkeypatch):
    """The libraries' weight downloads replaced by local state_dicts of the right shapes."""
    import timm.models._builder as timm_builder
    import torchvision.models._api as tv_api

    tv_urls = {}

    def tv_download(url, *args, **kwargs):
        import torchvision

        if url not in tv_urls:
            arch = next(a for a in torchvision.models.list_models()
                        if _has_url(torchvision.models, a, url))
            tv_urls[url] = torchvision_weights_state(arch)
        return tv_urls[url]

    def timm_download(model_id, *args, **kwargs):
        import timm

        torch.manual_seed(0)
        return timm.create_model(model_id.split("/")[-1].split(".")[0], pretrained=False).state_dict()

    monkeypatch.setattr(tv_api, "load_state_dict_from_url", tv_download)
    monkeypatch.setattr(timm_builder, "load_state_dict_from_hf", timm_download)
    return tv_download


def _has_url(models, arch, url):
    try:
        return models.get_model_weights(arch).DEFAULT.url == url
    except (ValueError, KeyError, AttributeError):
        return False


def image_folder(root, size, classes=2, per_class=3):
    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"c{c}").mkdir(parents=True, exist_ok=True)
        for j in range(per_class):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / f"c{c}" / f"{j}.png")
    return root


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_network_builds_and_runs(path, offline_weights, tmp_path):
    """Random weights and the pretrained path (download replaced by local weights): the config check
    passes and the model runs at its own input size."""
    cfg = load_config(path)
    for net, net_cfg in cfg["networks"].items():
        model_cfg = net_cfg["model"]
        model = create_model({**architecture(model_cfg), "pretrained": False}).eval()
        if net_cfg.get("demo"):
            shape = demo_image_shape(network_demo(cfg, net))
        else:
            from weight_sharing.decode import model_preprocessing

            crop = model_preprocessing(model, model_cfg).crop
            shape = (3, crop, crop)
        with torch.inference_mode():
            assert model(torch.zeros(1, *shape)).shape[-1] == (10 if net_cfg.get("demo") else 1000)
        if not net_cfg.get("demo"):
            net_cfg["data"] = {**net_cfg["data"], "root": str(image_folder(tmp_path / net, 40)), "calib_per_class": 1}
    layers = check_config(copy.deepcopy(cfg))  # the pretrained weights come from offline_weights
    assert set(layers) == set(cfg["networks"])
    # a cluster job sees the same shared layers as the submitting host
    remote = architecture_layers(cfg)
    for net in cfg["networks"]:
        assert [l["name"] for l in remote[net]] == [l["name"] for l in layers[net]]
    if "googlenet" in layers:
        assert len(layers["googlenet"]) == 58  # no auxiliary heads
        assert len(layers["inception_v3"]) == 95  # timm's: no AuxLogits at evaluation


@pytest.mark.parametrize("arch,crop,layers", [("googlenet", 224, 58), ("inception_v3", 299, 95)])
def test_pretrained_torchvision_model_survives_checkpoint_and_export(arch, crop, layers, offline_weights, tmp_path):
    pretrained = build_model({"source": "torchvision", "arch": arch, "pretrained": True})
    spec = architecture({"source": "torchvision", "arch": arch, "pretrained": True})
    assert spec["kwargs"]["transform_input"] is True and spec["kwargs"]["num_classes"] == 1000
    x = torch.rand(2, 3, crop, crop)
    with torch.inference_mode():
        expected = pretrained(x)
    # offline: the library's weights file itself, or the pretrained model's own state_dict
    raw, own = tmp_path / "raw.pth", tmp_path / "own.pt"
    torch.save(offline_weights(tv_url(arch)), raw)
    torch.save(pretrained.state_dict(), own)
    for ckpt in (raw, own):
        model = build_model({"source": "torchvision", "arch": arch, "pretrained": True, "checkpoint": str(ckpt)})
        with torch.inference_mode():
            assert torch.equal(model(x), expected), ckpt.name
    records = layer_records(pretrained, (3, crop, crop))
    assert len(records) == layers
    if arch == "inception_v3":  # AuxLogits is kept by the builder but never runs at evaluation
        assert not any(r["name"].startswith("AuxLogits") for r in records)
        assert len(shared_layers(pretrained)) == layers + 3
    # export and reload from the record: the same outputs as the evaluated compressed model
    names = [r["name"] for r in records]
    books = {n: kmeans_grid(m.weight.detach().numpy().ravel(), [16])[16] for n, m in shared_layers(pretrained, names)}
    path = tmp_path / "m.safetensors"
    export_compressed(pretrained, books, spec, path)
    split = Split(x=np.random.default_rng(0).integers(0, 256, (3, 3, crop, crop), dtype=np.uint8),
                  y=np.zeros(3, np.int64), mean=np.full(3, 0.45, np.float32), std=np.full(3, 0.225, np.float32))
    ev = Evaluator(pretrained, split, device="cpu", layers=names)
    ev.apply(books)
    loaded, meta = load_compressed(path)
    assert meta["architecture"]["kwargs"]["transform_input"] is True
    got = Evaluator(loaded, split, device="cpu", layers=names)
    ref_logits, got_logits = [], []
    ev._pass(lambda i, out: ref_logits.append(out))
    got._pass(lambda i, out: got_logits.append(out))
    assert torch.allclose(torch.cat(ref_logits), torch.cat(got_logits), atol=1e-5)


def tv_url(arch):
    import torchvision

    return torchvision.models.get_model_weights(arch).DEFAULT.url


def test_torchvision_pretrained_rejects_other_class_count():
    with pytest.raises(ValueError, match="model.kwargs.num_classes: 10 with pretrained torchvision weights of 1000"):
        architecture({"source": "torchvision", "arch": "resnet18", "pretrained": True, "kwargs": {"num_classes": 10}})


def test_unused_layers_are_not_shared():
    model = create_model({"source": "torchvision", "arch": "inception_v3",
                          "kwargs": {"aux_logits": True, "num_classes": 10}}).eval()
    names = [r["name"] for r in layer_records(model, (3, 299, 299))]
    assert "AuxLogits.fc" not in names and "fc" in names
    assert len(names) == len(shared_layers(model)) - 3


def lenet_npz(path, calib, test):
    np.savez(path, x_calib=calib, y_calib=np.arange(len(calib)) % 10, x_test=test, y_test=np.arange(len(test)) % 10,
             mean=np.array([0.1]), std=np.array([0.3]))
    return path


def base_config(npz, ckpt):
    return validate_schema({"networks": {"net": {
        "category": "heavy", "model": {"source": "builtin", "arch": "lenet5", "checkpoint": str(ckpt)},
        "data": {"npz": str(npz)}}}})


def test_nan_weight_stops_with_the_tensor_named(tmp_path, tiny_npz):
    from weight_sharing.models import LeNet5

    state = LeNet5().state_dict()
    state["fc2.weight"][3, 4] = float("nan")
    state["fc2.weight"][0, 0] = float("inf")
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(ConfigError, match=r"networks.net.model.checkpoint: tensor 'fc2.weight' .*bad.pt.* 2 NaN"):
        check_config(base_config(tiny_npz, tmp_path / "bad.pt"))


def test_shared_calibration_and_test_images_stop_the_run(tmp_path, lenet_checkpoint):
    rng = np.random.default_rng(0)
    calib = rng.integers(0, 256, (20, 1, 28, 28), dtype=np.uint8)
    test = rng.integers(0, 256, (30, 1, 28, 28), dtype=np.uint8)
    test[[2, 5, 7]] = calib[[0, 1, 19]]
    npz = lenet_npz(tmp_path / "d.npz", calib, test)
    with pytest.raises(ConfigError, match="3 calibration image.s. also appear in the test split"):
        check_config(base_config(npz, lenet_checkpoint))
    cfg = base_config(npz, lenet_checkpoint)
    cfg["networks"]["net"]["data"]["allow_shared_images"] = True
    assert len(check_config(cfg)["net"]) == 5
    same = lenet_npz(tmp_path / "same.npz", calib, calib)
    with pytest.raises(ConfigError, match="20 calibration image"):
        check_config(base_config(same, lenet_checkpoint))


def test_selection_images_held_out_from_test_and_measured_without_labels(tmp_path, lenet_checkpoint):
    """x_select: refused when it shares images with the test split; read without labels; the evaluator
    measures the changed predictions on it (against a direct count) and refuses an accuracy."""
    from weight_sharing.data import load_split
    from weight_sharing.evaluate import Evaluator
    from weight_sharing.models import LeNet5

    rng = np.random.default_rng(0)
    calib = rng.integers(0, 256, (20, 1, 28, 28), dtype=np.uint8)
    test = rng.integers(0, 256, (30, 1, 28, 28), dtype=np.uint8)
    select = rng.integers(0, 256, (50, 1, 28, 28), dtype=np.uint8)
    select[[3, 9]] = test[[0, 29]]
    npz = lenet_npz(tmp_path / "d.npz", calib, test)
    with np.load(npz) as z:
        np.savez(npz, **dict(z), x_select=select)
    with pytest.raises(ConfigError, match="2 selection image.s. also appear in the test split"):
        check_config(base_config(npz, lenet_checkpoint))
    split = load_split(npz, "select")
    assert split.y is None and len(split) == 50 and np.array_equal(np.asarray(split.x), select)
    model = LeNet5()
    model.load_state_dict(torch.load(lenet_checkpoint, weights_only=True))
    ev = Evaluator(model, split, device="cpu", batch_size=16)
    with pytest.raises(ValueError, match="no labels"):
        ev.accuracy()
    before = ev.predictions().clone()
    from weight_sharing.codebook import Codebook
    # fc3 with two far-off, sign-flipped values: an untrained network whose predictions must change
    ev.apply({"fc3": Codebook(k=2, thresholds=np.array([0.0]), centroids=np.array([3.0, -3.0], np.float32),
                              inertia=0.0)})
    after = ev.predictions().clone()
    m = ev.measure()
    assert m.changed == float((after != before).float().mean()) and m.n == 50 and np.isnan(m.accuracy)
    assert m.changed > 0 and m.broken == m.fixed == 0


def test_splits_are_memory_mapped_and_streamed(tmp_path):
    """An uncompressed .npz split is read on demand, not whole: evaluating it allocates one batch of memory."""
    import tracemalloc

    from weight_sharing.data import StoredArray, load_split
    from weight_sharing.models import LeNet5

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (4000, 1, 28, 28), dtype=np.uint8)  # 3.1 MB
    npz = lenet_npz(tmp_path / "d.npz", x[:10], x)
    split = load_split(npz, "test")
    assert isinstance(split.x, StoredArray) and np.array_equal(split.x, x)
    assert np.array_equal(split.x[17:301], x[17:301]) and np.array_equal(split.x[-1], x[-1])
    torch.manual_seed(0)
    model = LeNet5().eval()
    tracemalloc.start()
    ev = Evaluator(model, split, batch_size=100, device="cpu")
    acc = ev.accuracy()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1_000_000, peak  # one batch is 78 kB; the split 3.1 MB
    assert acc == Evaluator(model, Split(np.array(x), split.y, split.mean, split.std), device="cpu").accuracy()


def test_imagenet_config_dry_run_with_local_weights(tmp_path):
    """The shipped ImageNet config, with the weights given offline as local files (the library's own weight
    files: torchvision's .pth, timm's model.safetensors) and a small image folder, passes `snakemake -n`."""
    import yaml
    from safetensors.torch import save_file

    from workflow_utils import planned_jobs, snakemake

    cfg = yaml.safe_load((REPO / "configs/imagenet.yaml").read_text())
    folder = image_folder(tmp_path / "val", 40, classes=3, per_class=4)
    for net, net_cfg in cfg["networks"].items():
        model_cfg = net_cfg["model"]
        if model_cfg["source"] == "torchvision":
            path = tmp_path / f"{net}.pth"
            torch.save(torchvision_weights_state(model_cfg["arch"]), path)
        else:
            path = tmp_path / f"{net}.safetensors"
            import timm

            save_file(timm.create_model(model_cfg["arch"]).state_dict(), str(path))
        model_cfg["checkpoint"] = str(path)  # pretrained: true stays: the architecture of the library's weights
        net_cfg["data"] = {"root": str(folder), "calib_per_class": 1}
    (tmp_path / "imagenet.yaml").write_text(yaml.safe_dump(cfg))
    proc = snakemake(tmp_path, "--dry-run", "--cores", "1", configfile="imagenet.yaml", timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    jobs = planned_jobs(proc.stdout + proc.stderr)
    assert jobs["decode"] == 7 and jobs["prepare"] == 7 and jobs["export"] == 7
    # 58 + 95 + ... shared layers, swept 8 per job
    assert jobs["sweep"] >= 7 * 7


def test_image_subset_is_a_seeded_random_part_in_split_order_from_memory_or_file(tmp_path):
    """``sample.images``: the same images for the same seed whether the split is in memory or read on demand,
    in the split's order with their own labels; a split sorted by class gives a part of every class."""
    from weight_sharing.data import StoredArray, image_subset, load_split

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (300, 1, 28, 28), dtype=np.uint8)
    npz = tmp_path / "d.npz"
    y_sorted = np.repeat(np.arange(10), 30)  # sorted by class, as ImageNet's validation images are
    np.savez(npz, x_calib=x, y_calib=y_sorted, x_test=x[:10], y_test=y_sorted[:10], mean=np.array([0.1]),
             std=np.array([0.3]))
    stored = load_split(npz, "calib")
    assert isinstance(stored.x, StoredArray)
    memory = Split(np.array(x), y_sorted, stored.mean, stored.std)
    a, b = image_subset(stored, 40, seed=3), image_subset(memory, 40, seed=3)
    assert len(a) == 40 and np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)
    rows = [int(np.flatnonzero((x == img).all(axis=(1, 2, 3)))[0]) for img in a.x]
    assert rows == sorted(rows) and len(set(rows)) == 40  # distinct images, in the split's order
    assert np.array_equal(a.y, y_sorted[rows])
    assert len(set(a.y.tolist())) >= 8  # the first 40 would hold two classes
    assert not np.array_equal(image_subset(memory, 40, seed=4).x, b.x)
    assert image_subset(memory, 0, seed=3) is memory and image_subset(memory, 300, seed=3) is memory
    with pytest.raises(ValueError, match="images: -1; allowed"):
        image_subset(memory, -1, seed=0)


def test_a_calibration_evaluator_on_part_of_the_images(tiny_npz, lenet_checkpoint):
    """``EvaluationSpec.evaluator(images=m)``: the sample stage's evaluator measures the seeded part only, and
    its baseline accuracy (``reference_accuracy``) is the unmodified model's on that part."""
    from weight_sharing.data import image_subset, load_split
    from weight_sharing.evaluate import EvaluationSpec

    spec = EvaluationSpec(model={"source": "builtin", "arch": "lenet5", "checkpoint": str(lenet_checkpoint)},
                          data=str(tiny_npz), engine={"device": "cpu"})
    part = spec.evaluator("calib", images=15, seed=2)
    whole = spec.evaluator("calib")
    assert part.n == 15 and whole.n == 40
    expected = image_subset(load_split(tiny_npz, "calib"), 15, seed=2)
    assert np.array_equal(part.split.x, expected.x)
    assert part.reference_accuracy() == Evaluator(part.model, expected, device="cpu").accuracy()
    assert whole.reference_accuracy() == whole.accuracy()
