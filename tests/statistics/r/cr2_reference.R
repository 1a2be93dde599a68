# CR2 standard errors and Satterthwaite degrees of freedom of the ITT, subgroup and CACE
# models of one simulated trial, by clubSandwich and estimatr (Debian r-cran-clubsandwich,
# r-cran-estimatr, r-cran-aer). Run by tests/statistics/test_cr2_vs_r.py:
#
#   Rscript cr2_reference.R pupils.csv out.csv
#
# pupils.csv: one row per analysed pupil: unit (cluster), school (stratum), treat (0/1),
# b0 and bmiss (the baseline by the dummy-variable method), endline, t_rep and t_repp
# (treat x subgroup level), repp (level REP+), complied (0/1).
# out.csv: model, term, estimate, then the SE and df of each package (for the
# interaction test: the F statistic and clubSandwich's denominator df).
suppressPackageStartupMessages({
  library(clubSandwich)
  library(estimatr)
  library(AER)
})
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
d$school <- factor(d$school)
d$unit <- factor(d$unit)

rows <- list()
add <- function(model, term, estimate, se_cs, df_cs, se_er, df_er) {
  rows[[length(rows) + 1]] <<- data.frame(
    model = model, term = term, estimate = estimate, se_clubsandwich = se_cs,
    df_clubsandwich = df_cs, se_estimatr = se_er, df_estimatr = df_er)
}
# The strata as dummies in lm (clubSandwich: CR2 on the full design) and as absorbed
# fixed effects in estimatr (CR2 on cbind(demeaned X, FE dummies)); a trial analysed
# without strata has a single school and an intercept instead.
stratified <- nlevels(d$school) > 1
full <- function(rhs) reformulate(c(rhs, if (stratified) "school"), response = "endline")
robust <- function(rhs, ...) {
  if (stratified) lm_robust(reformulate(rhs, response = "endline"), data = d,
                            fixed_effects = ~ school, clusters = unit, se_type = "CR2", ...)
  else lm_robust(reformulate(rhs, response = "endline"), data = d, clusters = unit,
                 se_type = "CR2", ...)
}
compare <- function(model, rhs, terms) {
  fit <- lm(full(rhs), data = d)
  cs <- coef_test(fit, vcov = vcovCR(fit, cluster = d$unit, type = "CR2"),
                  test = "Satterthwaite", coefs = terms)
  er <- robust(rhs)
  for (i in seq_along(terms)) {
    term <- terms[i]
    add(model, term, coef(fit)[[term]], cs$SE[i], cs$df_Satt[i], er$std.error[[term]],
        er$df[[term]])
  }
}

compare("itt", c("treat", "b0", "bmiss"), "treat")
compare("subgroups", c("t_rep", "t_repp", "repp", "b0", "bmiss"), c("t_rep", "t_repp"))
# The interaction test (same effect in both levels): clubSandwich's HTZ Wald test, which
# for one constraint is the Satterthwaite t test squared (F = t^2, df_denom = df).
sub <- lm(full(c("t_rep", "t_repp", "repp", "b0", "bmiss")), data = d)
wt <- Wald_test(sub, constraints = constrain_equal(c("t_rep", "t_repp")),
                vcov = vcovCR(sub, cluster = d$unit, type = "CR2"), test = "HTZ")
add("interaction", "t_rep=t_repp", wt$Fstat, NA, wt$df_denom, NA, NA)

strata <- if (stratified) " + school" else ""
iv <- ivreg(as.formula(paste("endline ~ complied + b0 + bmiss", strata,
                             "| treat + b0 + bmiss", strata)), data = d)
iv_cs <- coef_test(iv, vcov = vcovCR(iv, cluster = d$unit, type = "CR2"),
                   test = "Satterthwaite", coefs = "complied")
iv_er <- if (stratified) {
  iv_robust(endline ~ complied + b0 + bmiss | treat + b0 + bmiss, data = d,
            fixed_effects = ~ school, clusters = unit, se_type = "CR2")
} else {
  iv_robust(endline ~ complied + b0 + bmiss | treat + b0 + bmiss, data = d,
            clusters = unit, se_type = "CR2")
}
add("cace", "complied", coef(iv)[["complied"]], iv_cs$SE[1], iv_cs$df_Satt[1],
    iv_er$std.error[["complied"]], iv_er$df[["complied"]])

write.csv(do.call(rbind, rows), args[2], row.names = FALSE)
