"""The accuracy bound: a compressed network must keep at least ``bound`` x the baseline's top-1.

MLPerf's categories set it per network (heavy 99%, light 98%); written once here
and used by every stage that decides or reports against it.

Choices are made on the calibration split, where many points are measured on
the same few hundred images: the highest-CR point that meets the bound there is
the one whose loss was most under-estimated (a winner's curse). ``confidence``
asks instead that the bound hold for a one-sided upper confidence bound of the
loss, from the paired comparison with the baseline on the same images: each
image is broken (baseline right, shared wrong), fixed (the reverse) or neither,
so the loss is the mean of per-image differences in {-1, 0, 1} and its standard
error follows from the broken and fixed counts. ``confidence: 0.5`` is the plain
rule (measured accuracy >= bound x baseline).

``selection: unlabelled`` decides on a separate split of unlabelled images instead
(``x_select``), which the search never saw: top-1 can fall by at most the fraction
of predictions that change from the baseline's, so a point is chosen when the
one-sided upper confidence bound of that fraction is at most 1 - bound (at least
``bound`` of the predictions agree with the baseline's). No label enters, not even
the baseline's accuracy: top-1 then keeps baseline - (1 - bound), within
(1 - bound) x (1 - baseline) of the labelled rule's bound x baseline (0.03 pp at 97%
top-1 and a 99% bound). It can use many more images than the labelled calibration
split, at the price of counting every changed prediction as a loss.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np

TOLERANCE = 1e-12  # accuracies are fractions of a split; equality at the bound counts as meeting it


def network_bound(config: dict, net: str) -> float:
    """The network's own ``bound`` if set, else its category's."""
    net_cfg = config["networks"][net]
    return float(net_cfg.get("bound", config["bounds"][net_cfg["category"]]))


def allowed_loss(baseline_accuracy: float, bound: float) -> float:
    """The accuracy a network may lose: (1 - bound) x baseline."""
    return (1 - bound) * baseline_accuracy


def loosened(bound: float, factor: float) -> float:
    """The bound that allows ``factor`` x this bound's loss (export targets: 1x, 1.5x ...)."""
    return 1 - factor * (1 - bound)


def meets_bound(accuracy, baseline_accuracy: float, bound: float):
    """accuracy >= bound x baseline (elementwise for arrays)."""
    return np.asarray(accuracy, dtype=np.float64) >= bound * baseline_accuracy - TOLERANCE


def check_confidence(confidence: float) -> None:
    """``select.confidence`` is a one-sided level: 0.5 (the measured value itself) up to, not including, 1."""
    if not 0.5 <= confidence < 1:
        raise ValueError(f"select.confidence: {confidence}; allowed: 0.5 <= confidence < 1")


def loss_upper_bound(broken, fixed, n: int, confidence: float):
    """One-sided upper confidence bound of the accuracy loss from paired per-image outcomes."""
    check_confidence(confidence)
    broken, fixed = np.asarray(broken, dtype=np.float64), np.asarray(fixed, dtype=np.float64)
    loss = (broken - fixed) / n
    var = np.maximum((broken + fixed) / n - loss * loss, 0.0) * n / max(n - 1, 1)
    return loss + NormalDist().inv_cdf(confidence) * np.sqrt(var / n)


def selectable(broken, fixed, n: int, baseline_accuracy: float, bound: float, confidence: float):
    """Points whose loss, at ``confidence``, stays within the bound's allowed loss (elementwise)."""
    return loss_upper_bound(broken, fixed, n, confidence) <= allowed_loss(baseline_accuracy, bound) + TOLERANCE


SPLIT_Z_WARNING = 2.0  # |z| above which the summary says the calibration draw is unlike the test images


def split_difference_z(calib_accuracy: float, calib_images: int, test_accuracy: float, test_images: int) -> float:
    """How many standard errors the baseline's calibration accuracy lies from its test accuracy (two-proportion
    z, pooled). Both splits are draws of the same data, so a large |z| says the calibration draw, on which every
    choice is made, is unlike the test images: reported, never used to choose."""
    p = (calib_accuracy * calib_images + test_accuracy * test_images) / (calib_images + test_images)
    se = np.sqrt(p * (1 - p) * (1 / calib_images + 1 / test_images))
    return float((calib_accuracy - test_accuracy) / se) if se > 0 else 0.0


def best_within(cr, ok) -> int | None:
    """Index of the highest-CR point among those marked ``ok`` (ties: the first); None if none is."""
    cr = np.asarray(cr, dtype=np.float64)
    idx = np.flatnonzero(np.asarray(ok, dtype=bool))
    if not len(idx):
        return None
    return int(idx[np.argmax(cr[idx])])


def changed_upper_bound(changed, n, confidence: float):
    """One-sided upper confidence bound of the fraction of changed predictions: the exact binomial
    (Clopper-Pearson) bound, because the normal approximation under-covers at the small fractions that
    matter (measured: 14% instead of 10% of draws at a true 0.9% of 3,500 images pass at confidence
    0.9); ``confidence`` 0.5 is the measured fraction itself."""
    check_confidence(confidence)
    from scipy.stats import beta

    p = np.asarray(changed, dtype=np.float64)
    if confidence == 0.5:
        return p
    n = np.asarray(n, dtype=np.float64)
    count = np.rint(p * n)
    return np.where(count >= n, 1.0, beta.ppf(confidence, count + 1, np.maximum(n - count, 1)))


def calib_selectable(rows: list[dict], baseline: dict, bound: float, confidence: float) -> np.ndarray:
    """``select.split: calib``: the paired loss bound on the labelled calibration split."""
    return selectable([r["calib_broken"] for r in rows], [r["calib_fixed"] for r in rows],
                      baseline["calib_images"], baseline["calib_accuracy"], bound, confidence)


def unlabelled_selectable(rows: list[dict], baseline: dict, bound: float, confidence: float) -> np.ndarray:
    """``select.split: unlabelled``: the changed-prediction bound on the unlabelled selection split
    (``select_*`` columns), against 1 - bound (no label, and so no baseline accuracy, enters)."""
    missing = [i for i, r in enumerate(rows) if r.get("select_changed") is None or not r.get("select_images")]
    if missing:
        raise ValueError(f"select.split: unlabelled, but {len(missing)} of {len(rows)} points have no measurement "
                         "on the selection split (rerun validate and uniform with this setting)")
    ub = changed_upper_bound([r["select_changed"] for r in rows], [r["select_images"] for r in rows], confidence)
    return ub <= allowed_changes(bound) + TOLERANCE


def allowed_changes(bound: float) -> float:
    """The fraction of predictions ``select.split: unlabelled`` lets a point change: 1 - bound."""
    return 1 - bound


# select.split -> which measured rows may be chosen; never on the test split
SELECTIONS = {"calib": calib_selectable, "unlabelled": unlabelled_selectable}


def selectable_rows(rows: list[dict], baseline: dict, bound: float, confidence: float,
                    selection: str = "calib") -> np.ndarray:
    """Which rows may be chosen under the ``selection`` rule (see :data:`SELECTIONS`)."""
    if selection not in SELECTIONS:
        raise ValueError(f"select.split: {selection!r}; allowed: {', '.join(SELECTIONS)}")
    return SELECTIONS[selection](rows, baseline, bound, confidence)


def choose(rows: list[dict], baseline: dict, bound: float, confidence: float,
           selection: str = "calib") -> int | None:
    """The highest-CR row selectable by ``selection`` (see :func:`selectable_rows`); None if none is."""
    if not rows:
        return None
    return best_within([r["cr"] for r in rows], selectable_rows(rows, baseline, bound, confidence, selection))
