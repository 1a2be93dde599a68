"""Scheduled analyses: the scheduler, the analysis workers, their run records and inputs.

Modules:

- ``inputs``: Analysis inputs taken from an experiment's store and the enrollment registry.
- ``provenance``: Outcome provenance: which stored scores an analysis may use as outcomes.
- ``records``: Analysis workers and the records of analysis runs.
- ``scheduler``: The scheduler: each registered protocol's ``schedule`` becomes analysis requests.
"""
