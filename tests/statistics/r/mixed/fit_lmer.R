# Reference fit of the mixed model by lme4 + lmerTest (tests/statistics/test_mixed_vs_lmertest.py).
#
# Usage: Rscript fit_lmer.R TRIAL.csv "FORMULA" OUT.csv [TERMS...]
# Fits lmerTest::lmer(FORMULA, REML = TRUE) on the CSV and writes, for each fixed-effect
# term asked for (all when none), the estimate, the standard error (vcov(fit)), the
# Satterthwaite df of lmerTest's summary(), and the Kenward-Roger df and standard error of
# lmerTest::contest1D(ddf = "Kenward-Roger") (pbkrtest); then theta, sigma and REMLcrit.
#
# Optimiser: lme4's default (nloptwrap, BOBYQA) stops at a relative tolerance in theta
# of about 1e-6, too loose to compare standard errors at 1e-6; the reference therefore
# runs BOBYQA with tighter stopping rules (same estimator, a more exact optimum).
suppressPackageStartupMessages({
  library(lme4)
  library(lmerTest)
})
args <- commandArgs(trailingOnly = TRUE)
trial <- read.csv(args[1])
for (col in c("class", "school", "stratum")) {
  if (col %in% names(trial)) trial[[col]] <- factor(trial[[col]])
}
control <- lmerControl(optimizer = "nloptwrap",
                       optCtrl = list(xtol_abs = 1e-12, ftol_abs = 1e-14, xtol_rel = 1e-12,
                                      ftol_rel = 1e-15, maxeval = 10000),
                       calc.derivs = FALSE)
fit <- lmerTest::lmer(as.formula(args[2]), data = trial, REML = TRUE, control = control)
coefs <- summary(fit)$coefficients
terms <- if (length(args) > 3) args[4:length(args)] else rownames(coefs)
with_kr <- Sys.getenv("PREUVE_KR", "1") == "1"
rows <- lapply(terms, function(term) {
  L <- as.numeric(rownames(coefs) == term)
  kr <- if (with_kr) contest1D(fit, L, ddf = "Kenward-Roger") else
    data.frame(df = NA, "Std. Error" = NA, check.names = FALSE)
  data.frame(term = term, estimate = coefs[term, "Estimate"],
             std_error = coefs[term, "Std. Error"], df = coefs[term, "df"],
             kr_df = kr$df, kr_std_error = kr[["Std. Error"]])
})
out <- do.call(rbind, rows)
theta <- getME(fit, "theta")
out$theta_class <- unname(theta[grepl("^class", names(theta))][1])
out$theta_school <- if (any(grepl("^school", names(theta)))) {
  unname(theta[grepl("^school", names(theta))][1])
} else NA
out$sigma <- sigma(fit)
out$reml_criterion <- REMLcrit(fit)
write.csv(out, args[3], row.names = FALSE)
