"""Gates at the door: an event's date and school, checked where the event enters.

- **Future**: an event dated later than now plus the allowed clock skew
  (``settings.clock_skew_s``, 5 minutes by default) is refused by the gateway (422) and
  dead-lettered by the stream worker (direct Kafka producers). "Now" is the system clock,
  or ``settings.simulated_now`` in demos and tests of a future school year.
- **Before the experiment**: an event dated before the first period of its class's
  experiment (baseline, else intervention; Paris dates) is dead-lettered by the stream
  worker, the first place that knows the class's experiment. The gateway does not know
  it (an API key names a resource, and a resource may serve several experiments).
- **School**: an event whose ``school_uai`` is not the enrolled school of its class is
  dead-lettered: it would otherwise be stored against the wrong school.

Each reason is written in English then French, for the dead-letter header and the
gateway's answer alike.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from experiments.protocol.vocabulary import SCHOOL_TIMEZONE

__all__ = ["before_first_period", "in_the_future", "other_school"]


def in_the_future(occurred_at: datetime, now: datetime, skew_s: float) -> str | None:
    """The reason to refuse an event dated after ``now`` + ``skew_s``, else ``None``.

    Examples
    --------
    >>> from datetime import UTC
    >>> now = datetime(2027, 10, 4, 8, 0, tzinfo=UTC)
    >>> in_the_future(datetime(2031, 1, 1, tzinfo=UTC), now, 300)[:44]
    'occurred_at 2031-01-01T00:00:00+00:00 is in '
    >>> in_the_future(now + timedelta(seconds=299), now, 300) is None
    True
    """
    if occurred_at <= now + timedelta(seconds=skew_s):
        return None
    return (
        f"occurred_at {occurred_at.isoformat()} is in the future (now {now.isoformat()}, "
        f"clock skew allowed {skew_s:g} s): check the sender's clock / la date de "
        f"l'événement est dans le futur (écart d'horloge toléré : {skew_s:g} s) : vérifiez "
        "l'horloge de l'émetteur"
    )


def before_first_period(occurred_at: datetime, first_day: date, experiment_id: str) -> str | None:
    """The reason to refuse an event dated (Paris) before its experiment's first period."""
    day = occurred_at.astimezone(SCHOOL_TIMEZONE).date()
    if day >= first_day:
        return None
    return (
        f"occurred_at {day.isoformat()} is before the first period of experiment "
        f"{experiment_id} ({first_day.isoformat()}) / l'événement date d'avant la première "
        f"période de l'expérimentation ({first_day.isoformat()})"
    )


def other_school(event_uai: str, enrolled_uai: str, class_id: str) -> str | None:
    """The reason to refuse an event whose school is not its class's enrolled school."""
    if event_uai == enrolled_uai:
        return None
    return (
        f"school_uai {event_uai} is not the school of class {class_id} ({enrolled_uai}, as "
        f"enrolled) / l'école {event_uai} n'est pas celle où la classe est inscrite "
        f"({enrolled_uai})"
    )
