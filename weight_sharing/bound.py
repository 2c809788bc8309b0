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

from dataclasses import dataclass
from functools import lru_cache
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
    """One-sided upper confidence bound of the accuracy loss from paired per-image outcomes, by the normal
    approximation of the mean of per-image differences (``select.interval: normal``; it under-covers when
    few images change, benchmarks/README.md: Selection)."""
    check_confidence(confidence)
    broken, fixed = np.asarray(broken, dtype=np.float64), np.asarray(fixed, dtype=np.float64)
    loss = (broken - fixed) / n
    var = np.maximum((broken + fixed) / n - loss * loss, 0.0) * n / max(n - 1, 1)
    return loss + NormalDist().inv_cdf(confidence) * np.sqrt(var / n)


NUISANCE_SHARE = 0.1  # of the error rate, spent on the confidence set of the changed-image rate (Berger-Boos)
NUISANCE_GRID = 256   # changed-image rates at which the exact test's p-value is maximised


@lru_cache(maxsize=65536)
def exact_loss_pvalue(broken: int, fixed: int, n: int, allowed: float, alpha: float) -> float:
    """p-value of "the loss is at least ``allowed``" from paired outcomes, exact for every true rate.

    Each image is broken, fixed or neither (multinomial). Outcomes are ordered by the normal upper bound
    (:func:`loss_upper_bound` at 1 - ``alpha``), and the p-value is the probability of an outcome ordered
    at or below the observed one, exactly (the multinomial's law), at a loss of ``allowed``: the largest
    such probability over the rate s of changed images (broken + fixed, the nuisance) in its exact
    Clopper-Pearson confidence set at level 1 - ``NUISANCE_SHARE`` x ``alpha``, plus that share (Berger
    and Boos 1994). So the test's error rate is at most ``alpha`` whatever s is, where the normal bound
    alone exceeds it when few images change.
    """
    from scipy.special import gammaln, xlogy
    from scipy.stats import beta, binom

    gamma = NUISANCE_SHARE * alpha
    d_obs = broken + fixed
    lo = beta.ppf(gamma / 2, d_obs, n - d_obs + 1) if d_obs > 0 else 0.0
    hi = beta.ppf(1 - gamma / 2, d_obs + 1, n - d_obs) if d_obs < n else 1.0
    lo = max(lo, allowed)
    if hi < lo:  # every rate the null allows lies outside the confidence set
        return gamma
    s = np.unique(np.concatenate([np.linspace(lo, hi, NUISANCE_GRID), [lo, hi]]))
    p_broken, p_fixed = (s + allowed) / 2, np.maximum(s - allowed, 0.0) / 2
    # outcomes beyond these counts have negligible probability at every s of the set
    b_max = int(min(n, binom.isf(1e-12, n, p_broken.max()) + 1))
    f_max = int(min(n, binom.isf(1e-12, n, p_fixed.max()) + 1))
    i, j = np.arange(b_max + 1)[:, None], np.arange(f_max + 1)[None, :]
    order = loss_upper_bound(i, j, n, 1 - alpha)
    region = (order <= loss_upper_bound(broken, fixed, n, 1 - alpha) + TOLERANCE) & (i + j <= n)
    i, j = np.broadcast_to(i, region.shape)[region], np.broadcast_to(j, region.shape)[region]
    log_pmf = (gammaln(n + 1) - gammaln(i + 1) - gammaln(j + 1) - gammaln(n - i - j + 1))[None, :] \
        + xlogy(i[None, :], p_broken[:, None]) + xlogy(j[None, :], p_fixed[:, None]) \
        + xlogy((n - i - j)[None, :], 1 - s[:, None])
    return float(min(1.0, np.exp(log_pmf).sum(axis=1).max() + gamma))


def exact_selectable(broken, fixed, n: int, allowed: float, confidence: float) -> np.ndarray:
    """Points whose exact test (:func:`exact_loss_pvalue`) rejects "the loss is at least ``allowed``"
    at level 1 - ``confidence`` (elementwise; equal counts are computed once)."""
    check_confidence(confidence)
    broken, fixed = np.atleast_1d(np.asarray(broken)).astype(int), np.atleast_1d(np.asarray(fixed)).astype(int)
    if confidence == 0.5:
        return (broken - fixed) / n <= allowed + TOLERANCE
    alpha = 1 - confidence
    return np.array([exact_loss_pvalue(b, f, int(n), float(allowed), alpha) <= alpha
                     for b, f in zip(broken.tolist(), fixed.tolist())], dtype=bool)


def normal_selectable(broken, fixed, n: int, allowed: float, confidence: float) -> np.ndarray:
    """Points whose normal upper bound (:func:`loss_upper_bound`) is at most ``allowed``."""
    return loss_upper_bound(broken, fixed, n, confidence) <= allowed + TOLERANCE


# select.interval -> the paired test on the labelled calibration images
INTERVALS = {"exact": exact_selectable, "normal": normal_selectable}


def selectable(broken, fixed, n: int, baseline_accuracy: float, bound: float, confidence: float, interval: str):
    """Points whose loss, at ``confidence``, stays within the bound's allowed loss (elementwise), by the
    ``interval`` test (:data:`INTERVALS`)."""
    if interval not in INTERVALS:
        raise ValueError(f"select.interval: {interval!r}; allowed: {', '.join(INTERVALS)}")
    return INTERVALS[interval](broken, fixed, n, allowed_loss(baseline_accuracy, bound), confidence)


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


def calib_selectable(rows: list[dict], baseline: dict, bound: float, confidence: float,
                     rule: SelectRule) -> np.ndarray:
    """``select.split: calib``: the paired loss test (``rule.interval``) on the labelled calibration split."""
    return selectable([r["calib_broken"] for r in rows], [r["calib_fixed"] for r in rows],
                      baseline["calib_images"], baseline["calib_accuracy"], bound, confidence, rule.interval)


def unlabelled_selectable(rows: list[dict], baseline: dict, bound: float, confidence: float,
                          rule: SelectRule) -> np.ndarray:
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


# select.split -> which measured rows pass on their own; never on the test split
SELECTIONS = {"calib": calib_selectable, "unlabelled": unlabelled_selectable}


def ascending_prefix(cr, passes, failures: int = 0) -> np.ndarray:
    """Fixed-sequence testing in CR order: the points that pass, from the lowest CR up to, not including,
    the ``failures`` + 1-th that fails (ties in CR: table order). The order does not depend on the
    measurements, so a point that breaks the bound is declared only if one of the first ``failures`` + 1
    such points in the order passes: at most that many times one point's error rate (no share per point
    with ``failures`` 0, the classic fixed sequence)."""
    order = np.argsort(np.asarray(cr, dtype=np.float64), kind="stable")
    passes = np.asarray(passes, dtype=bool)
    ok = np.zeros(len(order), dtype=bool)
    failed = 0
    for i in order:
        if not passes[i]:
            failed += 1
            if failed > failures:
                break
            continue
        ok[i] = True
    return ok


# select.family -> how one error rate covers choosing among many points: (points, confidence, failures) ->
# the level each point is tested at, and whether the passing points are cut in CR order (ascending_prefix)
FAMILIES = {
    "ascending": (lambda m, c, r: 1 - (1 - c) / (r + 1), True),
    "bonferroni": (lambda m, c, r: 1 - (1 - c) / max(m, 1), False),
    "none": (lambda m, c, r: c, False),
}


@dataclass(frozen=True)
class SelectRule:
    """The ``select`` section: which split decides (``split``), the test of one point (``interval``), how
    the confidence covers choosing among many points (``family``; ``failures``: how many points the
    ascending walk may fail before it stops, each point then tested at a share 1 / (failures + 1) of the
    error rate), and the one-sided ``confidence``."""
    confidence: float
    split: str
    interval: str
    family: str
    failures: int = 0

    def __post_init__(self):
        check_confidence(self.confidence)
        for key, value, allowed in (("split", self.split, SELECTIONS), ("interval", self.interval, INTERVALS),
                                    ("family", self.family, FAMILIES)):
            if value not in allowed:
                raise ValueError(f"select.{key}: {value!r}; allowed: {', '.join(allowed)}")
        if isinstance(self.failures, bool) or not isinstance(self.failures, int) or self.failures < 0:
            raise ValueError(f"select.failures: {self.failures!r}; allowed: an integer >= 0")
        if self.failures and self.family != "ascending":
            raise ValueError(f"select.failures: {self.failures} applies to select.family: ascending only, "
                             f"not {self.family!r}; allowed with it: 0")

    @classmethod
    def from_config(cls, select: dict) -> SelectRule:
        return cls(confidence=float(select["confidence"]), split=select["split"], interval=select["interval"],
                   family=select["family"], failures=select.get("failures", 0))

    @classmethod
    def from_text(cls, text: str, confidence: float, split: str = "calib") -> SelectRule:
        """A rule written as the benchmarks write it: ``interval/family``, ``/family:failures`` where the
        ascending walk may fail (``exact/ascending:1``)."""
        interval, _, family = text.partition("/")
        family, _, failures = family.partition(":")
        return cls(confidence=confidence, split=split, interval=interval, family=family,
                   failures=int(failures) if failures else 0)

    @property
    def name(self) -> str:
        """``interval/family[:failures]``, as :meth:`from_text` reads it."""
        return f"{self.interval}/{self.family}" + (f":{self.failures}" if self.failures else "")


def selectable_rows(rows: list[dict], baseline: dict, bound: float, rule: SelectRule) -> np.ndarray:
    """Which rows may be chosen: each tested by the rule's split and interval at the level its family
    gives, then (``family: ascending``) cut at the ``failures`` + 1-th failure from the lowest CR up."""
    level, cut = FAMILIES[rule.family]
    passes = SELECTIONS[rule.split](rows, baseline, bound, level(len(rows), rule.confidence, rule.failures), rule)
    if cut:
        return ascending_prefix([r["cr"] for r in rows], passes, rule.failures)
    return np.asarray(passes, dtype=bool)


def passes_unchanged(images: int, bound: float, rule: SelectRule) -> bool:
    """Whether a point that changes no prediction of ``images`` images passes ``rule`` at the most lenient
    allowance (1 - bound, a baseline at 100%): if not, no point can be chosen on that many images."""
    allowed = 1 - bound
    level = FAMILIES[rule.family][0](1, rule.confidence, rule.failures)  # one point's level (failures: a share)
    if rule.split == "unlabelled":
        return bool(changed_upper_bound(0.0, images, level) <= allowed + TOLERANCE)
    return bool(INTERVALS[rule.interval]([0], [0], images, allowed, level)[0])


def images_needed(bound: float, rule: SelectRule, most: int = 1 << 20) -> int:
    """The fewest images on which a point that changes nothing passes ``rule`` (:func:`passes_unchanged`)."""
    lo, hi = 1, most
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if passes_unchanged(mid, bound, rule) else (mid + 1, hi)
    return lo


def choose(rows: list[dict], baseline: dict, bound: float, rule: SelectRule) -> int | None:
    """The highest-CR row selectable by ``rule`` (see :func:`selectable_rows`); None if none is."""
    if not rows:
        return None
    return best_within([r["cr"] for r in rows], selectable_rows(rows, baseline, bound, rule))
