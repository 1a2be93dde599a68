"""Preuve's analysis engine: statistics over typed inputs (scipy, statsmodels, numpy).

The data flow, module by module (nothing is imported here, so ``preuve --help`` stays fast):

* ``inputs``: the :class:`~analysis.inputs.AnalysisPlan` taken from a protocol, and the
  offline CSV files (units, outcomes, usage) read and checked;
* ``sample``: the analysis sample of one outcome (arms, units, strata, baseline, covariates);
* ``effects`` (ITT: ancova or mixed), ``effect_sizes`` (Hedges' g, EEF months),
  ``subgroups``, ``cace`` (2SLS), ``did`` (roll-out designs), ``dose_response``
  (exploratory), ``multiplicity``;
* checks: ``attrition`` (WWC), ``balance`` (baseline equivalence, sample ratio), ``icc``,
  ``consort``; ``usage`` (usage metrics); ``suppression`` (cells under 10 pupils);
  ``power`` (PowerUp! MDES) and ``design_mdes`` (the MDES at randomisation the evidence
  rating reads);
* ``run`` assembles everything into ``results`` (the JSON contract); ``report`` renders the
  impact report (``report_text``: French and English catalogues, ``report_rating``: the
  evidence rating, ``report_figures``: inline SVG, ``report_context``: usage funnel,
  amendments and watermark, ``report_pdf``, ``report_checks``); ``cli`` is
  ``preuve analyze``; ``simulate`` writes synthetic trials.
"""
