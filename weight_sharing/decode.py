"""Stage decode: an ImageFolder or the flat ILSVRC2012 layout, decoded once into the evaluation .npz.

Each model gets its own preprocessing (timm's resolved data config, or
torchvision's weights transforms): resize and centre-crop are applied here
once, and the uint8 result is cached with the model's mean and std, so no later
evaluation touches a JPEG. The calibration split takes ``calib_per_class``
images of every class (seeded); the test split is the rest.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
LAYOUTS = ("imagefolder", "ilsvrc")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    """Resize the shorter side to ``resize``, centre-crop ``crop`` x ``crop``; normalise with mean/std."""

    resize: int
    crop: int
    interpolation: str
    mean: tuple
    std: tuple


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES


def list_images(data_cfg: dict) -> tuple[list[str], np.ndarray, list[str]]:
    """(paths, labels, class names) of a dataset; a wrong layout or an empty class raises ValueError.

    ``imagefolder``: one sub-folder per class, classes in sorted order (as torchvision's
    ImageFolder and the ImageNet models' class indices). ``ilsvrc``: all images in one
    folder plus ``labels``, a text file of lines ``<file name> <label>`` where the label
    is a 0-based class index or a WordNet id (wnids are indexed in sorted order).
    """
    root = Path(data_cfg["root"])
    layout = data_cfg.get("layout", "imagefolder")
    key = "data.root"
    if layout not in LAYOUTS:
        raise ValueError(f"data.layout: {layout!r}; allowed: {', '.join(LAYOUTS)}")
    if not root.is_dir():
        raise FileNotFoundError(f"{key}: folder {str(root)!r} does not exist")
    if layout == "imagefolder":
        classes = sorted(d.name for d in root.iterdir() if d.is_dir())
        if not classes:
            loose = sum(1 for p in root.iterdir() if _is_image(p))
            hint = (f"; it holds {loose} images directly: for the flat ILSVRC2012 layout set "
                    "data.layout: ilsvrc and data.labels") if loose else ""
            raise ValueError(f"{key}: {str(root)!r} has no class sub-folders (layout imagefolder){hint}")
        paths, labels = [], []
        for i, c in enumerate(classes):
            files = sorted(p for p in (root / c).rglob("*") if _is_image(p))
            if not files:
                raise ValueError(f"{key}: class folder {str(root / c)!r} holds no image "
                                 f"(suffixes {sorted(IMAGE_SUFFIXES)})")
            paths += [str(p) for p in files]
            labels += [i] * len(files)
        return paths, np.asarray(labels, dtype=np.int64), classes
    labels_file = data_cfg.get("labels")
    if not labels_file:
        raise ValueError("data.labels: the ilsvrc layout needs a label file of lines '<file name> <label>'")
    if not Path(labels_file).is_file():
        raise FileNotFoundError(f"data.labels: file {str(labels_file)!r} does not exist")
    entries = []
    for n, line in enumerate(Path(labels_file).read_text().splitlines(), 1):
        parts = line.replace(",", " ").split()
        if not parts or parts[0].lower() in ("imageid", "filename"):
            continue
        if len(parts) < 2:
            raise ValueError(f"data.labels: line {n} of {labels_file!r} is {line!r}; expected '<file name> <label>'")
        entries.append((parts[0], parts[1]))
    if not entries:
        raise ValueError(f"data.labels: {labels_file!r} lists no image")
    raw = [lab for _, lab in entries]
    if all(lab.isdigit() for lab in raw):
        labels = [int(lab) for lab in raw]
        classes = [str(c) for c in range(max(labels) + 1)]
    else:
        classes = sorted(set(raw))
        index = {c: i for i, c in enumerate(classes)}
        labels = [index[lab] for lab in raw]
    paths = []
    for name, _ in entries:
        p = root / name
        if not p.suffix:
            matches = [q for q in (root.glob(name + ".*")) if _is_image(q)]
            p = matches[0] if matches else p
        if not p.is_file():
            raise FileNotFoundError(f"data.labels: {labels_file!r} lists {name!r}, not found in {str(root)!r}")
        paths.append(str(p))
    return paths, np.asarray(labels, dtype=np.int64), classes


def split_per_class(labels: np.ndarray, calib_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the calibration split (``calib_per_class`` per class, seeded) and of the test split (the rest)."""
    rng = np.random.default_rng(seed)
    calib = []
    for c in np.unique(labels):
        idx = np.nonzero(labels == c)[0]
        if len(idx) <= calib_per_class:
            raise ValueError(f"data.calib_per_class: class {int(c)} has {len(idx)} images, so "
                             f"{calib_per_class} for calibration leaves none for the test split")
        calib.append(rng.choice(idx, calib_per_class, replace=False))
    calib = np.sort(np.concatenate(calib))
    test = np.setdiff1d(np.arange(len(labels)), calib)
    return calib, test


def model_preprocessing(model, model_cfg: dict, image_size: int | None = None) -> Preprocessing:
    """The model's own evaluation preprocessing (timm data config; torchvision weights transforms)."""
    source = model_cfg["source"]
    if source == "timm":
        from timm.data import resolve_data_config
        cfg = resolve_data_config({}, model=model)
        crop = int(cfg["input_size"][-1])
        crop_pct = float(cfg.get("crop_pct") or 0.875)
        pre = Preprocessing(resize=int(round(crop / crop_pct)), crop=crop, interpolation=str(cfg["interpolation"]),
                            mean=tuple(cfg["mean"]), std=tuple(cfg["std"]))
    elif source == "torchvision" and _torchvision_weights(model_cfg["arch"]) is not None:
        # the architecture's own weights' transforms (e.g. 342/299 for inception_v3), with or
        # without those weights: a checkpoint of the architecture expects the same input
        t = _torchvision_weights(model_cfg["arch"]).transforms()
        pre = Preprocessing(resize=int(t.resize_size[0]), crop=int(t.crop_size[0]),
                            interpolation=str(t.interpolation.value), mean=tuple(t.mean), std=tuple(t.std))
    else:  # torchvision architectures without published weights, built-in: the ImageNet standard
        pre = Preprocessing(resize=256, crop=224, interpolation="bilinear", mean=IMAGENET_MEAN, std=IMAGENET_STD)
    if image_size:
        pre = Preprocessing(resize=int(round(image_size * pre.resize / pre.crop)), crop=int(image_size),
                            interpolation=pre.interpolation, mean=pre.mean, std=pre.std)
    return pre


def _torchvision_weights(arch: str):
    import torchvision

    try:
        return torchvision.models.get_model_weights(arch).DEFAULT
    except (ValueError, KeyError, AttributeError):
        return None


def decode_images(paths: list[str], pre: Preprocessing, workers: int = 1) -> np.ndarray:
    """Decode, resize and centre-crop every image into one uint8 array (N, 3, crop, crop)."""
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image
    from torchvision.transforms import CenterCrop, InterpolationMode, Resize

    resize = Resize(pre.resize, interpolation=InterpolationMode(pre.interpolation))
    crop = CenterCrop(pre.crop)
    out = np.empty((len(paths), 3, pre.crop, pre.crop), dtype=np.uint8)

    def one(i):
        try:
            with Image.open(paths[i]) as im:
                img = crop(resize(im.convert("RGB")))
        except Exception as exc:
            raise ValueError(f"unreadable image {paths[i]!r}: {exc}") from exc
        out[i] = np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)

    with ThreadPoolExecutor(max(1, workers)) as pool:
        for n, _ in enumerate(pool.map(one, range(len(paths))), 1):
            if n % 5000 == 0:
                log.info("decoded %d/%d images", n, len(paths))
    return out


def run(*, model_cfg: dict, data_cfg: dict, out_npz: str, workers: int) -> None:
    """Decode the image folder with the model's preprocessing into the evaluation .npz (stored
    uncompressed, so later stages read the splits in batches instead of whole)."""
    import time

    from .data import image_hashes
    from .io import atomic_path
    from .models import build_model

    pre = model_preprocessing(build_model(model_cfg), model_cfg, data_cfg.get("image_size"))
    paths, labels, classes = list_images(data_cfg)
    calib, test = split_per_class(labels, int(data_cfg["calib_per_class"]), int(data_cfg["seed"]))
    log.info("%d images in %d classes: %d calibration, %d test; resize %d, crop %d, %s", len(paths),
             len(classes), len(calib), len(test), pre.resize, pre.crop, pre.interpolation)
    t = time.perf_counter()
    x = decode_images(paths, pre, workers=workers)
    log.info("decoded in %.1f s", time.perf_counter() - t)
    shared = int(np.isin(image_hashes(x[calib]), image_hashes(x[test])).sum())
    if shared and not data_cfg.get("allow_shared_images"):
        raise ValueError(f"data.root: {shared} calibration image(s) are identical to test images after decoding "
                         "(duplicate files in the folder); the test split must be held out (set "
                         "data.allow_shared_images: true to accept this knowingly)")
    with atomic_path(out_npz) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, x_calib=x[calib], y_calib=labels[calib], x_test=x[test], y_test=labels[test],
                     mean=np.asarray(pre.mean, np.float32), std=np.asarray(pre.std, np.float32),
                     calib_paths=np.asarray([paths[i] for i in calib]), test_paths=np.asarray([paths[i] for i in test]))
