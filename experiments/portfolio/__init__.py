"""Programme portfolios (issue 22): experiments grouped by programme and territory, the
evidence syntheses of their closed trials, a map by académie, the committee document.

* ``entries``: the portfolio assembled from the registry and the run records;
* ``territory_map``: the inline SVG map of France by académie, with its table;
* ``committee``: the committee document of one programme (HTML); ``committee_pdf``: its PDF.
"""
