"""Stage surrogate: fit the surrogate model (``surrogate_model``) on the samples, scored on held-out folds.

Stored as JSON, never pickle; the out-of-fold predictions against the measured target (``surrogate.target``)
are plotted.
"""
from __future__ import annotations

import logging

import numpy as np

from .io import atomic_path, write_json
from .surrogate_model import TARGETS, design_matrix, fit_surrogate, sample_features, target_column
from .tables import read_layers, read_samples

log = logging.getLogger(__name__)


def plot_fit(measured: np.ndarray, predicted: np.ndarray, model: dict, path, title: str) -> None:
    """Scatter of out-of-fold predicted vs measured target (AL in percentage points, or KL)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    target = model.get("target", "al")
    scale, unit = (100, " (pp, calibration)") if target == "al" else (1, " (calibration)")
    what = TARGETS[target][1]
    fig, ax = plt.subplots(figsize=(5, 5))
    m, p = scale * np.asarray(measured), scale * np.asarray(predicted)
    ax.scatter(m, p, s=6, alpha=0.5)
    both = np.concatenate([m, p])
    both = both[np.isfinite(both)] if np.isfinite(both).any() else np.zeros(1)
    lo, hi = float(both.min()), float(both.max())
    ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    ax.set_xlabel(f"measured {what}{unit}")
    ax.set_ylabel(f"predicted {what} (out-of-fold)")
    rmse = f"{100 * model['rmse_heldout']:.2f} pp" if target == "al" else f"{model['rmse_heldout']:.3g}"
    ax.set_title(f"{title}: R² = {model['r2_heldout']:.3f}, RMSE = {rmse}")
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)


def run(*, samples: list[str], layers: str, surrogate: dict, title: str, out_model: str, out_plot: str) -> None:
    """Fit on the sample shards ``samples`` over the layer table ``layers``, with the ``surrogate`` section."""
    table = read_samples(samples)
    layer_table = read_layers(layers)
    features = list(surrogate["features"])
    target = surrogate.get("target", "al")
    x = design_matrix(features, sample_features(table, [l["energy"] for l in layer_table]))
    y = np.asarray(table.column(target_column(target)).to_numpy(), dtype=np.float64)
    model, oof = fit_surrogate(x, y, [l["name"] for l in layer_table], folds=surrogate["folds"],
                               seed=surrogate["seed"], feature_names=features, positive=surrogate["positive"],
                               target=target)
    log.info("surrogate: held-out R2 %.3f, RMSE %.4f on %d samples", model["r2_heldout"],
                                     model["rmse_heldout"], model["n_samples"])
    with atomic_path(out_plot) as tmp:
        plot_fit(y, oof, model, tmp, title)
    write_json(model, out_model)
