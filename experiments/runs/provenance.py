"""Outcome provenance: which stored scores an analysis may use as outcomes.

Every stored event records the principal that wrote it (``events.authority``, like
xAPI's ``authority``). An analysis takes ``assessment_scored`` events as outcomes
(baseline and endline scores) only from sources the protocol declares and the registry
trusts:

- ``import:<actor>``: results imported with ``preuve outcomes import`` (the researcher's
  official file); ``import:legacy`` marks results imported before the column existed
  (migration ``store_0002``);
- ``assessor:<experiment>:<token>``: an ``assessor`` token (the evaluation team, a test
  provider such as the DEPP) scoped to this experiment, through the gateway, which only
  accepts from it ``assessment_scored`` events of the measures the protocol names;
- ``edtech:<resource>:<token>``: the resource's own key, **only** for the measures of an
  outcome whose protocol entry says ``source: {resource: <that resource>}``. Such an
  outcome is a measure designed by the developer: reports flag it as a threat to
  validity and the evidence rating loses a padlock (:mod:`analysis.report.rating`).

Anything else (an EdTech key for a measure not declared as its own, an admin token, a
direct Kafka producer whose principal is not known yet, an event stored before the column
existed) is usage, a quiz inside the resource: stored and counted as usage, never an
outcome.
"""

from __future__ import annotations

from typing import Literal

from experiments.protocol.language import Protocol

__all__ = [
    "IMPORT_PREFIX",
    "OutcomeSource",
    "developer_measures",
    "import_authority",
    "outcome_source",
]

IMPORT_PREFIX = "import:"

OutcomeSource = Literal["official", "developer"]
"""``official``: an import or an assessor; ``developer``: the resource's own measure,
declared by the protocol."""


def import_authority(actor: str) -> str:
    """The authority of results imported by ``actor`` (``preuve outcomes import``).

    Examples
    --------
    >>> import_authority("admin:*:alice@cli")
    'import:admin:*:alice@cli'
    """
    return f"{IMPORT_PREFIX}{actor}"[:256]


def developer_measures(protocol: Protocol) -> dict[str, str]:
    """Measure → resource id, for the outcomes whose protocol entry declares the resource
    as their source (the outcome's own measure and its baseline measure)."""
    out: dict[str, str] = {}
    for outcome in protocol.outcomes:
        if outcome.source is None:
            continue
        out[outcome.id] = outcome.source.resource
        if outcome.baseline:
            out[outcome.baseline] = outcome.source.resource
    return out


def outcome_source(authority: str | None, measure: str, protocol: Protocol
                   ) -> OutcomeSource | None:
    """Whether a stored score of ``measure`` written by ``authority`` is an outcome of
    ``protocol``'s analyses, and from which kind of source (None: usage only).

    Examples
    --------
    >>> from experiments.protocol.language import load_protocol
    >>> p = load_protocol("protocols/fluence-cp-2027.yaml")
    >>> outcome_source("import:admin:*:alice@cli", "fluence", p)
    'official'
    >>> outcome_source(f"assessor:{p.id}:3fa2b0c1d9e4", "fluence", p)
    'official'
    >>> outcome_source("assessor:another-trial:3fa2b0c1d9e4", "fluence", p) is None
    True
    >>> outcome_source("edtech:lectio:9c0d1e2f3a4b", "fluence", p) is None
    True
    >>> outcome_source(None, "fluence", p) is None
    True
    """
    if authority is None:
        return None
    if authority.startswith(IMPORT_PREFIX):
        return "official"
    role, _, rest = authority.partition(":")
    scope = rest.partition(":")[0]
    if role == "assessor" and scope == protocol.id:
        return "official"
    if role == "edtech" and developer_measures(protocol).get(measure) == scope:
        return "developer"
    return None
