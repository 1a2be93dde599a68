# clubSandwich's HTZ Wald test (CR2) that several coefficients are equal, on a model with
# stratum dummies. Run by tests/statistics/test_cr2_vs_r.py:
#
#   Rscript htz_reference.R data.csv out.csv TERM1 TERM2 [TERM3 ...]
#
# data.csv: endline, unit (cluster), school (stratum) and the regressors (every other
# column). out.csv: Fstat, df_num, df_denom, p_val of "TERM1 = TERM2 = ...".
suppressPackageStartupMessages(library(clubSandwich))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
d$school <- factor(d$school)
terms <- args[3:length(args)]
regressors <- setdiff(names(d), c("endline", "unit", "school"))
fit <- lm(reformulate(c(regressors, "school"), response = "endline"), data = d)
wt <- Wald_test(fit, constraints = constrain_equal(terms),
                vcov = vcovCR(fit, cluster = d$unit, type = "CR2"), test = "HTZ")
write.csv(data.frame(Fstat = wt$Fstat, df_num = wt$df_num, df_denom = wt$df_denom,
                     p_val = wt$p_val), args[2], row.names = FALSE)
