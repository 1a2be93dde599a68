"""Questionnaire answers of an experiment: read from its store, imported from a file, and
turned into what the analyses use (issue 19 item 4).

Answers are ``questionnaire_answered`` events (docs/architecture.md "Event contract v1"):
``object_id`` the item, ``score`` the answer, ``extensions.questionnaire`` the
questionnaire of the protocol. They arrive through the gateway (native events, or xAPI
Likert answers, :mod:`ingest.xapi`) or from a file (:func:`import_questionnaires`), and
their ``learner_id`` is re-keyed with the experiment's key like every learner id. A
teacher's answers carry ``extensions.respondent: teacher`` and the teacher's pseudonymous
id as ``learner_id``; the class they describe is the event's ``class_id``.

The wave of an answer is ``extensions.wave`` when given (an import always gives it),
otherwise the school day (Paris) it was given: before the intervention → ``baseline``,
after it → ``endline``, during it → not used. When an item is answered twice in a wave the
latest answer counts (a respondent may change their mind). Answers to an undeclared
questionnaire or item, or outside the item's range, are not used (counted).

What the answers become (:func:`read_answers` then):

- :func:`scale_outcome_rows`: for each outcome declared with ``questionnaire:`` (a pupils'
  scale), one outcome record per pupil and wave with the pupil's scale score, ``measure``
  the outcome's id.
- :func:`teacher_unit_columns`: for each teacher scale given at the baseline, the mean of
  the baseline scores of the teachers of each unit: a unit column named after the scale,
  that the protocol may name as a covariate or a subgroup attribute.
- :func:`pupil_covariate_columns`: a pupils' scale given at the baseline and named as a
  covariate: the pupil's baseline score, a learner column of the outcomes file.
- :func:`questionnaire_summary`: the report's « Questionnaires » section, aggregated: per
  scale and wave, Cronbach's alpha, respondents and the mean per arm; every count under
  10 (pupils or teachers) suppressed with its mean (:mod:`analysis.suppression`).
"""

from __future__ import annotations

import csv
import math
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from analysis.questionnaires import ItemSpec, ScaleSpec, reliability, scale_scores
from analysis.suppression import suppress_count
from experiments.access import record_audit
from experiments.enrollment.assignments import enrolled_classes
from experiments.errors import StoreError
from experiments.protocol.language import Protocol, Questionnaire
from experiments.protocol.vocabulary import SCHOOL_TIMEZONE
from experiments.runs.provenance import import_authority
from experiments.settings import Settings
from experiments.store import ExperimentStore, StoredEvent, events_table

__all__ = [
    "QuestionnaireAnswers",
    "QuestionnairesImport",
    "import_questionnaires",
    "pupil_covariate_columns",
    "pupil_covariate_names",
    "questionnaire_summary",
    "read_answers",
    "scale_outcome_rows",
    "scale_specs",
    "teacher_scale_names",
    "teacher_unit_columns",
]

VERB = "questionnaire_answered"
WAVES = ("baseline", "endline")
_NAMESPACE = uuid.UUID("8b0f3f4e-2c55-4d8a-a1c7-6e9d2f4b7a31")

#: (questionnaire id, wave) → respondent key → item id → answer.
Responses = dict[tuple[str, str], dict[str, dict[str, float]]]


@dataclass
class QuestionnaireAnswers:
    """The usable answers of an experiment, by questionnaire and wave."""

    responses: Responses = field(default_factory=dict)
    class_of: dict[str, str] = field(default_factory=dict)
    """The class of each respondent (its latest answer's)."""
    ignored: int = 0
    """Answers not used: undeclared questionnaire or item, out of range, during the
    intervention, wave not declared, or a class not enrolled."""


def scale_specs(questionnaire: Questionnaire) -> list[ScaleSpec]:
    """The scales of a protocol's questionnaire as :mod:`analysis.questionnaires` takes them."""
    items = {i.id: ItemSpec(i.id, i.min, i.max, i.reverse) for i in questionnaire.items}
    return [ScaleSpec(s.id, tuple(items[i] for i in s.items), s.min_answered)
            for s in questionnaire.scales]


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _wave_of(protocol: Protocol, extensions: Mapping[str, Any], occurred_at: datetime
             ) -> str | None:
    wave = extensions.get("wave")
    if wave in WAVES:
        return str(wave)
    day = _utc(occurred_at).astimezone(SCHOOL_TIMEZONE).date()
    intervention = protocol.periods.intervention
    return ("baseline" if day < intervention.start
            else "endline" if day > intervention.end else None)


def read_answers(connection: Any, protocol: Protocol, *, cutoff: datetime | None = None,
                 enrolled: Callable[[str], bool] = lambda class_id: True,
                 removed: Iterable[str] = ()) -> QuestionnaireAnswers:
    """The answers of the store that an analysis may use.

    Parameters
    ----------
    connection
        A connection to the experiment's store (the run's read snapshot).
    cutoff
        Only the answers given and stored by then (a scheduled run's data date).
    enrolled
        Whether a class is enrolled (by the cut-off): other classes' answers are ignored.
    removed
        Learner keys of pupils who objected (their data is not used).
    """
    declared = {q.id: q for q in protocol.questionnaires}
    answers = QuestionnaireAnswers()
    if not declared:
        return answers
    e = events_table
    rows = connection.execute(
        sa.select(e.c.learner_key, e.c.class_id, e.c.object_id, e.c.score, e.c.occurred_at,
                  e.c.extensions)
        .where(e.c.verb == VERB, e.c.score.is_not(None),
               sa.true() if cutoff is None else e.c.stored_at <= cutoff)
        .order_by(e.c.occurred_at, e.c.event_id)
    ).all()
    gone = set(removed)
    for learner, class_id, item_id, score, occurred_at, extensions in rows:
        if cutoff is not None and _utc(occurred_at) > _utc(cutoff):
            continue
        extensions = extensions or {}
        q = declared.get(str(extensions.get("questionnaire")))
        item = None if q is None else next((i for i in q.items if i.id == item_id), None)
        wave = _wave_of(protocol, extensions, occurred_at)
        # Absent, the respondent is the questionnaire's; given, it must be the same.
        respondent = extensions.get("respondent", None if q is None else q.respondent)
        if (q is None or item is None or wave is None or wave not in q.waves
                or respondent != q.respondent or not item.min <= float(score) <= item.max
                or learner in gone or not enrolled(class_id)):
            answers.ignored += 1
            continue
        answers.responses.setdefault((q.id, wave), {}).setdefault(learner, {})[item.id] = (
            float(score))
        answers.class_of[learner] = class_id
    return answers


def scale_outcome_rows(protocol: Protocol, answers: QuestionnaireAnswers,
                       unit_for: Callable[[str, str], str | None]) -> list[dict[str, str]]:
    """Outcome records (offline outcomes format) of the outcomes that are pupils' scales."""
    by_id = {q.id: q for q in protocol.questionnaires}
    rows: list[dict[str, str]] = []
    for outcome in protocol.outcomes:
        ref = outcome.questionnaire
        if ref is None:
            continue
        q = by_id[ref.questionnaire]
        spec = next(s for s in scale_specs(q) if s.id == ref.scale)
        for wave in WAVES:
            scores = scale_scores(spec, answers.responses.get((q.id, wave), {}))
            for learner, score in sorted(scores.items()):
                unit_id = unit_for(learner, answers.class_of[learner])
                if unit_id is not None:
                    rows.append({"learner_id": learner, "unit_id": unit_id,
                                 "measure": outcome.id, "wave": wave, "score": repr(score)})
    return rows


def teacher_unit_columns(protocol: Protocol, answers: QuestionnaireAnswers,
                         unit_of_class: Callable[[str], str | None]
                         ) -> dict[str, dict[str, str]]:
    """Unit id → {teacher scale id: mean baseline score of the unit's teachers}."""
    columns: dict[str, dict[str, str]] = defaultdict(dict)
    for q in protocol.questionnaires:
        if q.respondent != "teacher" or "baseline" not in q.waves:
            continue
        for spec in scale_specs(q):
            per_unit: dict[str, list[float]] = defaultdict(list)
            for teacher, score in scale_scores(
                    spec, answers.responses.get((q.id, "baseline"), {})).items():
                unit_id = unit_of_class(answers.class_of[teacher])
                if unit_id is not None:
                    per_unit[unit_id].append(score)
            for unit_id, scores in per_unit.items():
                columns[unit_id][spec.id] = repr(math.fsum(scores) / len(scores))
    return dict(columns)


def pupil_covariate_names(protocol: Protocol) -> list[str]:
    """Pupils' scales named as covariates (given at the baseline, the protocol checks)."""
    covariates = set(protocol.analysis.covariates)
    return [s.id for q in protocol.questionnaires if q.respondent == "pupil"
            and "baseline" in q.waves for s in q.scales if s.id in covariates]


def pupil_covariate_columns(protocol: Protocol, answers: QuestionnaireAnswers
                            ) -> dict[str, dict[str, str]]:
    """Learner key → {pupil scale named as a covariate: the pupil's baseline score}."""
    names = set(pupil_covariate_names(protocol))
    columns: dict[str, dict[str, str]] = defaultdict(dict)
    for q in protocol.questionnaires:
        for spec in scale_specs(q):
            if q.respondent != "pupil" or spec.id not in names:
                continue
            for learner, score in scale_scores(
                    spec, answers.responses.get((q.id, "baseline"), {})).items():
                columns[learner][spec.id] = repr(score)
    return dict(columns)


def teacher_scale_names(protocol: Protocol) -> list[str]:
    """The unit columns :func:`teacher_unit_columns` may write, in protocol order."""
    return [s.id for q in protocol.questionnaires
            if q.respondent == "teacher" and "baseline" in q.waves for s in q.scales]


def _number(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def questionnaire_summary(protocol: Protocol, answers: QuestionnaireAnswers,
                          arm_of: Callable[[str, str], str | None]) -> list[dict[str, Any]]:
    """The report's « Questionnaires » section: one entry per questionnaire × scale × wave.

    Each entry: ``questionnaire``, ``respondent``, ``scale``, ``label``, ``wave``,
    ``items`` (count), ``n_respondents`` and ``alpha`` (None under 10 respondents: an
    alpha of a handful of people says nothing and would show a small cell), ``alpha_n``
    (complete cases), and ``arms``: per arm (protocol order) ``n`` and ``mean`` of the
    scale scores, both None when the arm has fewer than 10 respondents. ``arm_of`` gives
    the arm of a respondent (learner key, class id), None when it has none.
    """
    arms = [a.name for a in protocol.arms]
    out: list[dict[str, Any]] = []
    for q in protocol.questionnaires:
        labels = {s.id: s.label for s in q.scales}
        for spec in scale_specs(q):
            for wave in q.waves:
                responses = answers.responses.get((q.id, wave), {})
                overall = reliability(spec, responses)
                shown = suppress_count(overall.n_respondents)
                per_arm = []
                for arm in arms:
                    mine = {k: v for k, v in responses.items()
                            if arm_of(k, answers.class_of[k]) == arm}
                    summary = reliability(spec, mine)
                    n = suppress_count(summary.n_scored)
                    per_arm.append({"arm": arm, "n": n,
                                    "mean": None if n is None else _number(summary.mean)})
                out.append({
                    "questionnaire": q.id, "respondent": q.respondent, "scale": spec.id,
                    "label": labels.get(spec.id), "wave": wave, "items": len(spec.items),
                    "n_respondents": shown,
                    "alpha": None if shown is None else _number(overall.alpha),
                    "alpha_n": None if shown is None else suppress_count(overall.n_complete),
                    "arms": per_arm,
                })
    return out


# --- importing answers -------------------------------------------------------------------


@dataclass(frozen=True)
class QuestionnairesImport:
    """What :func:`import_questionnaires` stored."""

    respondents: int
    """Rows of the file (one respondent, questionnaire and wave each)."""
    stored: int
    """Answers stored now."""
    already: int
    """Answers already stored with the same value."""


def _answer_event_id(experiment: str, respondent: str, questionnaire: str, wave: str,
                     item: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{experiment}/{respondent}/{questionnaire}/{wave}/{item}"))


def _wave_day(protocol: Protocol, wave: str) -> date:
    periods = protocol.periods
    if wave == "baseline":
        return (periods.baseline.start if periods.baseline
                else periods.intervention.start - timedelta(days=1))
    return (periods.followup.start if periods.followup
            else periods.intervention.end + timedelta(days=1))


def import_questionnaires(settings: Settings, registry: Engine, protocol: Protocol, path: Path,
                          now: datetime | None = None, *,
                          actor: str = "admin:*:python") -> QuestionnairesImport:
    """Store questionnaire answers from a file as ``questionnaire_answered`` events.

    The file (UTF-8 CSV, one row per respondent, questionnaire and wave) has the columns
    ``respondent_id,unit_id,questionnaire,wave`` then one column per item id (any
    questionnaire's); an empty cell is an unanswered item. ``respondent_id`` is the
    pupil's (or, for a teacher questionnaire, the teacher's) id as the resource knows it,
    pseudonymised here with the experiment's key; ``unit_id`` is the class. An answer is
    dated the first day of the baseline period (``baseline``) or of the follow-up
    (``endline``). The events' authority is ``import:<actor>``.

    Importing a file again stores nothing new; an answer already stored with another value
    is refused (there is no silent change; remove the row or correct the source).

    The import is in the registry's audit log (``questionnaires.import``: who, the file,
    rows, answers stored and already there), written once the store has committed.

    Raises
    ------
    StoreError
        A row names an unknown class or questionnaire, a wave the questionnaire is not
        given at, an item column with a value outside the item's range or not a number, an
        item of another questionnaire, or changes a stored answer (the message names the
        file, line and field). Nothing is stored.
    """
    from ingest.pseudonym import load_pseudonym_key, pseudonymise

    key = load_pseudonym_key(settings)
    classes = {c.class_id: c for c in enrolled_classes(registry, protocol.id)}
    declared = {q.id: q for q in protocol.questionnaires}
    if not declared:
        raise StoreError(f"{path}: {protocol.id} declares no questionnaire (questionnaires: "
                         "in the protocol)", path=str(path), field="questionnaire")
    all_items = {i.id for q in declared.values() for i in q.items}
    authority = import_authority(actor)
    events: list[StoredEvent] = []
    respondents = 0
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        header = list(reader.fieldnames or ())
        fixed = ["respondent_id", "unit_id", "questionnaire", "wave"]
        missing = [c for c in fixed if c not in header]
        unknown = [c for c in header if c not in fixed and c not in all_items]
        if missing or unknown:
            why = (f"missing column(s) {missing}" if missing else
                   f"column(s) {unknown} are not items of a declared questionnaire "
                   f"(items: {', '.join(sorted(all_items))})")
            raise StoreError(f"{path}:1: header: {why}", path=str(path), line=1, field="header")
        for line, row in enumerate(reader, start=2):
            def refuse(field: str, why: str, row: dict[str, str] = row, line: int = line
                       ) -> StoreError:
                return StoreError(f"{path}:{line}: {field}: {why}, got {row.get(field)!r}",
                                  path=str(path), line=line, field=field)

            enrolled = classes.get((row["unit_id"] or "").strip())
            if enrolled is None:
                raise refuse("unit_id", f"not a class enrolled in {protocol.id}")
            q = declared.get((row["questionnaire"] or "").strip())
            if q is None:
                raise refuse("questionnaire", f"must be one of {sorted(declared)}")
            wave = (row["wave"] or "").strip()
            if wave not in q.waves:
                raise refuse("wave", f"questionnaire {q.id!r} is given at {q.waves}")
            respondent_id = (row["respondent_id"] or "").strip()
            if not respondent_id:
                raise refuse("respondent_id", "required")
            learner = pseudonymise(key, protocol.id, respondent_id)
            items = {i.id: i for i in q.items}
            day = _wave_day(protocol, wave)
            respondents += 1
            for column in (c for c in header if c not in fixed):
                text = (row.get(column) or "").strip()
                if not text:
                    continue
                item = items.get(column)
                if item is None:
                    raise refuse(column, f"is not an item of questionnaire {q.id!r}")
                try:
                    score = float(text)
                except ValueError:
                    raise refuse(column, "must be a number") from None
                if not (item.min <= score <= item.max) or not score.is_integer():
                    raise refuse(column, f"must be a whole number from {item.min} to "
                                 f"{item.max}")
                events.append(StoredEvent(
                    event_id=_answer_event_id(protocol.id, learner, q.id, wave, item.id),
                    occurred_at=datetime.combine(day, time(12), tzinfo=SCHOOL_TIMEZONE),
                    resource_id=protocol.resource.id, learner_key=learner,
                    class_id=enrolled.class_id, school_uai=enrolled.school_uai,
                    arm=enrolled.arm, verb=VERB, object_id=item.id, score=score,
                    extensions={"questionnaire": q.id, "respondent": q.respondent,
                                "wave": wave, "source": "import", "line": line},
                    authority=authority,
                ))
    store = ExperimentStore(settings, protocol.id)
    known = _stored_scores(store, [e.event_id for e in events])
    changed = [e for e in events if e.event_id in known and known[e.event_id] != e.score]
    if changed:
        shown = "\n".join(
            f"{path}:{(e.extensions or {}).get('line')}: {e.object_id}: already stored with "
            f"the answer {known[e.event_id]!r}, the file gives {e.score!r}"
            for e in changed[:20])
        raise StoreError(f"{path}: {len(changed)} answer(s) already stored with another value; "
                         f"nothing was stored\n{shown}", path=str(path), field="score")
    events = [_without_line(e) for e in events]
    written = store.write_events(events, now or datetime.now(UTC))
    with Session(registry) as session, session.begin():
        record_audit(session, actor, "questionnaires.import", protocol.id, {
            "file": str(path), "rows": respondents, "stored": written.inserted,
            "already": written.duplicates,
        })
    return QuestionnairesImport(respondents, written.inserted, written.duplicates)


def _without_line(event: StoredEvent) -> StoredEvent:
    """The event without the file line (kept only to name it in a refusal)."""
    extensions = {k: v for k, v in (event.extensions or {}).items() if k != "line"}
    return event._replace(extensions=extensions)


def _stored_scores(store: ExperimentStore, event_ids: list[str]) -> dict[str, float]:
    found: dict[str, float] = {}
    e = events_table
    with store.engine.connect() as connection:
        for start in range(0, len(event_ids), 500):
            chunk = event_ids[start:start + 500]
            for event_id, score in connection.execute(
                    sa.select(e.c.event_id, e.c.score).where(e.c.event_id.in_(chunk))):
                found[str(event_id)] = float(score)
    return found
