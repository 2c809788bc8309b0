"""How often a selection rule passes a point that loses more than it may: one point, and a whole front.

The choice (``select.confidence``, ``select.interval``, ``select.family``) asks that a
one-sided test of the loss against the bound pass, on the calibration images. This
simulates the draws of those images and prints, at 300, 500 and 1,000 images:

1. **One point at exactly the allowed loss**: how often each interval passes it (it should
   in at most 1 - confidence of the draws), for points that only break images and for
   points that also fix some (multinomial broken / fixed / unchanged counts per image):
   ``normal``, the paired normal approximation (``bound.loss_upper_bound``); ``exact``
   (``bound.exact_loss_pvalue``); and the unlabelled rule's exact binomial bound of the
   fraction of changed predictions (``bound.changed_upper_bound``).
2. **A front**: ``--points`` points whose true loss rises with CR from 0 to twice the
   allowed one, measured on the same images; how often the point each rule (interval x
   family) chooses truly loses more than allowed (it should in at most 1 - confidence of
   the draws), and what it gives up: the chosen point's true loss as a fraction of the
   allowed one (1.0: the best safe point), and how often nothing is chosen. Two ways the
   points share images: ``nested`` (an image broken by one point is broken by every point
   of higher CR: the points' counts move together, as on a real front) and ``independent``
   (each point's outcomes drawn on their own: the most chances for one to look better
   than it is).

    python benchmarks/bound_coverage.py           # about 10 min on 2 cores
"""

from __future__ import annotations

import argparse

import numpy as np

from weight_sharing.bound import (
    SelectRule,
    changed_upper_bound,
    exact_selectable,
    loss_upper_bound,
    selectable_rows,
)

LEVELS = (0.75, 0.9, 0.95)
FRONT_RULES = ("normal/none", "exact/none", "normal/ascending", "exact/ascending", "exact/ascending:1",
               "exact/ascending:2", "exact/bonferroni")  # SelectRule.from_text
IMAGES = (300, 500, 1000)


def one_point(allowed: float, draws: int, rng) -> None:
    print("| rule | images | broken / fixed rate [%] | "
          + " | ".join(f"pass rate at {c} (should be <= {1 - c:.2f})" for c in LEVELS) + " |")
    print("|---|---|---|" + "---|" * len(LEVELS))
    for n in IMAGES:
        for fixed in (0.0, 0.25 * allowed, allowed, 4 * allowed):
            pb, pf = allowed + fixed, fixed
            d = rng.multinomial(n, [pb, pf, 1 - pb - pf], size=draws)
            for name in ("normal", "exact"):
                if name == "normal":
                    rates = [float(np.mean(loss_upper_bound(d[:, 0], d[:, 1], n, c) <= allowed)) for c in LEVELS]
                else:
                    rates = [float(np.mean(exact_selectable(d[:, 0], d[:, 1], n, allowed, c))) for c in LEVELS]
                print(f"| calib, {name} | {n} | {100 * pb:.2f} / {100 * pf:.2f} | "
                      + " | ".join(f"{r:.3f}" for r in rates) + " |", flush=True)
    for n in (1000, 3500, 10000):
        changed = rng.binomial(n, allowed, size=draws) / n
        rates = [float(np.mean(changed_upper_bound(changed, n, c) <= allowed)) for c in LEVELS]
        print(f"| unlabelled (changed, exact) | {n} | changed {100 * allowed:.2f} | "
              + " | ".join(f"{r:.3f}" for r in rates) + " |", flush=True)


def front_counts(n: int, broken_rate, fixed_rate, sharing: str, rng):
    """Broken and fixed counts of every point of one draw of ``n`` images."""
    if sharing == "nested":
        w = rng.random(n)  # broken where w < broken rate, fixed where 1 - w < fixed rate: nested in CR
        broken = (w[None, :] < broken_rate[:, None]).sum(axis=1)
        fixed = ((1 - w)[None, :] < fixed_rate[:, None]).sum(axis=1)
        return broken, fixed
    d = np.array([rng.multinomial(n, [b, f, 1 - b - f]) for b, f in zip(broken_rate, fixed_rate)])
    return d[:, 0], d[:, 1]


def fixed_name(fixed_share: float, churn: float) -> str:
    """The fixed-rate column: 0 or rising up to the allowed loss, over a common churn if any."""
    rising = "up to the allowed loss" if fixed_share else "0"
    return f"{100 * churn:g}% + {rising}" if churn else rising


def front(allowed: float, points: int, draws: int, confidence: float, rng, rules=FRONT_RULES,
          images=IMAGES, churn: float = 0.0) -> None:
    loss = np.linspace(0, 2 * allowed, points)  # true loss, rising with CR (the points' order)
    cr = np.arange(points, dtype=np.float64)
    baseline = {"calib_accuracy": 1.0}
    print(f"| images | sharing | fixed rate | interval / family | chosen point breaks the bound (should be <= "
          f"{1 - confidence:.2f}) | chosen true loss / allowed (mean) | nothing chosen |")
    print("|---|---|---|---|---|---|---|")
    for n in images:
        baseline["calib_images"] = n
        for sharing in ("nested", "independent"):
            for fixed_share in (0.0, 1.0):
                fixed_rate = churn + fixed_share * allowed * np.linspace(0, 1, points)
                broken_rate = loss + fixed_rate
                tallies = {r: [0, [], 0] for r in rules}
                for _ in range(draws):
                    broken, fixed = front_counts(n, broken_rate, fixed_rate, sharing, rng)
                    rows = [{"cr": c, "calib_broken": int(b), "calib_fixed": int(f)}
                            for c, b, f in zip(cr, broken, fixed)]
                    for text in rules:
                        ok = selectable_rows(rows, baseline, 1 - allowed, SelectRule.from_text(text, confidence))
                        t = tallies[text]
                        if not ok.any():
                            t[2] += 1
                            continue
                        chosen = int(np.flatnonzero(ok).max())
                        t[0] += loss[chosen] > allowed + 1e-12
                        t[1].append(loss[chosen] / allowed)
                for text, (broke, used, none) in tallies.items():
                    print(f"| {n} | {sharing} | {fixed_name(fixed_share, churn)} | "
                          f"{text.replace('/', ' / ')} | {broke / draws:.3f} | "
                          f"{np.mean(used) if used else float('nan'):.2f} | {none / draws:.3f} |", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--allowed", type=float, default=0.0097, help="allowed loss (fraction): 1%% of a 97%% baseline")
    ap.add_argument("--draws", type=int, default=10_000, help="draws of one point")
    ap.add_argument("--front-draws", type=int, default=1_000, help="draws of a front")
    ap.add_argument("--points", type=int, default=100, help="points of a front")
    ap.add_argument("--confidence", type=float, default=0.9, help="level of the front's rules")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rules", nargs="+", default=list(FRONT_RULES), help="the front's rules, interval/family"
                    "[:failures] (select.failures)")
    ap.add_argument("--images", type=int, nargs="+", default=list(IMAGES), help="calibration images of a front")
    ap.add_argument("--churn", type=float, default=0.0, help="a fixed rate every point of a front has on top "
                    "(broken as much again): changes common to all points, as a correction that moves a few "
                    "images either way at any CR")
    ap.add_argument("--front-only", action="store_true", help="skip the one-point table")
    args = ap.parse_args()
    for text in args.rules:  # a bad rule stops before any draw
        SelectRule.from_text(text, args.confidence)
    rng = np.random.default_rng(args.seed)
    if not args.front_only:
        one_point(args.allowed, args.draws, rng)
        print()
    front(args.allowed, args.points, args.front_draws, args.confidence, rng, args.rules, args.images,
          args.churn)


if __name__ == "__main__":
    main()
