"""Who is enrolled with which arm, and the replay of the allocation log (``--verify``).

An académie reads its classes' (or pupils') arms; the analysis joins pupils' arms on their
pseudonym; :func:`verify_allocations` replays the randomisation from the protocol and the
enrollment order and lists every difference from what the registry holds.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from experiments.enrollment.files import EnrollmentDesign
from experiments.enrollment.randomisation import Randomiser, Unit
from experiments.enrollment.tables import (
    ALLOCATIONS,
    ENROLLMENTS,
    LEARNERS,
    in_chunks,
    in_utc,
)
from experiments.enrollment.transaction import (
    EnrolledClass,
    EnrolledLearner,
    as_enrolled_class,
    as_enrolled_learner,
)

__all__ = [
    "enrolled_classes",
    "enrolled_learners",
    "learner_arms",
    "learner_statuses",
    "verify_allocations",
    "verify_learner_allocations",
]



# --- reading back ---------------------------------------------------------------------


def enrolled_classes(
    engine: Engine,
    experiment_id: str,
    *,
    academie: str | None = None,
    arms: Sequence[str] | None = None,
    as_of: datetime | None = None,
) -> list[EnrolledClass]:
    """Classes of an experiment, in enrollment order, optionally of one académie or arms.

    ``as_of`` reads the registry as it was at that moment (the cut-off of a scheduled
    analysis): classes enrolled later are left out, and a class withdrawn later is still
    ``enrolled``.

    Examples
    --------
    >>> enrolled_classes(fresh_registry(), "x")
    []
    """
    table = ENROLLMENTS
    query = sa.select(table).where(table.c.experiment_id == experiment_id).order_by(table.c.id)
    if academie is not None:
        query = query.where(table.c.academie == academie)
    if arms is not None:
        query = query.where(table.c.arm.in_(list(arms)))
    if as_of is not None:
        query = query.where(table.c.enrolled_at <= in_utc(as_of))
    with engine.connect() as connection:
        rows = list(connection.execute(query).mappings())
    return [as_enrolled_class(_as_of(row, as_of), new=False) for row in rows]


def _as_of(row: Mapping[Any, Any], as_of: datetime | None) -> Mapping[Any, Any]:
    """A registry row as it was at ``as_of``: a withdrawal recorded later had not happened."""
    withdrawn = row["withdrawn_at"]
    if as_of is not None and withdrawn is not None and in_utc(withdrawn) > in_utc(as_of):
        return {**row, "status": "enrolled"}
    return row


def compared_attributes(design: EnrollmentDesign, *, level: bool) -> list[str]:
    """What a balance report compares: the declared unit attributes, then ``level`` (if
    ``level``) and ``academie`` when the population has more than one (shared with
    :func:`experiments.enrollment.balance.learner_balance`)."""
    compared = list(design.attributes)
    if level and len(design.levels) > 1:
        compared.append("level")
    if len(design.academies) > 1:
        compared.append("academie")
    return compared


def verify_allocations(engine: Engine, design: EnrollmentDesign) -> list[str]:
    """Replay the allocation log from the protocol alone; return every discrepancy.

    Each logged allocation is re-drawn from the scheme (seed, arms, ratios), its stratum
    and its rank in the log, and must give the same block, position, draw and arm; every
    enrollment must carry its unit's logged arm. An empty list means the assignment is
    exactly what the protocol and the enrollment order produce.

    Examples
    --------
    >>> from experiments.enrollment import enroll_classes, read_classes
    >>> engine = fresh_registry()
    >>> design = core_design()
    >>> text = "class_id,school_uai,level,pupils,academie,education_priority\\n"
    >>> text += "c1,0781234T,CP,24,versailles,REP\\nc2,0781234T,CP,21,versailles,REP\\n"
    >>> _ = enroll_classes(engine, design, read_classes(text, design), actor="doc")
    >>> verify_allocations(engine, design)
    []
    """
    randomiser = Randomiser(design.scheme)
    problems: list[str] = []
    arm_of: dict[str, str] = {}
    with engine.connect() as connection:
        log = connection.execute(
            sa.select(ALLOCATIONS).where(ALLOCATIONS.c.experiment_id == design.experiment_id)
            .order_by(ALLOCATIONS.c.sequence)
        ).mappings().all()
        enrolled = connection.execute(
            sa.select(ENROLLMENTS.c.class_id, ENROLLMENTS.c.unit_id, ENROLLMENTS.c.arm)
            .where(ENROLLMENTS.c.experiment_id == design.experiment_id)
        ).all()
    for row in log:
        a = randomiser.assign(Unit(row["class_id"], row["unit_id"], row["stratum"])).allocation
        arm_of[row["unit_id"]] = row["arm"]
        logged = (row["block"], row["position"], row["draw"], row["arm"])
        if a is None or (a.block, a.position, a.draw, a.arm) != logged:
            replayed = None if a is None else (a.block, a.position, a.draw, a.arm)
            problems.append(f"allocation {row['sequence']} ({row['unit_id']}): logged "
                            f"{logged}, the protocol gives {replayed}")
    for class_id, unit_id, arm in enrolled:
        if arm == "*":  # a class of a learner design: its pupils' arms are checked apart
            continue
        if arm_of.get(unit_id) != arm:
            problems.append(f"class {class_id}: arm {arm}, its unit {unit_id} was allocated "
                            f"{arm_of.get(unit_id)}")
    return problems


# --- reading back --------------------------------------------------------------------------


def enrolled_learners(
    engine: Engine, experiment_id: str, *, academie: str | None = None,
    as_of: datetime | None = None,
) -> list[EnrolledLearner]:
    """Pupils of an experiment, in enrollment order (``learner_id`` is the learner key).

    ``as_of`` reads the registry as it was then (a scheduled analysis' cut-off): pupils
    enrolled later are left out, a pupil withdrawn later is still ``enrolled``.

    Examples
    --------
    >>> enrolled_learners(fresh_registry(), "x")
    []
    """
    query = (sa.select(LEARNERS).where(LEARNERS.c.experiment_id == experiment_id)
             .order_by(LEARNERS.c.id))
    if academie is not None:
        query = query.where(LEARNERS.c.academie == academie)
    if as_of is not None:
        query = query.where(LEARNERS.c.enrolled_at <= in_utc(as_of))
    with engine.connect() as connection:
        rows = list(connection.execute(query).mappings())
    return [as_enrolled_learner(_as_of(row, as_of), str(row["learner_key"]), new=False)
            for row in rows]


def learner_statuses(
    engine: Engine, experiment_id: str, learner_keys: Collection[str] | None = None
) -> dict[str, tuple[str, str]]:
    """(arm, status) of the given pupils (None: every pupil), by learner key; pupils not
    enrolled are absent.

    Examples
    --------
    >>> engine = fresh_registry()
    >>> learner_statuses(engine, "x", ["k1"])
    {}
    """
    query = (sa.select(LEARNERS.c.learner_key, LEARNERS.c.arm, LEARNERS.c.status)
             .where(LEARNERS.c.experiment_id == experiment_id))
    keys = None if learner_keys is None else sorted(set(learner_keys))
    chunks = [query] if keys is None else [  # bounded IN lists
        query.where(LEARNERS.c.learner_key.in_(chunk)) for chunk in in_chunks(keys)
    ]
    found: dict[str, tuple[str, str]] = {}
    with engine.connect() as connection:
        for chunk in chunks:
            found.update({str(key): (str(arm), str(status))
                          for key, arm, status in connection.execute(chunk)})
    return found


def learner_arms(engine: Engine, experiment_id: str) -> dict[str, str]:
    """Arm of each enrolled pupil, by learner key (the store's ``learner_key``).

    The events of a learner-randomised experiment are stored with the class's arm
    :data:`MIXED_ARM`; the analysis takes each pupil's arm from here (withdrawn pupils
    included: intention to treat).

    Examples
    --------
    >>> learner_arms(fresh_registry(), "x")
    {}
    """
    return {key: arm for key, (arm, _) in learner_statuses(engine, experiment_id).items()}


def verify_learner_allocations(engine: Engine, design: EnrollmentDesign) -> list[str]:
    """:func:`experiments.enrollment.assignments.verify_allocations`, and every pupil's arm checked
    against its logged allocation.

    Examples
    --------
    >>> from experiments.protocol.language import load_protocol
    >>> engine = fresh_registry()
    >>> design = EnrollmentDesign.from_protocol(
    ...     load_protocol("tests/data/enrollment/learner-protocol.yaml"))
    >>> verify_learner_allocations(engine, design)
    []
    """
    problems = verify_allocations(engine, design)
    log = ALLOCATIONS
    with engine.connect() as connection:
        logged = {str(unit): str(arm) for unit, arm in connection.execute(
            sa.select(log.c.unit_id, log.c.arm).where(log.c.experiment_id == design.experiment_id)
        )}
        pupils = connection.execute(
            sa.select(LEARNERS.c.unit_id, LEARNERS.c.class_id, LEARNERS.c.arm)
            .where(LEARNERS.c.experiment_id == design.experiment_id)
            .order_by(LEARNERS.c.id)
        ).all()
    for unit_id, class_id, arm in pupils:
        if logged.get(unit_id) != arm:
            problems.append(f"{unit_id} of class {class_id}: arm {arm}, allocated "
                            f"{logged.get(unit_id)}")
    return problems
