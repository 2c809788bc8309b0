"""Choices are made on calibration only: the test split is measured and reported, never used to pick."""

import numpy as np
import pytest

from weight_sharing.bound import (
    SelectRule,
    changed_upper_bound,
    choose,
    exact_selectable,
    images_needed,
    loss_upper_bound,
    selectable,
    selectable_rows,
)
from weight_sharing.export import choose_point
from weight_sharing.report import choices


def rule(confidence, split="calib", interval="normal", family="none"):
    """A selection rule; by default each point on its own by the normal bound (the tests of the other
    intervals and families name theirs)."""
    return SelectRule(confidence=confidence, split=split, interval=interval, family=family)


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
                    "test_fixed": int(rng.integers(0, 10)), "test_within_bound": bool(rng.integers(0, 2)),
                    "granularity": ("tensor", "channel")[len(out) % 2]})  # read by uniform choices only
    return out


def scramble_test(table, seed):
    rng = np.random.default_rng(seed)
    return [{**r, "test_accuracy": float(rng.uniform(0.5, 1.0)), "test_broken": int(rng.integers(0, 500)),
             "test_fixed": int(rng.integers(0, 500)), "test_within_bound": bool(rng.integers(0, 2))} for r in table]


@pytest.mark.parametrize("confidence", [0.5, 0.9])
def test_no_choice_changes_when_the_test_results_change(confidence):
    v, u = rows(0), rows(1, n=8)
    picked = choices(v, u, BASELINE, 0.99, rule(confidence))
    exported = [choose_point(v, BASELINE, 0.99, t, rule(confidence))[0]["k"] for t in (1.0, 1.5)]
    for seed in range(5):
        v2, u2 = scramble_test(v, seed), scramble_test(u, seed + 10)
        again = choices(v2, u2, BASELINE, 0.99, rule(confidence))
        assert {k: again[k] for k in again if k != "oracle"} == {k: picked[k] for k in picked if k != "oracle"}
        assert [choose_point(v2, BASELINE, 0.99, t, rule(confidence))[0]["k"] for t in (1.0, 1.5)] == exported
    assert picked["best"] is not None


def test_confidence_half_is_the_plain_bound():
    broken, fixed = np.arange(0, 20), np.zeros(20, dtype=int)
    plain = BASELINE["calib_accuracy"] - (broken - fixed) / 500 >= 0.99 * BASELINE["calib_accuracy"] - 1e-12
    assert np.array_equal(selectable(broken, fixed, 500, 0.9, 0.99, 0.5, "normal"), plain)
    # more confidence admits fewer points; a point that breaks nothing always passes
    assert selectable(broken, fixed, 500, 0.9, 0.99, 0.9, "normal").sum() < plain.sum()
    assert selectable(np.array([0]), np.array([0]), 500, 0.9, 0.99, 0.99, "normal")[0]


def test_loss_upper_bound_is_the_paired_normal_bound_of_the_per_image_differences():
    """From the images themselves: per image +1 (broken), -1 (fixed) or 0; their mean plus z x their standard
    error (sample standard deviation over sqrt n), z the normal quantile of the confidence (scipy's)."""
    from scipy.stats import norm

    for broken, fixed, n, confidence in ((12, 4, 400, 0.9), (3, 0, 500, 0.95), (0, 0, 200, 0.9), (40, 39, 1000, 0.75)):
        d = np.array([1.0] * broken + [-1.0] * fixed + [0.0] * (n - broken - fixed))
        want = d.mean() + norm.ppf(confidence) * d.std(ddof=1) / np.sqrt(n)
        assert loss_upper_bound(broken, fixed, n, confidence) == pytest.approx(want, rel=1e-12, abs=1e-15)
    with pytest.raises(ValueError, match="select.confidence: 1.2"):
        loss_upper_bound(1, 0, 10, 1.2)


def test_choose_takes_the_highest_cr_that_passes():
    table = [{"cr": 5.0, "calib_broken": 0, "calib_fixed": 0}, {"cr": 9.0, "calib_broken": 40, "calib_fixed": 0},
             {"cr": 7.0, "calib_broken": 2, "calib_fixed": 0}]
    assert choose(table, BASELINE, 0.99, rule(0.5)) == 2
    assert choose(table[1:2], BASELINE, 0.99, rule(0.5)) is None


def with_selection(table, seed, n=3500):
    """Each row with a fraction of changed predictions on ``n`` unlabelled selection images."""
    rng = np.random.default_rng(seed)
    return [{**r, "select_changed": int(rng.integers(0, 60)) / n, "select_kl": float(rng.uniform(0, 0.1)),
             "select_images": n} for r in table]


def scramble_labels(table, seed):
    """The labelled results (calibration and test) replaced by random ones."""
    rng = np.random.default_rng(seed)
    out = scramble_test(table, seed)
    return [{**r, "calib_broken": int(rng.integers(0, 500)), "calib_fixed": int(rng.integers(0, 500)),
             "calib_al": float(rng.uniform(-0.1, 0.5))} for r in out]


@pytest.mark.parametrize("confidence", [0.5, 0.9])
def test_unlabelled_selection_depends_on_no_label(confidence):
    """select.split: unlabelled: no choice changes when the calibration or the test labels change; it
    follows the changed predictions on the selection images alone."""
    v, u = with_selection(rows(0), 1), with_selection(rows(1, n=8), 2)
    picked = choices(v, u, BASELINE, 0.99, rule(confidence, "unlabelled"))
    assert picked["best"] is not None
    calib_changed = 0
    exported = [choose_point(v, BASELINE, 0.99, t, rule(confidence, "unlabelled"))[0]["k"] for t in (1.0, 1.5)]
    for seed in range(5):
        v2, u2 = scramble_labels(v, seed), scramble_labels(u, seed + 10)
        again = choices(v2, u2, BASELINE, 0.99, rule(confidence, "unlabelled"))
        assert {k: again[k] for k in again if k != "oracle"} == {k: picked[k] for k in picked if k != "oracle"}
        assert [choose_point(v2, BASELINE, 0.99, t, rule(confidence, "unlabelled"))[0]["k"]
                for t in (1.0, 1.5)] == exported
        calib_changed += (choices(v2, u2, BASELINE, 0.99, rule(confidence))["best"]
                          != choices(v, u, BASELINE, 0.99, rule(confidence))["best"])
    assert calib_changed  # the scrambled labels do move the calibration rule's choice
    # the chosen point: the highest CR among those changing few enough predictions (at most 1 - bound)
    allowed = 1 - 0.99
    if confidence == 0.5:
        ok = [i for i, r in enumerate(v) if r["select_changed"] <= allowed + 1e-12]
        assert picked["best"] == max(ok, key=lambda i: v[i]["cr"])


def test_unlabelled_selection_without_its_measurements_is_refused():
    with pytest.raises(ValueError, match="select.split: unlabelled"):
        choose(rows(0), BASELINE, 0.99, rule(0.9, "unlabelled"))
    with pytest.raises(ValueError, match="select.split: 'test'"):
        choose(with_selection(rows(0), 1), BASELINE, 0.99, rule(0.9, "test"))


def test_changed_upper_bound_covers_the_true_rate():
    """A point that truly changes the allowed fraction of predictions passes in at most 1 - confidence of
    the draws of its selection images (the exact binomial bound), and not far less often."""
    rng = np.random.default_rng(0)
    n, p = 3500, 0.009
    draws = rng.binomial(n, p, size=20000) / n
    for confidence in (0.75, 0.9, 0.95):
        passed = np.mean(changed_upper_bound(draws, n, confidence) <= p)
        assert 1 - confidence - 0.04 < passed <= 1 - confidence + 0.005, (confidence, passed)
    # confidence 0.5 is the measured fraction itself
    assert np.array_equal(changed_upper_bound(draws, n, 0.5), draws)
    with pytest.raises(ValueError, match="select.confidence: 1.0"):
        changed_upper_bound(0.01, n, 1.0)


def test_the_summary_flags_a_calibration_draw_unlike_the_test_images():
    """The benchmark's second data split: the MobileNet scored 456 of 500 calibration and 949 of 1,000 test
    images; pooled p = 1405 / 1500, z = (0.912 - 0.949) / sqrt(p (1 - p) (1/500 + 1/1000)) = -2.77."""
    from weight_sharing.bound import split_difference_z
    from weight_sharing.summary import _draw_flag

    z = split_difference_z(0.912, 500, 0.949, 1000)
    assert z == pytest.approx(-2.774, abs=2e-3)
    assert split_difference_z(0.97, 500, 0.975, 1000) == pytest.approx(-0.567, abs=2e-3)  # the demo's draw
    assert split_difference_z(1.0, 500, 1.0, 1000) == 0.0
    assert "-2.8 standard errors" in _draw_flag(z) and _draw_flag(-0.57) == "" and _draw_flag(None) == ""


def test_stage_of_reads_the_path_from_its_end():
    """A results folder under a folder named benchmarks (the benchmark runs' own) still times the right stage."""
    from weight_sharing.report import stage_of

    assert stage_of("/w/benchmarks/runs/net/benchmarks/sweep/part000.tsv") == "sweep"
    assert stage_of("/w/benchmarks/runs/net/benchmarks/export.tsv") == "export"
    with pytest.raises(ValueError, match="not a benchmark file"):
        stage_of("/w/net/logs/export.log")


def test_fronts_star_marks_the_chosen_point_not_another_with_the_same_k(tmp_path, monkeypatch):
    """Two validated points with the same K vector and different codebook counts: the star goes to the
    chosen point (by its number), never to the other."""
    import matplotlib.axes
    import pyarrow as pa

    from weight_sharing import report

    stars = []
    scatter = matplotlib.axes.Axes.scatter

    def spy(self, x, y, *args, **kwargs):
        if kwargs.get("marker") == "*":
            stars.append((list(map(float, x)), list(map(float, y))))
        return scatter(self, x, y, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "scatter", spy)
    rows = [{"point": 0, "k": [2, 2], "groups": [1, 1], "cr": 10.0, "calib_al": 0.004, "test_al": 0.006,
             "on_front": True},
            {"point": 1, "k": [2, 2], "groups": [1, 6], "cr": 9.0, "calib_al": 0.001, "test_al": 0.002,
             "on_front": True}]
    predicted = pa.Table.from_pylist([{"cr": r["cr"], "predicted": r["calib_al"]} for r in rows])
    uniform = pa.Table.from_pylist([{"granularity": "tensor", "cr": 4.0, "test_al": 0.001},
                                    {"granularity": "channel", "cr": 5.0, "test_al": 0.002}])
    report.plot_fronts(predicted, pa.Table.from_pylist(rows), uniform, {"test_accuracy": 0.97}, 0.99,
                       tmp_path / "fronts.png", "t", chosen=1)
    assert stars == [([9.0], [pytest.approx(0.2)])]


def test_uniform_choices_per_granularity_and_the_better():
    """Each uniform reference is chosen among its own rows; the gain's reference is the better of the two,
    whichever granularity it is (indices into the whole table)."""
    base = {"calib_images": 500, "calib_accuracy": 0.98, "test_accuracy": 0.98}

    def row(granularity, cr, broken):
        return {"granularity": granularity, "k": 2, "cr": cr, "calib_broken": broken, "calib_fixed": 0,
                "calib_accuracy": 0.98 - broken / 500, "test_accuracy": 0.97}

    # 1% of 0.98 allows 4.9 images: 2 broken pass, 20 do not (confidence 0.5: the measured loss)
    for uniform, want in (([row("tensor", 8.0, 2), row("tensor", 16.0, 20), row("channel", 12.0, 2)],
                           {"uniform_tensor": 0, "uniform_channel": 2, "uniform": 2}),
                          ([row("channel", 30.0, 20), row("channel", 6.0, 2), row("tensor", 9.0, 2)],
                           {"uniform_tensor": 2, "uniform_channel": 1, "uniform": 2}),
                          ([row("channel", 30.0, 20), row("tensor", 9.0, 2)],
                           {"uniform_tensor": 1, "uniform_channel": None, "uniform": 1})):
        pick = choices([], uniform, base, 0.99, rule(0.5))
        assert {k: pick[k] for k in want} == want


def test_unlabelled_rule_uses_no_label_not_even_the_baseline_accuracy():
    """select.split: unlabelled: a point passes when at least ``bound`` of its selection predictions agree with
    the baseline's (exact binomial bound); neither the calibration labels nor the baseline's accuracy move a
    choice, and a target no point meets exports the point changing the fewest selection predictions."""
    v, u = with_selection(rows(0), 1), with_selection(rows(1, n=8), 2)
    picked = choices(v, u, BASELINE, 0.99, rule(0.5, "unlabelled"))
    for calib_accuracy in (0.5, 0.75, 0.999):
        other = {**BASELINE, "calib_accuracy": calib_accuracy}
        again = choices(v, u, other, 0.99, rule(0.5, "unlabelled"))
        assert {k: again[k] for k in again if k != "oracle"} == {k: picked[k] for k in picked if k != "oracle"}
    ok = [i for i, r in enumerate(v) if r["select_changed"] <= 0.01 + 1e-12]  # 1 - bound, measured (0.5)
    assert picked["best"] == max(ok, key=lambda i: v[i]["cr"])
    # nothing meets a bound no selection draw can: the fallback is the fewest changed, whatever calib_al says
    # calib_al ranks the points the other way; every point breaks an image, so none meets 0.99999 on calibration
    strict = [{**r, "calib_al": -r["select_changed"], "calib_broken": r["calib_broken"] + 1, "calib_fixed": 0}
              for r in v]
    point, met = choose_point(strict, BASELINE, 0.99999, 1.0, rule(0.9, "unlabelled"))
    assert not met
    assert point["select_changed"] == min(r["select_changed"] for r in v)
    point, met = choose_point(strict, BASELINE, 0.99999, 1.0, rule(0.9, "calib"))
    assert not met and point["calib_al"] == min(r["calib_al"] for r in strict)


def test_exact_interval_never_passes_a_point_at_the_allowed_loss_more_often_than_it_should():
    """The error rate of ``interval: exact``, computed exactly: every outcome (broken, fixed) of 30 images
    enumerated with scipy's multinomial law at true rates on the null's boundary (loss = the allowed one,
    more or fewer images fixed) is passed with total probability at most 1 - confidence; the normal
    bound exceeds that at the same rates (which is why it is no longer the default)."""
    from scipy.stats import multinomial

    from weight_sharing.bound import normal_selectable

    n, allowed, confidence = 30, 0.1, 0.9
    b, f = np.array([(i, j) for i in range(n + 1) for j in range(n + 1 - i)]).T
    exact, normal = exact_selectable(b, f, n, allowed, confidence), normal_selectable(b, f, n, allowed, confidence)
    worst_normal = 0.0
    for p_fixed in (0.0, 0.02, 0.1, 0.3):
        pmf = multinomial.pmf(np.stack([b, f, n - b - f], axis=1), n, [allowed + p_fixed, p_fixed,
                                                                       1 - allowed - 2 * p_fixed])
        assert pmf.sum() == pytest.approx(1.0)
        assert pmf[exact].sum() <= 1 - confidence + 1e-9, p_fixed
        worst_normal = max(worst_normal, pmf[normal].sum())
    assert worst_normal > 1 - confidence
    # it is not empty: breaking nothing of 30 images passes a 10% allowance, breaking 3 does not
    assert exact_selectable([0, 3], [0, 0], n, allowed, confidence).tolist() == [True, False]


def test_exact_interval_credits_fixed_images_and_more_images():
    """Fixed images offset broken ones, and the same loss on more images is more certain."""
    allowed = 0.0097
    assert exact_selectable([1, 2], [0, 0], 500, allowed, 0.9).tolist() == [True, False]
    assert exact_selectable([4], [0], 1000, allowed, 0.9)[0] and not exact_selectable([2], [0], 500, allowed, 0.9)[0]
    assert exact_selectable([2, 2], [1, 2], 500, allowed, 0.9).all()
    # many changed images make the same net loss less certain (their spread): 4 + 4 passes, 6 + 6 does not
    assert exact_selectable([4, 6], [4, 6], 500, allowed, 0.9).tolist() == [True, False]
    # confidence 0.5 is the measured loss itself
    assert exact_selectable([4, 5], [0, 0], 500, allowed, 0.5).tolist() == [True, False]


def test_ascending_family_stops_at_the_first_failure_in_cr_order():
    """From the lowest CR up: a point above the first failure is not chosen even when it passes alone
    (family none chooses it), and bonferroni tests each point at a share of the error rate."""
    base = {"calib_images": 1000, "calib_accuracy": 0.97}
    broken = {4.0: 0, 6.0: 1, 9.0: 40, 12.0: 5, 15.0: 60}  # CR -> broken images; nothing fixed
    table = [{"cr": cr, "calib_broken": b, "calib_fixed": 0} for cr, b in reversed(broken.items())]
    alone = rule(0.9, interval="exact")
    assert [r["cr"] for r, ok in zip(table, selectable_rows(table, base, 0.99, alone)) if ok] == [12.0, 6.0, 4.0]
    assert table[choose(table, base, 0.99, alone)]["cr"] == 12.0
    ascending = rule(0.9, interval="exact", family="ascending")
    assert [r["cr"] for r, ok in zip(table, selectable_rows(table, base, 0.99, ascending)) if ok] == [6.0, 4.0]
    assert table[choose(table, base, 0.99, ascending)]["cr"] == 6.0
    # 5 points at 0.1 / 5 each: 5 broken of 1,000 no longer pass a 0.97% allowance, 3 still do
    bonferroni = rule(0.9, interval="exact", family="bonferroni")
    assert [r["cr"] for r, ok in zip(table, selectable_rows(table, base, 0.99, bonferroni)) if ok] == [6.0, 4.0]
    assert exact_selectable([5, 3], [0, 0], 1000, 0.0097, 0.9).all()
    assert exact_selectable([5, 3], [0, 0], 1000, 0.0097, 0.98).tolist() == [False, True]


def test_ascending_with_failures_walks_past_them_at_a_share_of_the_error_rate():
    """select.failures: n lets the walk from the lowest CR up fail n points and stop at the n + 1-th; each
    point is then tested at 1 - (1 - confidence) / (n + 1), so a point that passes at 0.9 alone (5 broken
    of 1,000 against a 0.97% allowance) fails at 0.95 and counts as a failure."""
    base = {"calib_images": 1000, "calib_accuracy": 0.97}
    broken = {2.0: 0, 3.0: 40, 4.0: 3, 5.0: 5, 6.0: 2, 7.0: 40, 8.0: 1}  # CR -> broken images
    table = [{"cr": cr, "calib_broken": b, "calib_fixed": 0} for cr, b in reversed(broken.items())]
    assert exact_selectable([5], [0], 1000, 0.0097, 0.9).tolist() == [True]
    assert exact_selectable([5, 4], [0, 0], 1000, 0.0097, 0.95).tolist() == [False, True]
    assert exact_selectable([4], [0], 1000, 0.0097, 1 - 0.1 / 3).tolist() == [False]

    def declared(failures):
        r = SelectRule(confidence=0.9, split="calib", interval="exact", family="ascending", failures=failures)
        return sorted(row["cr"] for row, ok in zip(table, selectable_rows(table, base, 0.99, r)) if ok)

    assert declared(0) == [2.0]
    assert declared(1) == [2.0, 4.0]  # 3 fails, 5 fails at 0.95: the second failure stops the walk
    assert declared(2) == [2.0, 4.0, 6.0]  # at 0.967: 3, 5 and 7 fail
    assert declared(3) == [2.0, 4.0, 6.0, 8.0]
    assert declared(7) == [2.0, 6.0, 8.0]  # at 0.9875 even 3 broken of 1,000 fail: more failures, stricter tests
    assert table[choose(table, base, 0.99, rule(0.9, interval="exact"))]["cr"] == 8.0  # each point alone
    # the fewest images on which an unchanged point passes grows with the share
    needed = [images_needed(0.99, SelectRule(0.9, "calib", "exact", "ascending", n)) for n in (0, 1, 2)]
    assert needed[0] < needed[1] < needed[2]
    assert SelectRule.from_text("exact/ascending:2", 0.9) == SelectRule(0.9, "calib", "exact", "ascending", 2)
    assert SelectRule.from_text("exact/ascending:2", 0.9).name == "exact/ascending:2"


def test_failures_apply_to_the_ascending_family_only():
    from weight_sharing.config import ConfigError, validate_schema

    for family in ("bonferroni", "none"):
        with pytest.raises(ValueError, match=f"select.failures: 1 applies to select.family: ascending only, not "
                                             f"'{family}'"):
            SelectRule(confidence=0.9, split="calib", interval="exact", family=family, failures=1)
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match=r"select.failures: .*allowed: an integer >= 0"):
            SelectRule(confidence=0.9, split="calib", interval="exact", family="ascending", failures=bad)
    with pytest.raises((ConfigError, ValueError), match="failures"):
        validate_schema({"networks": {"n": {"category": "heavy", "demo": True, "model": {"source": "builtin",
                                                                                  "arch": "lenet5"}}},
                         "select": {"failures": -1}})


def test_a_bad_selection_rule_names_the_key_and_what_is_allowed():
    from weight_sharing.config import ConfigError, validate_schema

    for key, value in (("interval", "wald"), ("family", "holm"), ("split", "test")):
        with pytest.raises(ValueError, match=f"select.{key}: '{value}'; allowed: "):
            SelectRule(**{"confidence": 0.9, "split": "calib", "interval": "exact", "family": "none", key: value})
        with pytest.raises((ConfigError, ValueError), match=value):
            validate_schema({"networks": {"n": {"category": "heavy", "demo": True, "model": {"source": "builtin",
                                                                                      "arch": "lenet5"}}},
                             "select": {key: value}})


def test_the_better_uniform_reference_is_the_higher_of_the_two_granularities_choices():
    # per tensor every CR passes; per channel CR 3 breaks 40 of 500 images. One ascending order over both
    # would stop at that failure and report CR 2, below the CR 6 that per tensor reaches on its own
    def ref(cr, granularity, broken):
        acc = BASELINE["calib_accuracy"] - broken / 500
        return {"cr": cr, "granularity": granularity, "calib_broken": broken, "calib_fixed": 0,
                "calib_accuracy": acc, "calib_al": BASELINE["calib_accuracy"] - acc, "test_accuracy": acc}

    u = [ref(2.0, "tensor", 0), ref(4.0, "tensor", 0), ref(6.0, "tensor", 1), ref(1.5, "channel", 0),
         ref(3.0, "channel", 40)]
    picked = choices([], u, BASELINE, 0.99, rule(0.9, interval="exact", family="ascending"))
    assert (picked["uniform_tensor"], picked["uniform_channel"]) == (2, 3)
    assert picked["uniform"] == picked["uniform_99"] == 2
    # where neither granularity has a selectable reference, there is none
    assert choices([], u[4:], BASELINE, 0.99, rule(0.9, interval="exact", family="ascending"))["uniform"] is None
