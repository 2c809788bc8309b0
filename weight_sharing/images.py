"""Image folders: listing an ImageFolder or the flat ILSVRC2012 layout, the per-class calibration split,
and each model's own preprocessing (timm's resolved data config, or torchvision's weights transforms).

The decode stage decodes with them; the config check lists and splits a folder before any job runs.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

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
