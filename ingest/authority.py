"""Who wrote an event: the ``preuve.authority`` Kafka header, and what assessors may send.

The gateway knows the token of each request. It writes every record of
``preuve.events`` with a header ``preuve.authority`` naming the principal
(:attr:`experiments.access.Principal.authority`: role, scope, a prefix of the token's
hash, never the token), and the stream worker stores it in ``events.authority``
(:func:`record_authority`). The analyses take outcomes only from trusted authorities
(:mod:`experiments.runs.provenance`).

An ``assessor`` token (scoped to one experiment) sends outcome scores, nothing else
(:func:`assessor_problems`): ``assessment_scored`` events with a ``score``, of a measure
the experiment's protocol names, for the experiment's resource id (the events are routed
by class and resource, like any other).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Engine

from experiments.access import Principal
from experiments.errors import RegistryError
from ingest.contract import UsageEvent
from ingest.errors import ItemProblem

__all__ = ["AUTHORITY_HEADER", "assessor_problems", "record_authority"]

AUTHORITY_HEADER = "preuve.authority"


def record_authority(topic: str, headers: Sequence[tuple[str, bytes | None]],
                     gateway_topic: str) -> str | None:
    """The authority of a consumed record, or None when unknown.

    Only a record of the gateway's topic (``settings.topics.events``) is believed: the
    header is set by the gateway, and Kafka's ACLs are what keep anyone else from writing
    that topic with a made-up header (see the Kafka security settings). A direct producer
    (``preuve events send``, an EdTech producing to Kafka) sets no header: its events are
    stored with an unknown authority (usage, never outcomes).

    Hook for direct producers: once each EdTech produces to a topic of its own under a
    SASL principal of its own, the worker will name them here from the topic they came
    from (e.g. ``edtech:<resource>:kafka``), since a consumer does not see the producer's
    principal.

    Examples
    --------
    >>> record_authority("preuve.events", [("preuve.authority", b"assessor:x:0a1b")],
    ...                  "preuve.events")
    'assessor:x:0a1b'
    >>> record_authority("preuve.events", [], "preuve.events") is None
    True
    >>> record_authority("other", [("preuve.authority", b"assessor:x:0a1b")],
    ...                  "preuve.events") is None
    True
    """
    if topic != gateway_topic:
        return None
    for name, value in headers:
        if name == AUTHORITY_HEADER and value:
            return value.decode("utf-8", errors="replace")[:256]
    return None


def assessor_problems(registry: Engine, principal: Principal,
                      items: Sequence[tuple[int, UsageEvent]]) -> list[ItemProblem]:
    """Why items sent with an ``assessor`` token are refused (empty: all acceptable).

    ``items`` are (index in the request, event). The token's scope is one experiment; each
    event must be an ``assessment_scored`` with a ``score``, its ``object_id`` a measure
    of that experiment's registered protocol (an outcome or its baseline measure), and its
    ``resource_id`` the protocol's resource.
    """
    from experiments.registry import registered_protocol

    try:
        protocol = registered_protocol(registry, principal.scope).protocol
    except RegistryError:
        return [ItemProblem(None, "Authorization",
                            f"the assessor token's experiment '{principal.scope}' is not "
                            "registered")]
    measures = sorted({o.id for o in protocol.outcomes}
                      | {o.baseline for o in protocol.outcomes if o.baseline})
    problems = []
    for index, event in items:
        if event.verb != "assessment_scored":
            problems.append(ItemProblem(index, "verb", "an assessor token sends outcome "
                                        f"scores (assessment_scored), got '{event.verb}'"))
        elif event.object_id not in measures:
            problems.append(ItemProblem(index, "object_id",
                                        f"must be a measure of {protocol.id} "
                                        f"({', '.join(measures)}), got {event.object_id!r}"))
        elif event.score is None:
            problems.append(ItemProblem(index, "score", "an outcome score is required"))
        elif event.resource_id != protocol.resource.id:
            problems.append(ItemProblem(index, "resource_id",
                                        f"must be the resource of {protocol.id} "
                                        f"('{protocol.resource.id}'), got "
                                        f"'{event.resource_id}'"))
    return problems
