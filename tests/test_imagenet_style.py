"""ImageNet-style data (a real JPEG image folder) with a timm and a torchvision model, through the workflow."""
import copy

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from weight_sharing.config import ConfigError, check_config, validate_schema
from weight_sharing.decode import list_images, split_per_class
from weight_sharing.models import create_model
from workflow_utils import snakemake, write_config

CLASSES = ["n01", "n02", "n03", "n04"]


def make_folder(root, per_class=6, size=(48, 40), seed=0):
    rng = np.random.default_rng(seed)
    for i, c in enumerate(CLASSES):
        (root / c).mkdir(parents=True, exist_ok=True)
        for j in range(per_class):
            arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            arr[..., i % 3] = 255 - j * 10  # a class-dependent colour
            Image.fromarray(arr).save(root / c / f"img{j}.JPEG", quality=90)
    return root


@pytest.fixture
def folder(tmp_path):
    return make_folder(tmp_path / "val")


def test_imagefolder_listing_and_split(folder):
    paths, labels, classes = list_images({"root": str(folder)})
    assert classes == CLASSES and len(paths) == 24
    assert labels.tolist() == [0] * 6 + [1] * 6 + [2] * 6 + [3] * 6
    calib, test = split_per_class(labels, 2, seed=0)
    assert len(calib) == 8 and len(test) == 16 and not set(calib) & set(test)
    assert np.bincount(labels[calib]).tolist() == [2, 2, 2, 2]
    again, _ = split_per_class(labels, 2, seed=0)
    assert np.array_equal(calib, again)


def test_flat_ilsvrc_layout(folder, tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    lines = []
    for i, c in enumerate(CLASSES):
        for p in sorted((folder / c).iterdir()):
            name = f"ILSVRC2012_val_{i}_{p.stem}.JPEG"
            (flat / name).write_bytes(p.read_bytes())
            lines.append(f"{name} {c}")
    (tmp_path / "labels.txt").write_text("\n".join(lines) + "\n")
    labels_file = str(tmp_path / "labels.txt")
    paths, labels, classes = list_images({"root": str(flat), "layout": "ilsvrc", "labels": labels_file})
    assert classes == CLASSES and np.bincount(labels).tolist() == [6, 6, 6, 6]


def test_layout_errors(folder, tmp_path):
    with pytest.raises(ValueError, match="no class sub-folders.*layout: ilsvrc"):
        list_images({"root": str(folder / "n01")})
    (folder / "n05").mkdir()
    with pytest.raises(ValueError, match="n05.*holds no image"):
        list_images({"root": str(folder)})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list_images({"root": str(tmp_path / "nowhere")})
    with pytest.raises(ValueError, match="needs a label file"):
        list_images({"root": str(folder), "layout": "ilsvrc"})


def timm_network(folder, ckpt, **data):
    return {"category": "light", "model": {"source": "timm", "arch": "resnet10t", "kwargs": {"num_classes": 4},
                                          "checkpoint": str(ckpt)},
            "data": {"root": str(folder), "calib_per_class": 2, "image_size": 32, **data}}


@pytest.fixture
def timm_ckpt(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "resnet10t.pt"
    torch.save(create_model({"source": "timm", "arch": "resnet10t", "kwargs": {"num_classes": 4}}).state_dict(), path)
    return path


def test_config_errors_before_any_work(folder, timm_ckpt, tmp_path):
    cfg = validate_schema({"networks": {"t": timm_network(folder, timm_ckpt)}})
    assert len(check_config(copy.deepcopy(cfg))["t"]) > 5
    bad = copy.deepcopy(cfg)
    bad["networks"]["t"]["data"]["calib_per_class"] = 6
    with pytest.raises(ConfigError, match="leaves none for the test split"):
        check_config(bad)
    bad = copy.deepcopy(cfg)
    bad["networks"]["t"]["model"]["kwargs"]["num_classes"] = 3
    with pytest.raises(ConfigError, match="does not fit the architecture"):
        check_config(bad)
    bad = copy.deepcopy(cfg)
    bad["networks"]["t"]["model"]["checkpoint"] = None
    with pytest.raises(ConfigError, match="model.checkpoint: none given and pretrained is false"):
        check_config(bad)
    (folder / "broken").mkdir()
    with pytest.raises(ConfigError, match="broken.*holds no image"):
        check_config(copy.deepcopy(cfg))


def test_pretrained_offline_says_how_to_provide_weights(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", "/nonexistent-cache")
    with pytest.raises(ValueError, match="Without internet.*model.checkpoint"):
        create_model({"source": "timm", "arch": "resnet10t", "pretrained": True})


def test_workflow_on_image_folder_with_timm_and_torchvision(tmp_path, timm_ckpt):
    folder = make_folder(tmp_path / "val")
    torch.manual_seed(0)
    gnet = {"source": "torchvision", "arch": "googlenet", "kwargs": {"num_classes": 4, "aux_logits": False}}
    gpath = tmp_path / "googlenet.pt"
    torch.save(create_model(gnet).state_dict(), gpath)
    (folder / "n02" / "img5.JPEG").write_bytes(b"not a jpeg")  # reported with its path
    config = {
        "networks": {
            "rn": timm_network(folder, timm_ckpt),
            "gnet": {"category": "heavy", "model": {**gnet, "checkpoint": str(gpath)},
                     "data": {"root": str(folder), "calib_per_class": 2, "image_size": 48}},
        },
        "evaluation": {"batch_size": 64},
        # few K: the ResNet's widest layers (512 channels of 4,608 weights) refit per channel in every row
        "sweep": {"k_values": [2, 4], "layers_per_job": 30},
        "sample": {"n": 30, "shards": 1},
        "surrogate": {"folds": 3},
        "search": {"nsga2": {"pop_size": 10, "generations": 5}},
        "uniform": {"k_max": 4},
        "export": {"targets": [1.0]},
    }
    write_config(tmp_path, config)
    proc = snakemake(tmp_path, "--cores", "2", "--keep-going")
    assert proc.returncode != 0
    assert "unreadable image" in (tmp_path / "results/rn/logs/decode.log").read_text()
    assert "n02/img5.JPEG" in (tmp_path / "results/rn/logs/decode.log").read_text()
    make_folder(tmp_path / "val")  # repair the image
    proc = snakemake(tmp_path, "--cores", "2")
    assert proc.returncode == 0, proc.stderr[-4000:]
    from weight_sharing.packed import load_compressed

    for net, crop in (("rn", 32), ("gnet", 48)):
        root = tmp_path / "results" / net
        with np.load(root / "data.npz") as z:
            assert z["x_calib"].shape == (8, 3, crop, crop) and z["x_test"].shape == (16, 3, crop, crop)
            assert z["x_calib"].dtype == np.uint8
            # calibration: 2 images of every class; every image decoded from its own file
            assert np.bincount(z["y_calib"]).tolist() == [2, 2, 2, 2]
            assert not set(z["calib_paths"].tolist()) & set(z["test_paths"].tolist())
        layers = pq.read_table(root / "layers.parquet").to_pylist()
        validated = pq.read_table(root / "front_validated.parquet").to_pylist()
        assert validated and all(len(v["k"]) == len(layers) for v in validated)
        exported = pq.read_table(root / "export.parquet").to_pylist()
        model, meta = load_compressed(root / "export" / exported[0]["file"])
        assert [l["name"] for l in meta["shared_layers"]] == [l["name"] for l in layers]
        assert [l["k"] for l in meta["shared_layers"]] == exported[0]["k"]
        # the device formats of the same point: onnxruntime reproduces it; the Core ML package read back
        assert {r["format"] for r in exported} == {"packed", "onnx", "coreml"}
        for r in exported:
            assert (root / "export" / r["file"]).exists() and r["k"] == exported[0]["k"]
            if r["format"] == "onnx":
                assert r["predictions_differing"] == 0
        sweep_files = sorted((root / "sweep").glob("part*.parquet"))
        assert len(sweep_files) == -(-len(layers) // 30)
        swept = [r["layer"] for f in sweep_files for r in pq.read_table(f).to_pylist()]
        assert list(dict.fromkeys(swept)) == [l["name"] for l in layers]
    gl = pq.read_table(tmp_path / "results/gnet/layers.parquet").to_pylist()
    assert len(gl) == 58 and gl[-1]["name"] == "fc"
    summary = (tmp_path / "results/summary.md").read_text()
    assert "| gnet | heavy | 99% (conf. 0.9, exact, ascending) | 58 |" in summary
    assert "| rn | light | 98% (conf. 0.9, exact, ascending) |" in summary
