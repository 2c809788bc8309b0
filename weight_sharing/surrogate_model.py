"""The surrogate model: network AL (or KL) as a linear function of per-layer features of the chosen K.

The paper's model uses one feature per layer, the layer's sweep AL
(``features: [layer_al]``). The sweep AL is measured on a finite calibration
split, so for robust layers it is mostly noise (often 0 or negative), and a
search driven by it alone cannot tell K=4 from K=16. ``layer_noise``, the
layer's relative quantisation noise (k-means inertia over the sum of squared
weights), is exact and strictly falls with K; adding it and keeping the
coefficients non-negative (more error in a layer never helps) gives the
search a proper trade-off. Fitted on the real samples; its quality is
reported on samples it was not fitted on (k-fold out-of-fold predictions).
Stored as JSON, never pickle. ``layer_kl`` (the sweep's KL divergence to the
baseline) is a third feature a config may add. Every feature is defined once,
in :data:`FEATURES` (name -> its value from a candidate's sweep values), for the
samples, the search and refinement alike. The surrogate stage fits it; search and
refine use it.

What it predicts is ``surrogate.target`` (:data:`TARGETS`): the network's top-1
loss on the calibration images (``al``), or its KL divergence to the baseline
there (``kl``), which a layer's error adds to nearly additively and which does not
move in steps of one image, so samples measured on fewer images still carry it.
The search then minimises the target at every compression rate; every choice is
still made on the measured top-1 loss.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr
from sklearn.linear_model import LinearRegression
from sklearn.metrics import mean_squared_error, r2_score
from sklearn.model_selection import KFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

KINDS = ("linear",)


def _noise(values: dict) -> np.ndarray:
    """k-means inertia over the layer's sum of squared weights (relative quantisation noise; 0 for an
    all-zero layer, which sharing cannot change)."""
    energy = np.asarray(values["energy"], dtype=np.float64)
    inertia = np.asarray(values["inertia"], dtype=np.float64)
    safe = np.where(energy > 0, energy, 1.0)
    return np.where(energy > 0, inertia / safe, 0.0)


# feature name (``surrogate.features``) -> its (N, L) value from the chosen candidates' sweep values
# (``al``, ``kl``, ``inertia`` and the layers' ``energy``, the sum of squared weights)
FEATURES = {
    "layer_al": lambda v: np.asarray(v["al"], dtype=np.float64),
    "layer_noise": _noise,
    "layer_kl": lambda v: np.asarray(v["kl"], dtype=np.float64),
}


def feature_values(al, kl, inertia, energy) -> dict[str, np.ndarray]:
    """Every per-layer feature of chosen candidates ((N, L) arrays of their sweep values)."""
    values = {"al": al, "kl": kl, "inertia": inertia, "energy": energy}
    return {name: f(values) for name, f in FEATURES.items()}


# surrogate.target -> (the sample table's column it is fitted on, its name in words); a measured front point
# adds its ``calib_`` column of the same name (refine)
TARGETS = {"al": ("al", "accuracy loss"), "kl": ("kl", "KL divergence to the baseline")}


def target_column(target: str) -> str:
    """The sample table's column that ``surrogate.target`` names."""
    if target not in TARGETS:
        raise ValueError(f"surrogate.target: {target!r}; allowed: {', '.join(TARGETS)}")
    return TARGETS[target][0]


def design_matrix(feature_names, per_layer: dict[str, np.ndarray]) -> np.ndarray:
    """Columns: each named feature for every layer, in order (N, len(features) * L)."""
    bad = [f for f in feature_names if f not in FEATURES]
    if bad or not feature_names:
        raise ValueError(f"surrogate.features: {bad or feature_names}; allowed: {list(FEATURES)}")
    return np.hstack([np.atleast_2d(np.asarray(per_layer[f], dtype=np.float64)) for f in feature_names])


def sample_features(samples, energy: np.ndarray) -> dict[str, np.ndarray]:
    """Every feature (N, L) of measured samples (the sample table), for ``design_matrix``."""
    def column(name):
        return np.array(samples.column(name).to_pylist(), dtype=np.float64)

    kl = column("layer_kl") if "layer_kl" in samples.column_names else np.zeros((samples.num_rows, len(energy)))
    return feature_values(column("layer_al"), kl, column("layer_inertia"), energy)


def candidate_features(cands, choice) -> dict[str, np.ndarray]:
    """Every feature (N, L) of (N, L) candidate indices, for ``design_matrix``."""
    v = cands.layer_values(choice)
    return feature_values(v["al"], v["kl"], v["inertia"], np.broadcast_to(cands.energy, np.shape(choice)))


def _regression(positive: bool):
    """Least squares on columns scaled to unit deviation (a positive scale per column keeps the
    non-negativity constraint and the fitted values; coefficients are mapped back after). Unscaled,
    features spanning orders of magnitude (a KL of 1e-6 next to a noise of 1) made scipy's
    non-negative solver stop at its iteration limit on a third of such designs."""
    return make_pipeline(StandardScaler(with_mean=False), LinearRegression(positive=positive))


def fit_surrogate(features: np.ndarray, measured: np.ndarray, layers: list[str],
                  folds: int = 5, seed: int = 0, feature_names=("layer_al",),
                  positive: bool = False, target: str = "al") -> tuple[dict, np.ndarray]:
    """Fit measured = intercept + coef . features (``target``: what ``measured`` holds, :data:`TARGETS`);
    return the model dict and out-of-fold predictions."""
    target_column(target)
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(measured, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[1] != len(layers) * len(feature_names):
        raise ValueError(f"surrogate: features {x.shape} do not match target {y.shape}, {len(layers)} layers "
                         f"and features {list(feature_names)}")
    if folds < 2:
        raise ValueError(f"surrogate.folds must be >= 2, got {folds}")
    if x.shape[0] == 0:
        raise ValueError("surrogate: no samples to fit")
    reg = _regression(positive).fit(x, y)
    if x.shape[0] < folds:
        # a search space of fewer combinations than folds (e.g. every layer kept one candidate):
        # leave-one-out, or with a single combination no held-out score at all
        import logging

        logging.getLogger(__name__).warning("surrogate: %d samples, fewer than surrogate.folds=%d; %s", x.shape[0],
                                            folds, "leave-one-out" if x.shape[0] > 1 else "no held-out score")
    used = min(folds, x.shape[0])
    if used >= 2:
        oof = cross_val_predict(_regression(positive), x, y,
                                cv=KFold(used, shuffle=True, random_state=seed))
    else:
        oof = np.full_like(y, np.nan)
    held_out = used >= 2 and np.var(y) > 0
    model = {
        "kind": "linear", "target": target, "features": list(feature_names), "positive": bool(positive),
        "layers": list(layers),
        "coef": (reg[-1].coef_ / reg[0].scale_).tolist(), "intercept": float(reg[-1].intercept_),
        "folds": folds, "folds_used": used, "seed": seed, "n_samples": int(x.shape[0]),
        "r2_heldout": float(r2_score(y, oof)) if held_out else float("nan"),
        "rmse_heldout": float(np.sqrt(mean_squared_error(y, oof))) if used >= 2 else float("nan"),
        "r2_train": float(reg.score(x, y)) if np.var(y) > 0 else float("nan"),
        "spearman_heldout": float(spearmanr(y, oof).statistic) if held_out else float("nan"),
    }
    return model, oof


def predict(model: dict, features: np.ndarray) -> np.ndarray:
    """The predicted target (network AL or KL, ``model["target"]``) for rows of the design matrix
    (see ``design_matrix``)."""
    if model.get("kind") not in KINDS:
        raise ValueError(f"surrogate: unknown kind {model.get('kind')!r}; allowed: {KINDS}")
    return np.asarray(features, dtype=np.float64) @ np.asarray(model["coef"]) + model["intercept"]
