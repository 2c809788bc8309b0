"""Stage decode: an ImageFolder or the flat ILSVRC2012 layout, decoded once into the evaluation .npz.

Each model gets its own preprocessing (timm's resolved data config, or
torchvision's weights transforms): resize and centre-crop are applied here
once, and the uint8 result is cached with the model's mean and std, so no later
evaluation touches a JPEG. The calibration split takes ``calib_per_class``
images of every class (seeded); the test split is the rest.
"""
from __future__ import annotations

import logging

import numpy as np

from .images import Preprocessing, list_images, model_preprocessing, split_per_class

log = logging.getLogger(__name__)


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


def run(*, model: dict, data: dict, out: str, workers: int) -> None:
    """Decode the image folder of the network's ``data`` section with the ``model``'s preprocessing into the
    evaluation .npz (stored uncompressed, so later stages read the splits in batches instead of whole)."""
    import time

    from .data import image_hashes
    from .io import atomic_path
    from .models import build_model

    model_cfg, data_cfg, out_npz = model, data, out
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
