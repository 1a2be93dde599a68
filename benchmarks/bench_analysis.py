"""Benchmark of ``preuve analyze`` against a researcher's script (``make bench-analysis``).

For synthetic cluster trials of 50,000, 250,000 and 1,000,000 pupils (25 pupils per class:
2,000 to 40,000 classes, two classes per school, randomised within school, as in the
core example protocol ``protocols/fluence-cp-2027.yaml``), this prints, in one run:

* ``analyze_s``: wall time of ``preuve analyze`` end to end on the ITT model alone (the
  example protocol without its subgroups and CACE), as a subprocess on the CSV files
  (interpreter start, imports, reading and checking the files, the ITT ANCOVA with CR2
  standard errors and Satterthwaite df, Hedges' g, attrition, balance, ICC, CONSORT,
  JSON);
* ``analyze_full_s``: the same with the whole example protocol (subgroup model and
  interaction test, CACE by 2SLS, dose-response too);
* ``script_s``: wall time of the plain Python script of the same ITT model, end to end, as
  a researcher writes it: pandas reads the same two CSV files, pivots the waves, merges
  the units, fills the missing baselines (dummy-variable method), demeans within school
  (20,000 school dummies do not fit in memory and statsmodels has no absorbing
  estimator), ``statsmodels`` OLS with errors clustered by class (CR1); its estimate must
  equal ``preuve analyze``'s to 1e-6;
* ``script_fit_s``: the part of the script's time spent in the demeaning and the fit;
* ``itt_fit_in_memory_s``: our ITT estimator (:func:`analysis.effects.estimate_effects`,
  CR2) on the same data in memory;
* ``import_floor_s``: an interpreter that only imports numpy, pandas, scipy.special and
  pyarrow (the least any Python ``preuve analyze`` pays before reading a byte);
* peak resident memory (``ru_maxrss``) and CPU time (user + system) of each process: on
  a shared 2-core machine the wall time varies with the other load, the CPU time less.

The summary lines come last: ``ratio_analyze_to_script_1m=X.XX`` (goal of issue 15: at
most 1.0) and ``ratio_full_protocol_to_script_1m=X.XX``.
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
ITT_ONLY = {"  subgroups: [education_priority]\n": "  subgroups: []\n",
            "usage:\n  compliance: {min_active_minutes: 300}": ""}
"""Edits of the example protocol that leave the ITT model alone (no subgroups, no CACE)."""
SIZES = (50_000, 250_000, 1_000_000)
PUPILS_PER_CLASS = 25

SCRIPT = r"""
# The researcher's script: the ITT ANCOVA of the trial with pandas and statsmodels.
import json, sys, time
import pandas as pd
import statsmodels.api as sm

units = pd.read_csv(sys.argv[1], dtype=str)
long = pd.read_csv(sys.argv[2], dtype={"learner_id": str, "unit_id": str})
wide = long.pivot(index="learner_id", columns="wave", values="score")
unit = long.drop_duplicates("learner_id").set_index("learner_id")["unit_id"]
frame = wide.join(unit).merge(units, on="unit_id").dropna(subset=["endline"])
frame["arm"] = (frame["arm"] == "lectio").astype(float)
frame["missing"] = frame["baseline"].isna().astype(float)
frame["baseline"] = frame["baseline"].fillna(0.0)
start = time.perf_counter()
columns = ["endline", "arm", "baseline", "missing"]
demeaned = frame[columns] - frame.groupby("school_uai")[columns].transform("mean")
fit = sm.OLS(demeaned["endline"], demeaned[["arm", "baseline", "missing"]]).fit(
    cov_type="cluster", cov_kwds={"groups": pd.factorize(frame["unit_id"])[0]})
fit_s = time.perf_counter() - start
print(fit.summary().tables[1])
with open(sys.argv[3], "w") as out:
    json.dump({"estimate": float(fit.params["arm"]), "std_error": float(fit.bse["arm"]),
               "fit_s": fit_s}, out)
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


def _run_timed(command: list[str]) -> tuple[float, float, float]:
    """``(wall s, peak MB, CPU s)`` of ``command`` run as a child process."""
    wrapped = subprocess.run([sys.executable, "-c", PEAK, *command], check=True,
                             capture_output=True, text=True)
    code, wall, peak, cpu = wrapped.stdout.split()
    if int(code) != 0:
        raise SystemExit(f"{command[:2]} failed with exit code {code}")
    return float(wall), float(peak), float(cpu)


def _itt_protocol(directory: Path) -> Path:
    text = PROTOCOL.read_text(encoding="utf-8")
    for old, new in ITT_ONLY.items():
        if old not in text:
            raise SystemExit(f"{PROTOCOL} changed: cannot find {old!r}")
        text = text.replace(old, new)
    path = directory / "itt-only.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _measure(n_pupils: int, directory: Path) -> dict[str, float]:
    from analysis.simulate import simulate_trial

    classes = n_pupils // PUPILS_PER_CLASS
    files = simulate_trial(directory, n_units=classes, pupils_per_unit=PUPILS_PER_CLASS,
                           usage_weeks=2, seed=n_pupils)
    assert files.usage is not None
    itt_protocol = _itt_protocol(directory)
    out = directory / "results.json"
    analyze_s, analyze_mb, analyze_cpu = _run_timed(
        [_preuve(), "analyze", "--protocol", str(itt_protocol), "--units", str(files.units),
         "--outcomes", str(files.outcomes), "--json", str(out)])
    results = json.loads(out.read_text(encoding="utf-8"))
    (itt,) = [e for e in results["effects"] if e["role"] == "primary"]
    full_s, full_mb, full_cpu = _run_timed(
        [_preuve(), "analyze", "--protocol", str(PROTOCOL), "--units", str(files.units),
         "--outcomes", str(files.outcomes), "--usage", str(files.usage),
         "--json", str(directory / "full.json")])
    script = directory / "itt_script.py"
    script.write_text(SCRIPT, encoding="utf-8")
    script_out = directory / "script.json"
    script_s, script_mb, script_cpu = _run_timed(
        [sys.executable, str(script), str(files.units), str(files.outcomes), str(script_out)])
    reference = json.loads(script_out.read_text(encoding="utf-8"))
    if abs(reference["estimate"] - itt["estimate"]) > 1e-6 * max(1.0, abs(itt["estimate"])):
        raise SystemExit(f"script estimate {reference['estimate']} != analyze {itt['estimate']}")
    ours = json.loads(subprocess.run(
        [sys.executable, "-c", OUR_FIT, str(itt_protocol), str(files.units),
         str(files.outcomes)], check=True, capture_output=True, text=True).stdout)
    return {"classes": classes, "analyze_s": analyze_s, "analyze_mb": analyze_mb,
            "analyze_cpu_s": analyze_cpu, "full_s": full_s, "full_mb": full_mb,
            "full_cpu_s": full_cpu, "script_s": script_s, "script_mb": script_mb,
            "script_cpu_s": script_cpu, "script_fit_s": reference["fit_s"],
            "itt_s": ours["seconds"], "df": itt["df"]}


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
    ratio = full_ratio = float("nan")
    for n in sorted(args.sizes):
        with tempfile.TemporaryDirectory(prefix="preuve-bench-") as tmp:
            m = _measure(n, Path(tmp))
        ratio = m["analyze_s"] / m["script_s"]
        full_ratio = m["full_s"] / m["script_s"]
        print(f"pupils={n} classes={m['classes']:.0f} analyze_s={m['analyze_s']:.2f} "
              f"script_s={m['script_s']:.2f} ratio={ratio:.2f} "
              f"analyze_full_s={m['full_s']:.2f} full_ratio={full_ratio:.2f} "
              f"analyze_cpu_s={m['analyze_cpu_s']:.2f} analyze_full_cpu_s={m['full_cpu_s']:.2f} "
              f"script_cpu_s={m['script_cpu_s']:.2f} "
              f"cpu_ratio={m['analyze_cpu_s'] / m['script_cpu_s']:.2f} "
              f"analyze_peak_mb={m['analyze_mb']:.0f} "
              f"analyze_full_peak_mb={m['full_mb']:.0f} script_peak_mb={m['script_mb']:.0f} "
              f"script_fit_s={m['script_fit_s']:.2f} itt_fit_in_memory_s={m['itt_s']:.2f} "
              f"itt_df={m['df']:.1f}", flush=True)
    largest = max(args.sizes)
    label = "1m" if largest == 1_000_000 else str(largest)  # the lines are of 1M
    # --- mixed model against lme4 (issue 15): the mixed-model benchmark prints its lines
    # here, ending with ``ratio_mixed_to_lme4_{label}=X.XX``. -----------------------------
    print(f"ratio_full_protocol_to_script_{label}={full_ratio:.2f}")
    print(f"ratio_analyze_to_script_{label}={ratio:.2f}")



# ---------------------------------------------------------------------------------------
# Mixed model against lme4 (issue 15; this block is the mixed-model engineer's).
#
# On the same simulated files as above (25 pupils per class, two classes per school), the
# protocol's ``mixed`` model: REML with random intercepts for the class and the school,
# fixed effects arm, baseline and its missingness indicator (dummy-variable method; the
# school strata are the school's random intercept), Satterthwaite df. Printed per size:
#
# * ``mixed_s``: a Python process that reads the two files with our readers, builds the
#   sample and fits the model (``analysis.effects.estimate_effects``), end to end;
# * ``lme4_s``: an ``Rscript`` process that reads the same files (``data.table::fread``),
#   reshapes them, fits ``lmerTest::lmer(endline ~ t + b0 + bmiss + (1|school_uai) +
#   (1|unit_id))`` with lme4's default optimiser and takes ``summary()`` (Satterthwaite
#   df), end to end, as an R user writes it;
# * the fit alone on both sides (``mixed_fit_s``, ``lme4_fit_s``: lmer + summary), and
#   ``analyze_mixed_s``: ``preuve analyze`` of the whole protocol with ``model: mixed``.
#
# The last line is ``ratio_mixed_to_lme4_1m=X.XX`` (``mixed_s / lme4_s``); goal at most 1.
# Skipped, with a line saying so, when ``Rscript`` or lmerTest is absent.
# ---------------------------------------------------------------------------------------

MIXED_FIT = r"""
import json, sys, time
from dataclasses import replace
from pathlib import Path
start = time.perf_counter()
from analysis.effects import estimate_effects
from analysis.inputs import plan_from_protocol, read_outcomes, read_units
from analysis.sample import build_sample
from experiments.protocol import load_protocol
plan = replace(plan_from_protocol(load_protocol(sys.argv[1])), model="mixed")
units = read_units(Path(sys.argv[2]), plan)
outcomes = read_outcomes(Path(sys.argv[3]), units)
sample = build_sample(plan, units, outcomes, plan.outcomes[0])
fit_start = time.perf_counter()
(effect,) = estimate_effects(plan, sample)
end = time.perf_counter()
print(json.dumps({"fit_seconds": end - fit_start, "estimate": effect.estimate,
                  "std_error": effect.std_error, "df": effect.df, "reason": effect.reason}))
"""

LME4_FIT = r"""
suppressPackageStartupMessages({library(data.table); library(lmerTest)})
args <- commandArgs(trailingOnly = TRUE)
units <- fread(args[1], colClasses = "character")
long <- fread(args[2], colClasses = list(character = c("learner_id", "unit_id", "measure",
                                                       "wave"), numeric = "score"))
wide <- dcast(long, learner_id + unit_id ~ wave, value.var = "score")
d <- merge(wide[!is.na(endline)], units, by = "unit_id")
d[, t := as.numeric(arm == "lectio")]
d[, bmiss := as.numeric(is.na(baseline))]
d[, b0 := fifelse(is.na(baseline), 0, baseline)]
start <- proc.time()[["elapsed"]]
fit <- lmer(endline ~ t + b0 + bmiss + (1 | school_uai) + (1 | unit_id), data = d, REML = TRUE)
coefs <- summary(fit)$coefficients
elapsed <- proc.time()[["elapsed"]] - start
cat(sprintf('{"fit_seconds": %.6f, "estimate": %.15g, "std_error": %.15g, "df": %.15g}
',
            elapsed, coefs["t", "Estimate"], coefs["t", "Std. Error"], coefs["t", "df"]))
"""


def _r_ready() -> str | None:
    """Why the lme4 comparison cannot run here, or None."""
    import shutil

    if shutil.which("Rscript") is None:
        return "Rscript not found"
    probe = subprocess.run(["Rscript", "-e", "library(lmerTest); library(data.table)"],
                           capture_output=True, text=True)
    return None if probe.returncode == 0 else "R packages lmerTest/data.table missing"


PEAK_WITH_OUTPUT = r"""
import resource, subprocess, sys, time
start = time.perf_counter()
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
elapsed = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
sys.stderr.write(done.stderr[-2000:] if done.returncode else "")
print(f"{done.returncode} {elapsed} {usage.ru_maxrss / 1024}")
print(done.stdout, end="")
"""


def _timed(command: list[str]) -> tuple[float, float, str]:
    """``(wall seconds, peak MB, stdout)`` of a child process."""
    done = subprocess.run([sys.executable, "-c", PEAK_WITH_OUTPUT, *command],
                          capture_output=True, text=True, check=True)
    head, _, output = done.stdout.partition("\n")
    code, seconds, peak = head.split()
    if int(code) != 0:
        raise SystemExit(f"{command[0]} failed with exit code {code}: {done.stderr}")
    return float(seconds), float(peak), output


def _measure_mixed(n_pupils: int, directory: Path, with_r: bool) -> dict[str, float]:
    from analysis.simulate import simulate_trial

    classes = n_pupils // PUPILS_PER_CLASS
    files = simulate_trial(directory, n_units=classes, pupils_per_unit=PUPILS_PER_CLASS,
                           usage_weeks=2, seed=n_pupils)
    assert files.usage is not None
    mixed_s, mixed_mb, text = _timed([sys.executable, "-c", MIXED_FIT, str(PROTOCOL),
                                      str(files.units), str(files.outcomes)])
    ours = json.loads(text)
    if ours["reason"] is not None:
        raise SystemExit(f"mixed model not estimated: {ours['reason']}")
    protocol = directory / "mixed.yaml"
    protocol.write_text(PROTOCOL.read_text(encoding="utf-8").replace(
        "model: ancova ", "model: mixed  ", 1), encoding="utf-8")
    analyze_s, _, _ = _timed([_preuve(), "analyze", "--protocol", str(protocol), "--units",
                              str(files.units), "--outcomes", str(files.outcomes), "--usage",
                              str(files.usage), "--json", str(directory / "mixed.json")])
    result: dict[str, float] = {
        "classes": classes, "mixed_s": mixed_s, "mixed_mb": mixed_mb,
        "mixed_fit_s": ours["fit_seconds"], "analyze_mixed_s": analyze_s,
        "estimate": ours["estimate"], "std_error": ours["std_error"], "df": ours["df"]}
    if with_r:
        script = directory / "lme4.R"
        script.write_text(LME4_FIT, encoding="utf-8")
        lme4_s, lme4_mb, text = _timed(["Rscript", str(script), str(files.units),
                                        str(files.outcomes)])
        ref = json.loads(text)
        result |= {"lme4_s": lme4_s, "lme4_mb": lme4_mb, "lme4_fit_s": ref["fit_seconds"],
                   "estimate_gap_in_se": abs(ours["estimate"] - ref["estimate"])
                   / ref["std_error"],
                   "se_rel_gap": abs(ours["std_error"] / ref["std_error"] - 1.0),
                   "df_rel_gap": abs(ours["df"] / ref["df"] - 1.0)}
    return result


def main_mixed() -> None:
    """The mixed model at each size against lme4, then ``ratio_mixed_to_lme4_1m``."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    args, _ = parser.parse_known_args()
    missing = _r_ready()
    if missing:
        print(f"# mixed model vs lme4: {missing}; lme4 not run")
    ratio = float("nan")
    for n in sorted(args.sizes):
        with tempfile.TemporaryDirectory(prefix="preuve-bench-mixed-") as tmp:
            m = _measure_mixed(n, Path(tmp), with_r=missing is None)
        line = (f"mixed pupils={n} classes={m['classes']:.0f} mixed_s={m['mixed_s']:.2f} "
                f"mixed_fit_s={m['mixed_fit_s']:.2f} mixed_peak_mb={m['mixed_mb']:.0f} "
                f"analyze_mixed_s={m['analyze_mixed_s']:.2f}")
        if missing is None:
            ratio = m["mixed_s"] / m["lme4_s"]
            line += (f" lme4_s={m['lme4_s']:.2f} lme4_fit_s={m['lme4_fit_s']:.2f} "
                     f"lme4_peak_mb={m['lme4_mb']:.0f} ratio={ratio:.2f} "
                     f"estimate_gap_in_se={m['estimate_gap_in_se']:.1e} "
                     f"se_rel_gap={m['se_rel_gap']:.1e} df_rel_gap={m['df_rel_gap']:.1e}")
        print(line, flush=True)
    largest = max(args.sizes)
    label = "1m" if largest == 1_000_000 else str(largest)
    print(f"ratio_mixed_to_lme4_{label}={ratio:.2f}")


if __name__ == "__main__":
    main()
    main_mixed()
