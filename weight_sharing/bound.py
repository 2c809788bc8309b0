"""The accuracy bound: a compressed network must keep at least ``bound`` x the baseline's top-1.

MLPerf's categories set it per network (heavy 99%, light 98%); written once here
and used by every stage that decides or reports against it.
"""

from __future__ import annotations

import numpy as np

TOLERANCE = 1e-12  # accuracies are fractions of a split; equality at the bound counts as meeting it


def network_bound(config: dict, net: str) -> float:
    """The network's own ``bound`` if set, else its category's."""
    net_cfg = config["networks"][net]
    return float(net_cfg.get("bound", config["bounds"][net_cfg["category"]]))


def meets_bound(accuracy, baseline_accuracy: float, bound: float):
    """accuracy >= bound x baseline (elementwise for arrays)."""
    return np.asarray(accuracy, dtype=np.float64) >= bound * baseline_accuracy - TOLERANCE


def best_within(cr, accuracy, baseline_accuracy: float, bound: float) -> int | None:
    """Index of the highest-CR point meeting the bound (ties: the higher accuracy); None if none does."""
    cr = np.asarray(cr, dtype=np.float64)
    acc = np.asarray(accuracy, dtype=np.float64)
    ok = np.flatnonzero(meets_bound(acc, baseline_accuracy, bound))
    if not len(ok):
        return None
    return int(ok[np.lexsort((acc[ok], cr[ok]))[-1]])
