import copy

import numpy as np
import pytest
import torch

from weight_sharing.config import ConfigError, check_config, validate_schema
from weight_sharing.models import LeNet5


def base_config(npz, ckpt):
    return validate_schema({"networks": {"net": {
        "category": "heavy", "model": {"source": "builtin", "arch": "lenet5", "checkpoint": str(ckpt)},
        "data": {"npz": str(npz)}}}})


def test_valid_config_gives_layer_table(tiny_npz, lenet_checkpoint):
    cfg = base_config(tiny_npz, lenet_checkpoint)
    assert cfg["sweep"]["k_max"] == 1024 and cfg["bounds"]["heavy"] == 0.99  # defaults filled
    layers = check_config(cfg)["net"]
    assert [l["name"] for l in layers] == ["conv1", "conv2", "fc1", "fc2", "fc3"]
    assert [l["weights"] for l in layers] == [150, 2400, 48000, 10080, 840]


@pytest.mark.parametrize("path,value,match", [
    (("networks", "net", "category"), "medium", "category"),
    (("networks", "net", "bound"), 1.5, "bound"),
    (("networks", "net", "bound"), 0, "bound"),
    (("sweep", "k_min"), 0, "k_min"),
    (("sweep", "k_values"), [4, 0], "k_values"),
    (("networks", "net", "model", "source"), "keras", "source"),
])
def test_schema_errors_name_the_key(tiny_npz, lenet_checkpoint, path, value, match):
    cfg = base_config(tiny_npz, lenet_checkpoint)
    node = cfg
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    with pytest.raises(ConfigError, match=match):
        validate_schema(cfg)


def test_unknown_architecture(tiny_npz, lenet_checkpoint):
    cfg = base_config(tiny_npz, lenet_checkpoint)
    cfg["networks"]["net"]["model"].update(source="timm", arch="resnet_does_not_exist")
    with pytest.raises(ConfigError, match="networks.net.model.arch: 'resnet_does_not_exist' is not a timm"):
        check_config(cfg)


def test_missing_files(tiny_npz, lenet_checkpoint, tmp_path):
    cfg = base_config(tiny_npz, lenet_checkpoint)
    cfg["networks"]["net"]["model"]["checkpoint"] = str(tmp_path / "nope.pt")
    with pytest.raises(ConfigError, match="model.checkpoint: file .*nope.pt.* does not exist"):
        check_config(cfg)
    cfg = base_config(tmp_path / "nope.npz", lenet_checkpoint)
    with pytest.raises(ConfigError, match="nope.npz.*does not exist"):
        check_config(cfg)


def test_checkpoint_of_another_architecture(tiny_npz, tmp_path):
    path = tmp_path / "other.pt"
    torch.save(LeNet5(num_classes=7).state_dict(), path)
    with pytest.raises(ConfigError, match="does not fit the architecture: shape mismatch .*fc3.weight"):
        check_config(base_config(tiny_npz, path))
    torch.save({"not": "a state dict"}, path)
    with pytest.raises(ConfigError, match="does not fit the architecture"):
        check_config(base_config(tiny_npz, path))


def write_npz(path, **over):
    rng = np.random.default_rng(0)
    arrays = dict(x_calib=rng.integers(0, 256, (5, 1, 28, 28), dtype=np.uint8), y_calib=np.arange(5),
                  x_test=rng.integers(0, 256, (5, 1, 28, 28), dtype=np.uint8), y_test=np.arange(5),
                  mean=np.array(0.1), std=np.array(0.3))
    arrays.update(over)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("over,match", [
    ({"y_test": np.array([0, 1, 2, 3, 10])}, "y_test has label 10, allowed 0..9"),
    ({"y_calib": np.array([0, -1, 2, 3, 4])}, "y_calib has label -1"),
    ({"x_calib": np.zeros((0, 1, 28, 28), np.uint8), "y_calib": np.zeros(0, np.int64)}, "split 'calib' is empty"),
    ({"x_test": np.zeros((5, 1, 28, 28), np.float32)}, "x_test must be uint8"),
    ({"std": None}, "missing arrays \\['std'\\]"),
    ({"std": np.array([0.0])}, "std must be > 0"),
    ({"y_test": np.arange(4)}, "one label per image"),
])
def test_bad_data(tmp_path, lenet_checkpoint, over, match):
    npz = write_npz(tmp_path / "d.npz", **over)
    with pytest.raises(ConfigError, match=match):
        check_config(base_config(npz, lenet_checkpoint))


def test_image_shape_must_fit_model(tmp_path, lenet_checkpoint):
    npz = write_npz(tmp_path / "d.npz", x_calib=np.zeros((5, 3, 28, 28), np.uint8),
                    x_test=np.zeros((5, 3, 28, 28), np.uint8))
    with pytest.raises(ConfigError, match=r"images of shape \(3, 28, 28\) do not fit the model"):
        check_config(base_config(npz, lenet_checkpoint))


def test_demo_network_rules():
    cfg = validate_schema({"networks": {"d": {"category": "light", "demo": True,
                                              "model": {"source": "timm", "arch": "resnet18"}}}})
    with pytest.raises(ConfigError, match=r"networks.d.demo: the MNIST digits \(1 x 28 x 28\) do not fit the model"):
        check_config(cfg)  # three input channels
    cfg["networks"]["d"]["model"]["kwargs"] = {"in_chans": 1, "num_classes": 10}
    assert len(check_config(copy.deepcopy(cfg))["d"]) == 21
    cfg["networks"]["d"]["model"]["pretrained"] = True
    with pytest.raises(ConfigError, match="trained by the workflow on its own data"):
        check_config(cfg)
    cfg = validate_schema({"networks": {"d": {"category": "light", "demo": True,
                                              "model": {"source": "builtin", "arch": "lenet5"}}}})
    assert len(check_config(copy.deepcopy(cfg))["d"]) == 5


def test_uniform_k_max_below_grid(tiny_npz, lenet_checkpoint):
    cfg = base_config(tiny_npz, lenet_checkpoint)
    cfg["uniform"]["k_max"] = 1
    with pytest.raises(ConfigError, match="uniform.k_max"):
        check_config(cfg)


def test_shipped_configs_are_schema_valid():
    from pathlib import Path

    import yaml

    from weight_sharing.config import load_config
    root = Path(__file__).resolve().parents[1]
    demo = load_config(root / "config.yaml")
    assert list(demo["networks"]) == ["lenet5_mnist"]
    imagenet = load_config(root / "configs/imagenet.yaml")
    assert {n: c["category"] for n, c in imagenet["networks"].items()} == {
        "googlenet": "heavy", "resnetv2_50": "heavy", "inception_v3": "heavy", "mobilenetv2_100": "light",
        "efficientnet_b0": "light", "efficientnet_b1": "light", "efficientnet_b2": "light"}
    assert imagenet["sweep"]["layers_per_job"] == 8 and imagenet["search"]["method"] == "exact"
    paper = validate_schema({**imagenet, **yaml.safe_load((root / "configs/paper.yaml").read_text())})
    assert paper["sample"]["n"] == 5000 and paper["search"]["method"] == "nsga2"
    assert paper["search"]["nsga2"] == {"pop_size": 100, "generations": 500, "seed": 0}
    assert paper["surrogate"]["features"] == ["layer_al"] and paper["sweep"]["grid"] == "log"


def test_architecture_layers_match_checked_layers(tiny_npz, lenet_checkpoint):
    from weight_sharing.config import architecture_layers
    cfg = base_config(tiny_npz, lenet_checkpoint)
    checked = check_config(copy.deepcopy(cfg))["net"]
    assert [l["name"] for l in architecture_layers(cfg)["net"]] == [l["name"] for l in checked]


def test_conda_environment_lists_the_package_dependencies():
    """envs/weight_sharing.yaml holds the library's dependencies (not the package itself, which jobs import
    from the repository through the PYTHONPATH the Snakefile sets)."""
    import tomllib
    from pathlib import Path

    import yaml
    root = Path(__file__).resolve().parents[1]
    env = yaml.safe_load((root / "envs/weight_sharing.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
    assert sorted(pip) == sorted(d for d in project if not d.startswith("snakemake"))
    assert not any(p.startswith("-e") or p.startswith(".") for p in pip)
    assert "PYTHONPATH=" in (root / "Snakefile").read_text()


@pytest.mark.parametrize("sharing,match", [
    ({"granularity": "grouped_channel", "group": 120}, "sharing.group: 120 is not smaller.*at most 120"),
    ({"granularity": "grouped_channel", "group": 500}, "sharing.group: 500"),
    ({"granularity": "per_row"}, "granularity"),
    ({"group": 0}, "group"),
])
def test_bad_sharing_settings(tiny_npz, lenet_checkpoint, sharing, match):
    cfg = base_config(tiny_npz, lenet_checkpoint)
    cfg["sharing"].update(sharing)
    with pytest.raises(ConfigError, match=match):
        validate_schema(cfg)
        check_config(cfg)


def test_grouped_sharing_accepted_below_the_widest_layer(tiny_npz, lenet_checkpoint):
    cfg = base_config(tiny_npz, lenet_checkpoint)
    cfg["sharing"].update(granularity="grouped_channel", group=119)  # LeNet-5's fc1 has 120 outputs
    cfg["export"]["formats"] = ["onnx"]  # Core ML would refuse the short last group of fc1 (120 = 119 + 1)
    assert len(check_config(cfg)["net"]) == 5


@pytest.mark.parametrize("key", ["bias", "centroids"])
def test_corrections_need_calibration_images(tmp_path, lenet_checkpoint, key):
    rng = np.random.default_rng(0)
    path = tmp_path / "no_calib.npz"
    np.savez(path, x_calib=np.zeros((0, 1, 28, 28), np.uint8), y_calib=np.zeros(0, int),
             x_test=rng.integers(0, 256, (10, 1, 28, 28), dtype=np.uint8), y_test=rng.integers(0, 10, 10),
             mean=np.array([0.13]), std=np.array([0.31]))
    cfg = base_config(path, lenet_checkpoint)
    cfg["correct"][key] = True
    with pytest.raises(ConfigError, match="calib.*empty"):
        check_config(cfg)


def test_unlabelled_selection_needs_selection_images(tmp_path, lenet_checkpoint):
    """select.split: unlabelled stops before any job for a network whose .npz has no (or malformed) x_select,
    and for an image folder; with x_select it is accepted."""
    cfg = base_config(write_npz(tmp_path / "d.npz"), lenet_checkpoint)
    cfg["select"]["split"] = "unlabelled"
    with pytest.raises(ConfigError, match="select.split: unlabelled, but networks.net.data.npz .* has no x_select"):
        check_config(cfg)
    rng = np.random.default_rng(1)
    cfg = base_config(write_npz(tmp_path / "s.npz", x_select=rng.integers(0, 256, (7, 1, 28, 28), dtype=np.uint8)),
                      lenet_checkpoint)
    cfg["select"]["split"] = "unlabelled"
    assert len(check_config(cfg)["net"]) == 5
    cfg = base_config(write_npz(tmp_path / "b.npz", x_select=np.zeros((7, 3, 28, 28), np.uint8)), lenet_checkpoint)
    with pytest.raises(ConfigError, match="x_select .* must be uint8 of shape N x 1 x 28 x 28"):
        check_config(cfg)
    cfg = base_config(write_npz(tmp_path / "d.npz"), lenet_checkpoint)
    cfg["networks"]["net"]["data"] = {"root": str(tmp_path)}
    cfg["select"]["split"] = "unlabelled"
    with pytest.raises(ConfigError, match="data.root"):
        check_config(cfg)
    cfg = base_config(write_npz(tmp_path / "d.npz"), lenet_checkpoint)
    cfg["select"]["split"] = "test"
    with pytest.raises(ConfigError, match="select.split: 'test' is not one of \\['calib', 'unlabelled'\\]"):
        validate_schema(cfg)


def test_demo_selection_images_are_held_out_of_training():
    """demo.n_select: that many digits leave the training part (unseen in training) for x_select; the
    calibration and test splits stay exactly those of n_select 0; too many digits stop before any job."""
    from weight_sharing.data import image_hashes
    from weight_sharing.demo import mnist_demo_splits

    plain = mnist_demo_splits(3500, 500, 1000, 0)
    held = mnist_demo_splits(3000, 500, 1000, 0, n_select=500)
    assert "x_select" not in plain
    assert len(held["x_train"]) == 3000 and len(held["x_select"]) == 500
    assert not np.isin(image_hashes(held["x_select"]), image_hashes(held["x_train"])).any()
    assert np.isin(image_hashes(held["x_select"]), image_hashes(plain["x_train"])).all()
    for key in ("x_calib", "y_calib", "x_test", "y_test"):
        assert np.array_equal(plain[key], held[key])
    assert np.bincount(held["y_train"], minlength=10).min() > 250  # stratified
    cfg = validate_schema({"networks": {"d": {"category": "heavy", "demo": True,
                                              "model": {"source": "builtin", "arch": "lenet5"}}},
                           "demo": {"n_select": 600}})
    with pytest.raises(ConfigError, match="demo: n_train . n_select . n_calib . n_test = 5600; allowed: at most"):
        check_config(cfg)
    cfg["demo"]["n_select"] = 0
    cfg["select"]["split"] = "unlabelled"
    with pytest.raises(ConfigError, match="select.split: unlabelled, but demo.n_select is 0"):
        check_config(cfg)


@pytest.mark.parametrize("name", ["..", ".", "-x", ".hidden"])
def test_network_names_that_are_not_a_plain_folder_are_refused(tiny_npz, lenet_checkpoint, name):
    """`..` would plan its outputs outside the results folder and `.` among the summary files."""
    cfg = base_config(tiny_npz, lenet_checkpoint)
    cfg["networks"] = {name: cfg["networks"]["net"]}
    with pytest.raises(ConfigError, match=r"networks.*does not match"):
        validate_schema(cfg)


def test_network_names_with_dots_and_dashes_inside_are_fine(tiny_npz, lenet_checkpoint):
    cfg = base_config(tiny_npz, lenet_checkpoint)
    cfg["networks"] = {"resnet18.v2-mine": cfg["networks"]["net"]}
    validate_schema(cfg)


def test_results_naming_a_file_is_refused(tiny_npz, lenet_checkpoint, tmp_path):
    cfg = base_config(tiny_npz, lenet_checkpoint)
    cfg["results"] = str(tmp_path / "a_file")
    (tmp_path / "a_file").write_text("")
    with pytest.raises(ConfigError, match=r"results: .*a_file' is a file; allowed: a folder"):
        check_config(cfg)


def test_checkpoint_that_is_a_directory_is_named_as_one(tiny_npz, tmp_path):
    cfg = base_config(tiny_npz, tmp_path)
    with pytest.raises(ConfigError, match=r"model.checkpoint: .* is a directory; allowed: a state_dict file"):
        check_config(cfg)


def test_the_plan_is_kept_until_something_it_is_made_from_changes(tiny_npz, lenet_checkpoint, tmp_path, monkeypatch):
    """workflow_plan checks once; a second call with nothing changed reuses the plan; a changed config value
    or a rewritten checkpoint checks again."""
    import os

    from weight_sharing import config as wscfg

    cfg = base_config(tiny_npz, lenet_checkpoint)
    cfg["results"] = str(tmp_path / "results")
    checks = []
    check = wscfg.check_config
    monkeypatch.setattr(wscfg, "check_config", lambda c: checks.append(1) or check(c))
    first = wscfg.workflow_plan(cfg, state_dir=tmp_path / "state")
    assert [l["name"] for l in first["layers"]["net"]] == ["conv1", "conv2", "fc1", "fc2", "fc3"]
    # the defaults: centroid refit, and the BatchNorm form decided by the calibration stage (correct.bn: auto)
    assert first["statistics"] == {"refit": ["second", "decision"], "evaluation": ["decision"]}
    assert wscfg.workflow_plan(copy.deepcopy(cfg), state_dir=tmp_path / "state") == first and len(checks) == 1
    cfg["correct"]["bias"] = True
    assert wscfg.workflow_plan(cfg, state_dir=tmp_path / "state")["statistics"] == {
        "refit": ["mean", "second", "decision"], "evaluation": ["mean", "decision"]}
    assert len(checks) == 2
    st = os.stat(lenet_checkpoint)
    os.utime(lenet_checkpoint, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    wscfg.workflow_plan(cfg, state_dir=tmp_path / "state")
    assert len(checks) == 3
    cfg["networks"]["net"]["bound"] = 1.5  # an invalid value found by the check is never kept
    with pytest.raises(ConfigError):
        wscfg.validate_schema(cfg)


def test_a_parse_with_a_kept_plan_imports_no_torch(tmp_path):
    """`snakemake -n` of the default config, the second time: no torch, numba, matplotlib or timm."""
    import subprocess
    import sys

    from workflow_utils import REPO

    (tmp_path / "config.yaml").write_text((REPO / "config.yaml").read_text())
    cmd = [sys.executable, "-X", "importtime", "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-n", "--quiet"]
    def imported(proc):
        assert proc.returncode == 0, proc.stderr[-2000:]
        return {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time")}

    heavy = {"torch", "numba", "matplotlib", "timm", "sklearn", "pymoo"}
    assert "torch" in imported(subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True))  # checks the model
    assert not imported(subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True)) & heavy


def test_a_format_whose_library_is_missing_stops_the_run(tiny_npz, lenet_checkpoint, monkeypatch):
    import importlib.util

    cfg = base_config(tiny_npz, lenet_checkpoint)
    find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "coremltools" else find(name, *a))
    with pytest.raises(ConfigError, match=r"export.formats: coreml needs coremltools, which is not installed"):
        check_config(cfg)
    cfg["export"]["formats"] = ["onnx"]
    check_config(cfg)


def test_coreml_with_groups_that_do_not_split_a_layers_channels_names_the_layer(tiny_npz, lenet_checkpoint):
    cfg = base_config(tiny_npz, lenet_checkpoint)
    cfg["sharing"]["group"] = 4  # LeNet-5: conv1 has 6 channels, fc2 84, fc3 10
    with pytest.raises(ConfigError, match=r"export.formats: coreml .* layer 'conv1' of 'net' has 6 channels"):
        check_config(cfg)
    cfg["export"]["formats"] = ["onnx"]  # ONNX takes a short last group
    check_config(cfg)
    cfg["export"]["formats"], cfg["sharing"]["group"] = ["coreml"], 2  # 2 divides 6, 16, 120, 84 and 10
    check_config(cfg)


def test_a_conv3d_layer_stops_the_run_when_a_correction_needs_statistics(tmp_path):
    """The calibration statistics unfold Linear, Conv1d and Conv2d inputs only: a Conv3d is named up front."""
    from weight_sharing import config as wscfg

    layers = {"v": [{"name": "stem", "shape": [8, 3, 3, 3, 3]}, {"name": "fc", "shape": [10, 8]}]}
    cfg = validate_schema({"networks": {"v": {"category": "heavy", "demo": True,
                                              "model": {"source": "builtin", "arch": "lenet5"}}}})
    with pytest.raises(ConfigError, match=r"layer 'stem' of 'v' is a 3-D convolution"):
        wscfg.check_statistics_kinds(cfg, layers)
    cfg["correct"] = {"bias": False, "centroids": False, "bn": True}
    wscfg.check_statistics_kinds(cfg, layers)


def test_selection_images_that_are_calibration_images_are_refused(tmp_path, lenet_checkpoint):
    """x_select decides on what the search found on the calibration images: it must be images it never saw."""
    rng = np.random.default_rng(0)
    calib = rng.integers(0, 256, (5, 1, 28, 28), dtype=np.uint8)  # write_npz's own calibration images
    other = np.random.default_rng(7).integers(0, 256, (3, 1, 28, 28), dtype=np.uint8)
    select = np.concatenate([calib[:2], other])
    cfg = base_config(write_npz(tmp_path / "s.npz", x_select=select), lenet_checkpoint)
    with pytest.raises(ConfigError, match=r"2 selection image\(s\) \(x_select\) also appear in the calibration split"):
        check_config(cfg)
    cfg["networks"]["net"]["data"]["allow_shared_images"] = True
    check_config(cfg)


def test_too_few_calibration_images_for_the_exact_test_are_named_before_any_job():
    """200 calibration digits cannot show a 1% bound at 0.9 by the exact test (a point that changes
    nothing passes only from 240 images): a warning names the network, the count and what it takes;
    240 pass without one; the normal approximation never warns."""
    import warnings

    from weight_sharing.config import TooFewImagesWarning

    def demo_config(n_calib, **select):
        return validate_schema({"networks": {"d": {"category": "heavy", "demo": True,
                                                   "model": {"source": "builtin", "arch": "lenet5"}}},
                                "demo": {"n_calib": n_calib}, "select": select})

    with pytest.warns(TooFewImagesWarning, match=r"networks.d: 200 calibration images .* at least 240 images"):
        check_config(demo_config(200))
    for cfg in (demo_config(240), demo_config(200, interval="normal"), demo_config(160, confidence=0.75)):
        with warnings.catch_warnings():
            warnings.simplefilter("error", TooFewImagesWarning)
            check_config(cfg)
    # select.failures: 1 tests each point at 0.95: 240 images no longer suffice
    with pytest.warns(TooFewImagesWarning, match=r"240 calibration images .* select.failures: 1 .* at least 309 "):
        check_config(demo_config(240, failures=1))
