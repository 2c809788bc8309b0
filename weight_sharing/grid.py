"""The K grid of the sweep (and of the uniform reference), from the ``sweep`` config section."""
from __future__ import annotations

import math

import numpy as np


def k_grid(k_min: int, k_max: int, count: int) -> list[int]:
    """``count`` log-spaced K from k_min to k_max, rounded and de-duplicated (paper: 2..1024, 100)."""
    if k_min < 1:
        raise ValueError(f"sweep.k_min must be >= 1, got {k_min}")
    if k_max < k_min:
        raise ValueError(f"sweep.k_max ({k_max}) must be >= sweep.k_min ({k_min})")
    if count < 1:
        raise ValueError(f"sweep.k_count must be >= 1, got {count}")
    if count == 1:
        return [int(k_min)]
    vals = np.rint(np.logspace(math.log10(k_min), math.log10(k_max), count)).astype(np.int64)
    return sorted({int(v) for v in vals})


def resolve_grid(sweep_cfg: dict) -> list[int]:
    """The configured grid: an explicit ``k_values`` list, the powers of two from k_min to k_max
    (``grid: pow2``), or the log-spaced k_min/k_max/k_count one (``grid: log``, the paper's)."""
    if sweep_cfg.get("k_values"):
        ks = [int(k) for k in sweep_cfg["k_values"]]
        bad = [k for k in ks if k < 1]
        if bad:
            raise ValueError(f"sweep.k_values: K must be >= 1, got {bad}")
        return sorted(set(ks))
    if sweep_cfg.get("grid") == "pow2":
        lo, hi = int(sweep_cfg["k_min"]), int(sweep_cfg["k_max"])
        if hi < lo:
            raise ValueError(f"sweep.k_max ({hi}) must be >= sweep.k_min ({lo})")
        ks = [1 << b for b in range(max(lo - 1, 0).bit_length(), hi.bit_length()) if lo <= 1 << b <= hi]
        if not ks:
            raise ValueError(f"sweep.grid: pow2 has no power of two in k_min..k_max = {lo}..{hi}")
        return ks
    return k_grid(int(sweep_cfg["k_min"]), int(sweep_cfg["k_max"]), int(sweep_cfg["k_count"]))


def layer_grid(grid: list[int], n_weights: int) -> list[int]:
    """The grid capped at the layer's weight count (more clusters than weights means nothing)."""
    return sorted({min(int(k), int(n_weights)) for k in grid})


def uniform_k_values(sweep_cfg: dict, uniform_cfg: dict) -> list[int]:
    """The K of the uniform reference: every grid K up to ``uniform.k_max``."""
    return [k for k in resolve_grid(sweep_cfg) if k <= uniform_cfg["k_max"]]
