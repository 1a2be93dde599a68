# Do R's CR2 implementations run at the benchmark's sizes? (benchmarks/README.md, Analysis)
#
#   (ulimit -v 8000000; Rscript benchmarks/cr2_scale.R 2000 estimatr)      # 50,000 pupils
#   (ulimit -v 8000000; Rscript benchmarks/cr2_scale.R 2000 clubSandwich)
#
# N_CLASSES classes of 25 pupils, two classes per school (school fixed effects), CR2
# clustered by class, as bench_analysis.py's trials.
suppressPackageStartupMessages({library(clubSandwich); library(estimatr)})
args <- commandArgs(trailingOnly = TRUE)
n_classes <- as.integer(args[1]); which <- args[2]
set.seed(1)
unit <- rep(seq_len(n_classes), each = 25)
school <- (unit - 1) %/% 2
arm <- rep(rbinom(n_classes, 1, 0.5), each = 25)
b <- rnorm(length(unit))
y <- 0.2 * arm + 0.5 * b + rnorm(n_classes)[unit] * 0.4 + rnorm(length(unit))
d <- data.frame(y, arm, b, unit, school = factor(school))
t0 <- proc.time()
if (which == "estimatr") {
  r <- lm_robust(y ~ arm + b, data = d, fixed_effects = ~ school, clusters = unit, se_type = "CR2")
  print(c(r$std.error[["arm"]], r$df[["arm"]]))
} else {
  f <- lm(y ~ arm + b + school, data = d)
  print(coef_test(f, vcov = vcovCR(f, cluster = d$unit, type = "CR2"), coefs = "arm"))
}
print(proc.time() - t0)
