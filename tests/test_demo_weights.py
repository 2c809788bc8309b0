"""The default demo's weights and data are fixed: shipped weights for the default settings (the same on any
CPU), a split that numpy reproduces everywhere; other settings train; a damaged shipped file is refused."""

import json
import shutil

import numpy as np
import pytest
import torch

from weight_sharing import demo
from weight_sharing.config import load_config
from weight_sharing.models import LeNet5

# the default demo's identity: change these only with the README's demo figures (rerun them)
SHIPPED_LENET5_SHA256 = "e4e58df0a10210fe638cb8beda332823966a8828381489a7517d837a67a96f11"
DEFAULT_SPLIT_SHA256 = "4d88a9908ebfbf3cb503f7b52daa0d6bdc6b72250e52607539aef2421ae3101b"


@pytest.fixture(scope="module")
def default_config():
    return load_config("config.yaml")


def test_default_config_takes_the_shipped_weights(default_config, tmp_path):
    net = default_config["networks"]["lenet5_mnist"]
    data, ckpt = tmp_path / "data.npz", tmp_path / "checkpoint.pt"
    demo.run(model=net["model"], demo=default_config["demo"], out_data=str(data), out_checkpoint=str(ckpt))
    state = torch.load(ckpt, weights_only=True)
    assert demo.tensor_hash(state) == SHIPPED_LENET5_SHA256
    LeNet5().load_state_dict(state)  # the built-in architecture's keys and shapes
    with np.load(data) as z:
        assert demo.tensor_hash({k: z[k] for k in z.files}) == DEFAULT_SPLIT_SHA256


def test_other_settings_train(default_config, tmp_path):
    net = default_config["networks"]["lenet5_mnist"]
    settings = {**default_config["demo"], "epochs": 1}
    assert demo.shipped_checkpoint(demo.training_settings(net["model"], settings)) is None
    ckpt = tmp_path / "checkpoint.pt"
    demo.run(model=net["model"], demo=settings, out_data=str(tmp_path / "d.npz"), out_checkpoint=str(ckpt))
    state = torch.load(ckpt, weights_only=True)
    LeNet5().load_state_dict(state)
    assert demo.tensor_hash(state) != SHIPPED_LENET5_SHA256


def test_weights_train_never_takes_the_shipped_file(default_config, tmp_path, monkeypatch):
    """With the shipped settings and ``weights: train`` the network is trained (training stubbed: on the machine
    that made the shipped file, real training would give the same hash and prove nothing)."""
    net = default_config["networks"]["lenet5_mnist"]
    settings = {**default_config["demo"], "weights": "train"}
    assert demo.shipped_checkpoint(demo.training_settings(net["model"], settings)) is not None
    calls = []

    def fake_train(model_cfg, x, y, *args, **kwargs):
        calls.append(len(y))
        torch.manual_seed(1)
        return LeNet5()

    monkeypatch.setattr(demo, "train", fake_train)
    ckpt = tmp_path / "checkpoint.pt"
    demo.run(model=net["model"], demo=settings, out_data=str(tmp_path / "d.npz"), out_checkpoint=str(ckpt))
    assert calls == [default_config["demo"]["n_train"]]
    assert demo.tensor_hash(torch.load(ckpt, weights_only=True)) != SHIPPED_LENET5_SHA256


def test_shipped_settings_match_the_default_config(default_config):
    entry = demo.shipped_checkpoint(demo.training_settings(default_config["networks"]["lenet5_mnist"]["model"],
                                                           default_config["demo"]))
    assert entry is not None and entry["sha256"] == SHIPPED_LENET5_SHA256
    manifest = json.loads(demo.MANIFEST.read_text())
    assert [e["file"] for e in manifest["checkpoints"]] == ["lenet5_mnist.safetensors"]


def test_damaged_shipped_file_is_refused(default_config, tmp_path, monkeypatch):
    trained = tmp_path / "trained"
    shutil.copytree(demo.TRAINED, trained)
    from safetensors.torch import load_file, save_file

    state = load_file(str(trained / "lenet5_mnist.safetensors"))
    state["fc3.bias"][0] += 1e-3
    save_file(state, str(trained / "lenet5_mnist.safetensors"))
    monkeypatch.setattr(demo, "TRAINED", trained)
    monkeypatch.setattr(demo, "MANIFEST", trained / "manifest.json")
    out = tmp_path / "checkpoint.pt"
    with pytest.raises(ValueError, match="lenet5_mnist.safetensors has tensor hash .* damaged"):
        demo.run(model=default_config["networks"]["lenet5_mnist"]["model"], demo=default_config["demo"],
                 out_data=str(tmp_path / "d.npz"), out_checkpoint=str(out))
    assert not out.exists()  # no half-written result


def test_bad_weights_source_is_refused_by_the_schema():
    import yaml

    from weight_sharing.config import ConfigError, validate_schema

    cfg = yaml.safe_load(open("config.yaml"))
    cfg["demo"]["weights"] = "download"
    with pytest.raises(ConfigError, match=r"demo.weights: 'download' is not one of \['auto', 'train'\]"):
        validate_schema(cfg)
