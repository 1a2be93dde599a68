"""Benchmark of ``preuve analyze`` (``make bench-analysis``).

For synthetic cluster trials of 50,000, 250,000 and 1,000,000 pupils (25 pupils per class:
2,000 to 40,000 classes, two classes per school, randomised within school, as in the
core example protocol ``protocols/fluence-cp-2027.yaml``), this prints:

* ``analyze_s``: wall time of ``preuve analyze`` end to end, as a subprocess on the CSV
  files (interpreter start, imports, reading and checking the files, every estimate and
  check of the protocol: ITT, subgroups, CACE, attrition, balance, ICC, CONSORT, JSON);
* ``bare_fit_s``: wall time of the bare statsmodels fit of the same primary model on the
  same data already in memory: OLS of the endline on the arm, the baseline and its
  missingness indicator with school fixed effects (demeaned with pandas: statsmodels has no
  absorbing estimator and 20,000 school dummies do not fit in memory) and errors clustered
  by class (``cov_type="cluster"``);
* ``itt_fit_in_memory_s``: our primary ITT estimator (:func:`analysis.effects.estimate_effects`)
  on the same data in memory: the like-for-like counterpart of the bare fit;
* ``import_floor_s``: wall time of a bare interpreter that only imports the numerical
  libraries ``preuve analyze`` reads and fits with (numpy, pandas, scipy.special,
  pyarrow's CSV reader and compute functions), nothing else: the least any Python
  ``preuve analyze`` pays before reading a byte, printed so that the goal can be judged;
* the peak resident memory of each (``ru_maxrss`` of the child process), and the CPU time
  (user + system) of each: on a shared 2-core machine the wall time varies with the other
  load, the CPU time much less.

The last line is ``ratio_analyze_to_bare_fit_1m=X.XX``. Goal (issue 6): 1M pupils in under
60 s, at most 1.5 times the bare fit.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL = ROOT / "protocols" / "fluence-cp-2027.yaml"
SIZES = (50_000, 250_000, 1_000_000)
PUPILS_PER_CLASS = 25

BARE_FIT = r"""
import json, resource, sys, time
import numpy as np, pandas as pd, statsmodels.api as sm
units = pd.read_csv(sys.argv[1], dtype=str)
long = pd.read_csv(sys.argv[2], dtype={"learner_id": str, "unit_id": str})
wide = long.pivot(index="learner_id", columns="wave", values="score")
unit = long.drop_duplicates("learner_id").set_index("learner_id")["unit_id"]
frame = wide.join(unit).merge(units, on="unit_id").dropna(subset=["endline"])
frame["arm"] = (frame["arm"] == "lectio").astype(float)
frame["missing"] = frame["baseline"].isna().astype(float)
frame["baseline"] = frame["baseline"].fillna(0.0)
frame["cluster"] = pd.factorize(frame["unit_id"])[0]
start = time.perf_counter()
cpu = time.process_time()
columns = ["endline", "arm", "baseline", "missing"]
demeaned = frame[columns] - frame.groupby("school_uai")[columns].transform("mean")
fit = sm.OLS(demeaned["endline"], demeaned[["arm", "baseline", "missing"]]).fit(
    cov_type="cluster", cov_kwds={"groups": frame["cluster"].to_numpy()})
elapsed = time.perf_counter() - start
cpu = time.process_time() - cpu
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": elapsed, "cpu": cpu, "peak_mb": peak,
                  "estimate": float(fit.params["arm"])}))
"""

OUR_FIT = r"""
import json, sys, time
from pathlib import Path
from analysis.effects import estimate_effects
from analysis.inputs import plan_from_protocol, read_outcomes, read_units
from analysis.sample import build_sample
from experiments.protocol.language import load_protocol
plan = plan_from_protocol(load_protocol(sys.argv[1]))
units = read_units(Path(sys.argv[2]), plan)
outcomes = read_outcomes(Path(sys.argv[3]), units)
sample = build_sample(plan, units, outcomes, plan.outcomes[0])
start = time.perf_counter()
cpu = time.process_time()
(effect,) = estimate_effects(plan, sample)
print(json.dumps({"seconds": time.perf_counter() - start, "cpu": time.process_time() - cpu,
                  "estimate": effect.estimate}))
"""

IMPORT_FLOOR = "import numpy, pandas, scipy.special, pyarrow.csv, pyarrow.compute"

PEAK = r"""
import resource, subprocess, sys, time
start = time.perf_counter()
code = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL)
elapsed = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"{code} {elapsed} {usage.ru_maxrss / 1024} {usage.ru_utime + usage.ru_stime}")
"""


def _preuve() -> str:
    script = Path(sys.executable).with_name("preuve")
    return str(script) if script.exists() else "preuve"


def _measure(n_pupils: int, directory: Path) -> dict[str, float]:
    from analysis.simulate import simulate_trial

    classes = n_pupils // PUPILS_PER_CLASS
    files = simulate_trial(directory, n_units=classes, pupils_per_unit=PUPILS_PER_CLASS,
                           usage_weeks=2, seed=n_pupils)
    assert files.usage is not None
    out = directory / "results.json"
    command = [_preuve(), "analyze", "--protocol", str(PROTOCOL), "--units", str(files.units),
               "--outcomes", str(files.outcomes), "--usage", str(files.usage),
               "--json", str(out)]
    wrapped = subprocess.run([sys.executable, "-c", PEAK, *command], check=True,
                             capture_output=True, text=True)
    code, analyze_s, analyze_mb, analyze_cpu = wrapped.stdout.split()
    if int(code) != 0:
        raise SystemExit(f"preuve analyze failed with exit code {code}")
    results = json.loads(out.read_text(encoding="utf-8"))
    (itt,) = [e for e in results["effects"] if e["role"] == "primary"]
    bare = json.loads(subprocess.run(
        [sys.executable, "-c", BARE_FIT, str(files.units), str(files.outcomes)],
        check=True, capture_output=True, text=True).stdout)
    if abs(bare["estimate"] - itt["estimate"]) > 1e-6 * max(1.0, abs(itt["estimate"])):
        raise SystemExit(f"bare fit estimate {bare['estimate']} != analyze {itt['estimate']}")
    ours = json.loads(subprocess.run(
        [sys.executable, "-c", OUR_FIT, str(PROTOCOL), str(files.units), str(files.outcomes)],
        check=True, capture_output=True, text=True).stdout)
    return {"classes": classes, "analyze_s": float(analyze_s), "analyze_mb": float(analyze_mb),
            "analyze_cpu_s": float(analyze_cpu), "bare_s": bare["seconds"],
            "bare_cpu_s": bare["cpu"], "bare_mb": bare["peak_mb"], "itt_s": ours["seconds"]}


def _import_floor_s(repeat: int = 3) -> float:
    """Median wall time of an interpreter that imports the numerical libraries only."""
    times = []
    for _ in range(repeat):
        wrapped = subprocess.run([sys.executable, "-c", PEAK, sys.executable, "-c", IMPORT_FLOOR],
                                 check=True, capture_output=True, text=True)
        times.append(float(wrapped.stdout.split()[1]))
    return sorted(times)[len(times) // 2]


def main() -> None:
    """Run the sizes (all three by default) and print one line each, then the 1M ratio."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES),
                        help="numbers of pupils (the ratio line is of the largest)")
    args = parser.parse_args()
    print(f"# bench-analysis: {os.cpu_count()} CPU(s), python {sys.version.split()[0]}")
    floor = _import_floor_s()
    print(f"import_floor_s={floor:.2f} (interpreter + {IMPORT_FLOOR.removeprefix('import ')})")
    ratio = float("nan")
    for n in sorted(args.sizes):
        with tempfile.TemporaryDirectory(prefix="preuve-bench-") as tmp:
            m = _measure(n, Path(tmp))
        ratio = m["analyze_s"] / m["bare_s"]
        print(f"pupils={n} classes={m['classes']:.0f} analyze_s={m['analyze_s']:.2f} "
              f"bare_fit_s={m['bare_s']:.2f} ratio={ratio:.2f} "
              f"analyze_cpu_s={m['analyze_cpu_s']:.2f} bare_fit_cpu_s={m['bare_cpu_s']:.2f} "
              f"analyze_peak_mb={m['analyze_mb']:.0f} bare_fit_peak_mb={m['bare_mb']:.0f} "
              f"itt_fit_in_memory_s={m['itt_s']:.2f} "
              f"import_floor_to_bare_fit={floor / m['bare_s']:.2f}",
              flush=True)
    largest = max(args.sizes)
    label = "1m" if largest == 1_000_000 else str(largest)  # the line is of 1M
    print(f"ratio_analyze_to_bare_fit_{label}={ratio:.2f}")


if __name__ == "__main__":
    main()
