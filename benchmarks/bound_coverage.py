"""How often a point that loses exactly the allowed accuracy passes the selection rule.

The choice (``select.confidence``) asks that a one-sided upper confidence bound of the
loss meet the bound. For a point whose true loss is exactly the allowed one, the rule
should pass it in at most 1 - confidence of the draws of the images; this simulates
the draws (multinomial broken / fixed / unchanged counts per image) and prints the
pass rate of the two rules:

- ``calib``: the paired bound on the labelled calibration images (normal approximation
  of the broken - fixed difference, ``bound.loss_upper_bound``), for points that break
  images only or also fix some;
- ``unlabelled``: the bound on the fraction of changed predictions on unlabelled images
  (exact binomial, ``bound.changed_upper_bound``), for a point that changes exactly the
  allowed fraction.

    python benchmarks/bound_coverage.py           # about 10 s
"""

from __future__ import annotations

import argparse

import numpy as np

from weight_sharing.bound import changed_upper_bound, loss_upper_bound

LEVELS = (0.5, 0.75, 0.9, 0.95)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--allowed", type=float, default=0.0097, help="allowed loss (fraction): 1%% of a 97%% baseline")
    ap.add_argument("--draws", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    a = args.allowed
    print("| rule | images | broken / fixed rate [%] | " + " | ".join(f"pass rate at {c} (should be <= {1 - c:.2f})"
                                                             for c in LEVELS) + " |")
    print("|---|---|---|" + "---|" * len(LEVELS))
    for n in (300, 500, 1000):
        for fixed in (0.0, 0.25 * a, a):
            pb, pf = a + fixed, fixed
            d = rng.multinomial(n, [pb, pf, 1 - pb - pf], size=args.draws)
            rates = [float(np.mean(loss_upper_bound(d[:, 0], d[:, 1], n, c) <= a)) for c in LEVELS]
            print(f"| calib (paired, normal) | {n} | {100 * pb:.2f} / {100 * pf:.2f} | "
                  + " | ".join(f"{r:.3f}" for r in rates) + " |")
    for n in (1000, 3500, 10000):
        changed = rng.binomial(n, a, size=args.draws) / n
        rates = [float(np.mean(changed_upper_bound(changed, n, c) <= a)) for c in LEVELS]
        print(f"| unlabelled (changed, exact) | {n} | changed {100 * a:.2f} | " + " | ".join(f"{r:.3f}" for r in rates)
              + " |")


if __name__ == "__main__":
    main()
