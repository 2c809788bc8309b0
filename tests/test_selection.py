"""Choices are made on calibration only: the test split is measured and reported, never used to pick."""

import numpy as np
import pytest

from weight_sharing.bound import choose, loss_upper_bound, selectable
from weight_sharing.export import choose_point
from weight_sharing.report import choices

BASELINE = {"calib_accuracy": 0.9, "test_accuracy": 0.92, "calib_images": 500, "test_images": 1000}


def rows(seed, n=40):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        broken, fixed = int(rng.integers(0, 15)), int(rng.integers(0, 5))
        acc = BASELINE["calib_accuracy"] - (broken - fixed) / 500
        out.append({"k": [int(rng.integers(2, 64))], "cr": float(rng.uniform(2, 30)), "calib_broken": broken,
                    "calib_fixed": fixed, "calib_accuracy": acc, "calib_al": BASELINE["calib_accuracy"] - acc,
                    "test_accuracy": float(rng.uniform(0.85, 0.93)), "test_broken": int(rng.integers(0, 30)),
                    "test_fixed": int(rng.integers(0, 10)), "test_within_bound": bool(rng.integers(0, 2))})
    return out


def scramble_test(table, seed):
    rng = np.random.default_rng(seed)
    return [{**r, "test_accuracy": float(rng.uniform(0.5, 1.0)), "test_broken": int(rng.integers(0, 500)),
             "test_fixed": int(rng.integers(0, 500)), "test_within_bound": bool(rng.integers(0, 2))} for r in table]


@pytest.mark.parametrize("confidence", [0.5, 0.9])
def test_no_choice_changes_when_the_test_results_change(confidence):
    v, u = rows(0), rows(1, n=8)
    picked = choices(v, u, BASELINE, 0.99, confidence)
    exported = [choose_point(v, BASELINE, 0.99, t, confidence)[0]["k"] for t in (1.0, 1.5)]
    for seed in range(5):
        v2, u2 = scramble_test(v, seed), scramble_test(u, seed + 10)
        again = choices(v2, u2, BASELINE, 0.99, confidence)
        assert {k: again[k] for k in again if k != "oracle"} == {k: picked[k] for k in picked if k != "oracle"}
        assert [choose_point(v2, BASELINE, 0.99, t, confidence)[0]["k"] for t in (1.0, 1.5)] == exported
    assert picked["best"] is not None


def test_confidence_half_is_the_plain_bound():
    broken, fixed = np.arange(0, 20), np.zeros(20, dtype=int)
    plain = BASELINE["calib_accuracy"] - (broken - fixed) / 500 >= 0.99 * BASELINE["calib_accuracy"] - 1e-12
    assert np.array_equal(selectable(broken, fixed, 500, 0.9, 0.99, 0.5), plain)
    # more confidence admits fewer points; a point that breaks nothing always passes
    assert selectable(broken, fixed, 500, 0.9, 0.99, 0.9).sum() < plain.sum()
    assert selectable(np.array([0]), np.array([0]), 500, 0.9, 0.99, 0.99)[0]


def test_loss_upper_bound_matches_the_paired_standard_error():
    # 12 broken and 4 fixed of 400: mean 0.02, per-image variance (16/400 - 0.02^2) x 400/399
    ub = loss_upper_bound(12, 4, 400, 0.8413447460685429)  # z = 1
    var = (16 / 400 - 0.02 ** 2) * 400 / 399
    assert ub == pytest.approx(0.02 + np.sqrt(var / 400))
    with pytest.raises(ValueError, match="select.confidence: 1.2"):
        loss_upper_bound(1, 0, 10, 1.2)


def test_choose_takes_the_highest_cr_that_passes():
    table = [{"cr": 5.0, "calib_broken": 0, "calib_fixed": 0}, {"cr": 9.0, "calib_broken": 40, "calib_fixed": 0},
             {"cr": 7.0, "calib_broken": 2, "calib_fixed": 0}]
    assert choose(table, "calib", 500, 0.9, 0.99, 0.5) == 2
    assert choose(table[1:2], "calib", 500, 0.9, 0.99, 0.5) is None
