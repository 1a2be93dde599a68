"""Coverage of the interval estimators on the four designs (issue 15), in one command.

    .venv/bin/python benchmarks/simulation_coverage.py            # 500 trials a design
    .venv/bin/python benchmarks/simulation_coverage.py --trials 50 --designs paired

For each design of :func:`analysis.simulate.simulate_design` and each estimator of
:data:`analysis.coverage.ESTIMATORS` (the same trials for every estimator), prints one
line: the share of 95% intervals that cover the true effect (0.25 SD), the mean degrees of
freedom, the mean standard error and the standard deviation of the estimates. With 500
trials the binomial standard deviation of a 95% coverage is about 1 point. Figures in
``benchmarks/README.md``. To add an estimator, append it to ``ESTIMATORS`` in
``analysis/coverage.py``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from analysis.coverage import ESTIMATORS, coverage_study
from analysis.simulate import DESIGNS


def main() -> None:
    """Run the study and print one line per design and estimator."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=500, help="trials per design")
    parser.add_argument("--designs", nargs="+", default=list(DESIGNS), choices=DESIGNS)
    parser.add_argument("--estimators", nargs="+", default=[e.name for e in ESTIMATORS],
                        choices=[e.name for e in ESTIMATORS])
    parser.add_argument("--seed", type=int, default=20261204)
    args = parser.parse_args()
    chosen = tuple(e for e in ESTIMATORS if e.name in args.estimators)
    print(f"# simulation coverage: {args.trials} trials per design, true effect 0.25 SD, "
          f"{os.cpu_count()} CPU(s), python {sys.version.split()[0]}")
    for estimator in chosen:
        print(f"# {estimator.name}: {estimator.description}")
    for design in args.designs:
        start = time.perf_counter()
        for r in coverage_study(design, chosen, trials=args.trials, seed=args.seed):
            print(f"design={r.design} estimator={r.estimator} trials={r.trials} "
                  f"coverage={r.coverage:.3f} mean_df={r.mean_df:.1f} mean_se={r.mean_se:.4f} "
                  f"sd_estimate={r.sd_estimate:.4f}", flush=True)
        print(f"# {design}: {time.perf_counter() - start:.1f} s", flush=True)


if __name__ == "__main__":
    main()
