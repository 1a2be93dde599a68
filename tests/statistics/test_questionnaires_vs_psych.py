"""Scale scores and Cronbach's alpha (``analysis/questionnaires.py``) against R's psych, to 1e-10.

Reference: ``psych::alpha`` (Revelle; Debian ``r-cran-psych``), run live by ``Rscript``.
Data: simulated Likert answers (1..5, a latent trait plus noise, seeded here) to a scale of
six items, two of them reverse-coded, with about 8 % of the answers missing; written to a
CSV that R reads.

* Alpha: ``psych::alpha(na.omit(x), keys = ...)$total$raw_alpha`` (our alpha is on
  complete cases; psych's default is pairwise covariances, so R gets the complete cases).
  psych reverses a keyed item as ``max + min - x`` with the min and max of the whole
  matrix; the data contain 1 and 5, the declared range, so both recode alike.
* Scores: ``psych::alpha(x, keys = ...)$scores`` (mean of the answered recoded items,
  ``na.rm = TRUE``), compared for the respondents with at least the declared minimum of
  answered items; the others must have no score.

Without Rscript the test is skipped, except when ``CI`` is set: then it fails.
"""

from __future__ import annotations

import csv
import math
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from analysis.questionnaires import ItemSpec, ScaleSpec, cronbach_alpha, reliability, scale_scores

ATOL = 1e-10  # issue 19: scale scores and alpha against an independent computation

R_SCRIPT = r"""
suppressPackageStartupMessages(library(psych))
args <- commandArgs(trailingOnly = TRUE)
x <- read.csv(args[1])
ids <- x$id
x$id <- NULL
keys <- ifelse(names(x) %in% strsplit(args[3], ",")[[1]], -1, 1)
a_all <- psych::alpha(x, keys = keys, warnings = FALSE)
a_cc <- psych::alpha(na.omit(x), keys = keys, warnings = FALSE)
out <- rbind(data.frame(what = "alpha", id = "", value = a_cc$total$raw_alpha),
             data.frame(what = "score", id = ids, value = as.numeric(a_all$scores)))
out$value <- sprintf("%.17g", out$value)
write.csv(out, args[2], row.names = FALSE)
"""

ITEMS = ("q1", "q2", "q3", "q4", "q5", "q6")
REVERSED = ("q3", "q6")
MIN_ANSWERED = 4


def _answers(n: int = 240) -> dict[str, dict[str, float]]:
    rng = np.random.default_rng(20261205)
    trait = rng.normal(0.0, 1.0, n)
    responses: dict[str, dict[str, float]] = {}
    for r in range(n):
        answers: dict[str, float] = {}
        for item in ITEMS:
            sign = -1.0 if item in REVERSED else 1.0
            value = int(np.clip(np.rint(3 + sign * 0.9 * trait[r] + rng.normal(0, 0.9)), 1, 5))
            if rng.uniform() >= 0.08:
                answers[item] = float(value)
        responses[f"p{r:03d}"] = answers
    return responses


def _rscript() -> str:
    found = shutil.which("Rscript")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("Rscript is needed in CI (Debian r-base-core, r-cran-psych)")
        pytest.skip("Rscript not installed")
    return found


def _psych(tmp_path: Path, responses: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    data, out, script = tmp_path / "x.csv", tmp_path / "out.csv", tmp_path / "alpha.R"
    with data.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", *ITEMS])
        for key, answers in responses.items():
            w.writerow([key, *(answers.get(i, "NA") for i in ITEMS)])
    script.write_text(R_SCRIPT)
    subprocess.run([_rscript(), str(script), str(data), str(out), ",".join(REVERSED)],
                   check=True, capture_output=True, text=True)
    got: dict[str, dict[str, float]] = {"alpha": {}, "score": {}}
    with out.open() as fh:
        for row in csv.DictReader(fh):
            got[row["what"]][row["id"]] = float(row["value"])
    return got


def _scale(min_answered: int | None) -> ScaleSpec:
    return ScaleSpec("motivation", tuple(ItemSpec(i, 1, 5, reverse=i in REVERSED) for i in ITEMS),
                     min_answered=min_answered)


def test_alpha_and_scores_equal_psych_alpha(tmp_path: Path) -> None:
    responses = _answers()
    assert any(len(a) < MIN_ANSWERED for a in responses.values())  # the data hit every path
    assert sum(len(a) == len(ITEMS) for a in responses.values()) > 100
    reference = _psych(tmp_path, responses)

    alpha = cronbach_alpha(_scale(None), responses)
    assert alpha is not None and 0.6 < alpha < 0.95
    assert math.isclose(alpha, reference["alpha"][""], rel_tol=0, abs_tol=ATOL)

    scores = scale_scores(_scale(MIN_ANSWERED), responses)
    for key, answers in responses.items():
        if len(answers) >= MIN_ANSWERED:
            assert math.isclose(scores[key], reference["score"][key], rel_tol=0, abs_tol=ATOL)
        else:
            assert key not in scores

    complete = scale_scores(_scale(None), responses)
    assert set(complete) == {k for k, a in responses.items() if len(a) == len(ITEMS)}

    summary = reliability(_scale(MIN_ANSWERED), responses)
    assert summary.alpha == alpha
    assert summary.n_scored == len(scores)
    assert summary.n_complete == len(complete)
    assert summary.mean is not None
    assert math.isclose(summary.mean, float(np.mean(list(scores.values()))), abs_tol=ATOL)


def test_alpha_of_a_hand_computed_example() -> None:
    # A hand check independent of psych: three respondents, two items (variances 4 and 1,
    # total variance 9): alpha = 2 * (1 - 5/9) = 8/9.
    scale = ScaleSpec("m", (ItemSpec("a", 1, 5), ItemSpec("b", 1, 5)))
    answers = {"1": {"a": 1.0, "b": 2.0}, "2": {"a": 3.0, "b": 3.0}, "3": {"a": 5.0, "b": 4.0}}
    got = cronbach_alpha(scale, answers)
    assert got is not None and math.isclose(got, 8 / 9, abs_tol=1e-15)


def test_out_of_range_answers_and_bad_specs_are_refused() -> None:
    scale = _scale(None)
    with pytest.raises(ValueError, match="outside its scale 1..5"):
        scale_scores(scale, {"p": {"q1": 6}})
    with pytest.raises(ValueError, match="min .* below max"):
        ItemSpec("q", 5, 1)
    with pytest.raises(ValueError, match="min_answered must be between 1 and 6"):
        _scale(7)
