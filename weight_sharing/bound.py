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


def loss_upper_bound(broken, fixed, n: int, confidence: float):
    """One-sided upper confidence bound of the accuracy loss from paired per-image outcomes."""
    if not 0.5 <= confidence < 1:
        raise ValueError(f"select.confidence: {confidence}; allowed: 0.5 <= confidence < 1")
    broken, fixed = np.asarray(broken, dtype=np.float64), np.asarray(fixed, dtype=np.float64)
    loss = (broken - fixed) / n
    var = np.maximum((broken + fixed) / n - loss * loss, 0.0) * n / max(n - 1, 1)
    return loss + NormalDist().inv_cdf(confidence) * np.sqrt(var / n)


def selectable(broken, fixed, n: int, baseline_accuracy: float, bound: float, confidence: float):
    """Points whose loss, at ``confidence``, stays within the bound's allowed loss (elementwise)."""
    return loss_upper_bound(broken, fixed, n, confidence) <= allowed_loss(baseline_accuracy, bound) + TOLERANCE


def best_within(cr, ok) -> int | None:
    """Index of the highest-CR point among those marked ``ok`` (ties: the first); None if none is."""
    cr = np.asarray(cr, dtype=np.float64)
    idx = np.flatnonzero(np.asarray(ok, dtype=bool))
    if not len(idx):
        return None
    return int(idx[np.argmax(cr[idx])])


def choose(rows: list[dict], split: str, n: int, baseline_accuracy: float, bound: float,
           confidence: float) -> int | None:
    """The highest-CR row selectable on ``split`` (its ``{split}_broken``/``_fixed`` counts of ``n`` images)."""
    if not rows:
        return None
    ok = selectable([r[f"{split}_broken"] for r in rows], [r[f"{split}_fixed"] for r in rows], n,
                    baseline_accuracy, bound, confidence)
    return best_within([r["cr"] for r in rows], ok)
