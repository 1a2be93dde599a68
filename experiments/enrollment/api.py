"""HTTP API of enrollment: académies enroll and withdraw classes, EdTech companies learn
which classes must get their resource.

The routes live in the module-level :data:`router`; ``install_enrollment_api(app,
settings)`` gives them their state (``app.state.enrollment``) and mounts them (the
gateway does). Every call needs ``Authorization: Bearer <token>`` or ``X-API-Key:
<token>``, checked by :func:`experiments.access.caller` before any body is read, as for
the gateway's event endpoints; refusals have the one body of :mod:`experiments.refusals`:

- ``POST /v1/experiments/{id}/enrollments`` (académie token): a CSV body (``text/csv``,
  the file of ``preuve enroll``) or JSON rows (``{"classes": [{...}, ...]}``). A row of
  another académie than the token's makes the whole request 403: nothing is enrolled.
  Otherwise the answer lists the enrolled classes with their arms, those already
  enrolled, the refused rows with reasons in French and English, and the balance report
  (for an académie, of its own classes; a refusal about another académie's class says
  only that the id is taken).
- ``GET /v1/experiments/{id}/enrollments``: an académie sees its classes and their arms;
  an EdTech token scoped to the experiment's resource sees the classes that must get the
  resource (treatment arms, not withdrawn), and nothing else; a researcher token scoped
  to the experiment and an admin see every class.
- ``POST /v1/experiments/{id}/withdrawals`` (académie token, its own classes):
  ``{"class_id": ..., "reason": ..., "learner_id": optional}``.
- ``POST /v1/experiments/{id}/corrections`` (académie token, its own classes, before the
  intervention starts): ``{"class_id": ..., "reason": ..., "pupils": N, "attributes":
  {...}}``; versioned and audited, the arm kept.

For a learner-randomised protocol (``population.unit: learner``) the enrollment body is a
file of pupils (``learner_id,class_id,school_uai,level,academie`` + attributes, or JSON
``{"pupils": [...]}``), see :mod:`experiments.enrollment.transaction`: the answer gives each
pupil's arm by the id sent (never stored: the registry keeps a per-experiment pseudonym),
the classes are enrolled with the arm ``*`` (mixed), and an EdTech token sees those mixed
classes (the académie tells which pupils get the resource). A pupil's withdrawal names
the pupil by the id sent at enrollment.

Status codes: 401 without a valid token; 403 for a role that may not use the route; 404
for an unknown experiment or class, and the same 404 for an experiment the token's scope
does not cover (another resource's, another experiment's researcher), so that a token
cannot learn which experiments exist; 409 when the experiment is not open to enrollment or its
randomisation changed; 400 for a body that cannot be read as a whole (missing column).
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Annotated, Any, TypeVar

import sqlalchemy as sa
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from experiments.access import Principal, caller, record_audit
from experiments.database import registry_engine
from experiments.enrollment.assignments import enrolled_classes, enrolled_learners, learner_statuses
from experiments.enrollment.balance import (
    BalanceReport,
    BalanceUnit,
    balance_report,
    enrollment_balance,
)
from experiments.enrollment.design import enrollment_design
from experiments.enrollment.files import (
    BASE_COLUMNS,
    PUPIL_COLUMNS,
    ClassesFile,
    EnrollmentDesign,
    Refusal,
    read_classes,
    read_pupils,
)
from experiments.enrollment.publishing import Publish, kafka_publisher, publish_pending
from experiments.enrollment.tables import MIXED_ARM
from experiments.enrollment.transaction import (
    EnrolledClass,
    EnrolledLearner,
    enroll_classes,
    enroll_learners,
)
from experiments.enrollment.withdrawal import withdraw
from experiments.errors import EnrollmentError, RegistryError
from experiments.privacy.retention import remove_withdrawn_pupil_data
from experiments.refusals import Refusal as RefusalBody
from experiments.refusals import install_refusals
from experiments.registry import ExperimentRow
from experiments.settings import Settings
from ingest.contract import PSEUDONYM_PATTERN
from ingest.pseudonym import check_pseudonym_key, pseudonymise

__all__ = [
    "AssignmentRequest",
    "WithdrawalRequest",
    "install_enrollment_api",
    "openapi_components",
    "router",
]

logger = logging.getLogger(__name__)


_NO_NUL = r"^[^\x00]*$"
_Body = TypeVar("_Body", bound=BaseModel)


class AssignmentRequest(BaseModel):
    """Body of ``POST .../assignments``: pupil ids as the resource sends them in events."""

    model_config = ConfigDict(extra="forbid")

    learner_ids: list[Annotated[str, Field(pattern=PSEUDONYM_PATTERN)]] = Field(
        min_length=1, max_length=1000
    )



class WithdrawalRequest(BaseModel):
    """Body of ``POST .../withdrawals``."""

    model_config = ConfigDict(extra="forbid")

    # No NUL character: PostgreSQL cannot store one in text (a 500, found by fuzzing).
    class_id: str = Field(min_length=1, max_length=128, pattern=_NO_NUL)
    reason: str = Field(min_length=1, max_length=512, pattern=_NO_NUL, description=(
        "Why; kept in the registry and the audit log, so never a name: an e-mail address "
        "or a phone number is refused (400)."))
    learner_id: str | None = Field(None, min_length=1, max_length=128, pattern=_NO_NUL)


def _class_json(c: EnrolledClass) -> dict[str, Any]:
    return {"class_id": c.class_id, "school_uai": c.school_uai, "academie": c.academie,
            "level": c.level, "pupils": c.pupils, "arm": c.arm, "status": c.status}


def _pupil_json(p: EnrolledLearner) -> dict[str, Any]:
    return {"learner_id": p.learner_id, "class_id": p.class_id, "arm": p.arm}


def _rows_to_csv(payload: Any, design: EnrollmentDesign) -> str:
    kind = "pupils" if design.unit == "learner" else "classes"
    rows = payload.get(kind) if isinstance(payload, dict) else payload
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise HTTPException(400, f'expecting {{"{kind}": [{{...}}, ...]}} or a list of objects')
    base = PUPIL_COLUMNS if design.unit == "learner" else BASE_COLUMNS
    columns = list(base) + [a for a in design.attributes if a not in base]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else str(row[c]) for c in columns])
    return out.getvalue()


# --- what an académie may learn -----------------------------------------------------
#
# An académie sees its own classes only. Two answers of the enrollment call would tell it
# about the others': a refusal that quotes how the registry holds a class ("already
# enrolled with school_uai = 0781234T", "in experiment X"), and the balance of the whole
# experiment, whose arm counts, polled between two enrollments of another académie, give
# the arm of its new class. So an académie's refusals about a class that is not its own
# say no more than that the id is taken, and its balance covers its own units.

_CLASS_DETAILS = frozenset({
    "enrolled_differently", "enrolled_elsewhere", "class_enrolled_differently",
    "class_enrolled_elsewhere", "class_withdrawn",
})
_PUPIL_DETAILS = frozenset({"learner_enrolled_differently"})


def _classes_of(engine: Engine, academie: str, experiment_ids: Sequence[str]) -> set[str]:
    return {c.class_id for eid in experiment_ids
            for c in enrolled_classes(engine, eid, academie=academie)}


def _refusals_for(engine: Engine, experiment_id: str, academie: str | None,
                  refusals: Sequence[Refusal]) -> list[dict[str, Any]]:
    """The refusals as JSON, those about another académie's class or pupil without its
    details."""
    if academie is None or not any(r.code in _CLASS_DETAILS | _PUPIL_DETAILS
                                   for r in refusals):
        return [r.as_dict() for r in refusals]
    owned = _classes_of(engine, academie, [experiment_id])
    if any(r.code.endswith("enrolled_elsewhere") for r in refusals):
        with Session(engine) as session:
            every = session.scalars(sa.select(ExperimentRow.id)).all()
        owned |= _classes_of(engine, academie, every)
    answers: list[dict[str, Any]] = []
    for r in refusals:
        if r.code in _CLASS_DETAILS and r.class_id not in owned:
            answers.append({
                "line": r.line, "class_id": r.class_id, "field": "class_id",
                "value": r.class_id, "code": "class_id_taken",
                "message_fr": f"la classe « {r.class_id} » est déjà inscrite, pas par votre "
                              "académie : vérifiez son identifiant",
                "message_en": f"class '{r.class_id}' is already enrolled, not by your "
                              "académie: check its id",
            })
        elif r.code in _PUPIL_DETAILS:
            # The stored pupil may be another académie's: say which pupil, not how it is held.
            answers.append({
                "line": r.line, "class_id": r.class_id, "field": "learner_id",
                "value": r.value, "code": r.code,
                "message_fr": f"l'élève « {r.value} » est déjà inscrit avec d'autres "
                              "données ; une inscription ne se modifie pas",
                "message_en": f"pupil '{r.value}' is already enrolled with other details; "
                              "an enrollment cannot be edited",
            })
        else:
            answers.append(r.as_dict())
    return answers


def _balance_for(engine: Engine, design: EnrollmentDesign,
                 academie: str | None) -> dict[str, Any]:
    """The balance report of the experiment, or for an académie of its own units."""
    if academie is None:
        return enrollment_balance(engine, design).as_dict()
    compared = list(design.attributes)
    if len(design.levels) > 1 and design.unit != "school":
        compared.append("level")
    units: dict[str, BalanceUnit] = {}
    if design.unit == "learner":
        pupils = enrolled_learners(engine, design.experiment_id, academie=academie)
        for p in pupils:
            units[p.learner_key] = BalanceUnit(p.arm, 0, 1, {**p.attributes, "level": p.level})
        report = balance_report(list(units.values()), design.arms, design.control, compared,
                                unit="learner")
        classes = Counter(arm for arm, _ in {(p.arm, p.class_id) for p in pupils})
        return BalanceReport(
            report.unit, [replace(c, classes=classes[c.arm]) for c in report.counts],
            [d for d in report.differences if d.attribute != "pupils"],
        ).as_dict()
    for c in enrolled_classes(engine, design.experiment_id, academie=academie):
        key = c.school_uai if design.unit == "school" else c.class_id
        known = units.get(key)
        units[key] = BalanceUnit(c.arm, 1, c.pupils, {**c.attributes, "level": c.level}) if (
            known is None) else BalanceUnit(known.arm, known.classes + 1,
                                            known.pupils + c.pupils, known.attributes)
    return balance_report(list(units.values()), design.arms, design.control, compared,
                         unit=design.unit).as_dict()


# The answers besides 200, as the module's docstring documents them (OpenAPI).
_REFUSALS: dict[int | str, dict[str, Any]] = {
    400: {"model": RefusalBody,
          "description": "A body that cannot be read as a whole (not UTF-8, not JSON, a "
          "missing column)."},
    401: {"model": RefusalBody, "description": "No valid token."},
    403: {"model": RefusalBody,
          "description": "A role or scope that may not (a file with another académie's "
          "rows: nothing enrolled)."},
    404: {"model": RefusalBody, "description": "Unknown experiment, class or pupil."},
    409: {"model": RefusalBody,
          "description": "The experiment is not open to enrollment, its randomisation "
          "changed, or the class is already withdrawn."},
    413: {"model": RefusalBody, "description": "A body larger than the route allows."},
    422: {"model": RefusalBody, "description": "A JSON body that breaks the route's schema."},
    503: {"model": RefusalBody, "description": "The registry is unavailable; retry later."},
}


@dataclass(frozen=True)
class _Enrollment:
    """What the enrollment routes need, kept in ``app.state.enrollment``."""

    settings: Settings
    engine: Engine
    publish: Publish

    def pseudonym_key(self) -> bytes:
        from ingest.pseudonym import load_pseudonym_key

        return load_pseudonym_key(self.settings)


def install_enrollment_api(app: FastAPI, settings: Settings, *, publish: Publish | None = None,
                           engine: Engine | None = None) -> None:
    """Serve the enrollment endpoints from ``app``, bound to ``settings``' registry.

    Sets ``app.state.registry`` (the tokens' registry, if the app has none yet) and
    ``app.state.enrollment``, makes the app answer refusals with the one
    :class:`~experiments.refusals.Refusal` body, and includes :data:`router`.

    Parameters
    ----------
    app
        The app to serve them (the gateway's, or a test's).
    settings
        Read once by the app at start-up.
    publish
        Hands new enrollments to ``preuve.enrollments``; default: the Kafka producer of
        :mod:`ingest.kafka.producer` (records left pending if the broker is unreachable).
    engine
        The registry's engine (the gateway passes its own); None: ``registry_engine``.

    Examples
    --------
    >>> app = FastAPI()
    >>> install_enrollment_api(app, fresh_settings())
    >>> sorted(app.openapi()["paths"])  # doctest: +NORMALIZE_WHITESPACE
    ['/v1/experiments/{experiment_id}/assignments',
     '/v1/experiments/{experiment_id}/corrections',
     '/v1/experiments/{experiment_id}/enrollments',
     '/v1/experiments/{experiment_id}/withdrawals']
    """
    engine = engine if engine is not None else registry_engine(settings)
    if getattr(app.state, "registry", None) is None:
        app.state.registry = engine
    app.state.enrollment = _Enrollment(
        settings, engine, publish if publish is not None else kafka_publisher(settings))
    install_refusals(app)
    app.include_router(router, responses=_REFUSALS)


def _enrollment(request: Request) -> _Enrollment:
    enrollment: _Enrollment = request.app.state.enrollment
    return enrollment


_Context = Annotated[_Enrollment, Depends(_enrollment)]
_Caller = Annotated[Principal, Depends(caller)]

router = APIRouter(prefix="/v1/experiments", tags=["enrollment"])
"""The enrollment routes; :func:`install_enrollment_api` gives them their state."""


def _json_body(model: type[_Body]) -> Callable[..., Awaitable[_Body]]:
    """A dependency that reads and validates a small JSON body as ``model``, after the
    caller is authenticated (FastAPI reads a body parameter before any dependency)."""

    async def parse(request: Request, _principal: _Caller) -> _Body:
        try:
            return model.model_validate_json(await request.body())
        except ValidationError as exc:
            raise RequestValidationError(
                [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
            ) from None

    return parse


def _json_request_body(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI ``requestBody`` of a body read by :func:`_json_body`."""
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}}


def openapi_components() -> dict[str, Any]:
    """The JSON Schemas of the bodies the enrollment routes read themselves, for the
    OpenAPI document of the app that serves them."""
    return {m.__name__: m.model_json_schema(ref_template="#/components/schemas/{model}")
            for m in (AssignmentRequest, WithdrawalRequest, CorrectionRequest)}


def _no_experiment(experiment_id: str) -> HTTPException:
    """The 404 of an experiment that does not exist, or that the caller's scope does not
    cover: the same answer, so that a token cannot learn which experiments exist."""
    return HTTPException(404, f"no experiment {experiment_id!r}")


def _design_of(context: _Enrollment, experiment_id: str) -> EnrollmentDesign:
    if "\x00" in experiment_id:  # PostgreSQL refuses NUL in text: no such experiment
        raise _no_experiment(experiment_id)
    try:
        return enrollment_design(context.engine, experiment_id)[0]
    except RegistryError:
        raise _no_experiment(experiment_id) from None
    except EnrollmentError as exc:
        if exc.field == "experiment":
            raise _no_experiment(experiment_id) from None
        raise HTTPException(409, exc.reason) from None


def _academie_of(principal: Principal) -> str | None:
    if principal.role == "admin":
        return None
    if principal.role != "academie":
        raise HTTPException(403, f"role '{principal.role}' may not enroll or withdraw "
                                 "classes; an académie token is needed")
    return principal.scope


def _enroll_body(context: _Enrollment, experiment_id: str, body: bytes, is_json: bool,
                 principal: Principal) -> dict[str, Any]:
    engine = context.engine
    academie = _academie_of(principal)
    design = _design_of(context, experiment_id)
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise HTTPException(400, f"the body is not UTF-8 (byte {exc.start})") from None
    if is_json:
        try:
            text = _rows_to_csv(json.loads(text), design)
        except json.JSONDecodeError as exc:
            raise HTTPException(400, f"the body is not JSON: {exc}") from None
    learners = design.unit == "learner"
    try:
        classes = (read_pupils if learners else read_classes)(
            text, design, name="body", academie=academie)
    except EnrollmentError as exc:
        raise HTTPException(400, exc.reason) from None
    if academie is not None:
        # A token that sends another académie's classes is refused as a whole: that is
        # a question of rights, not a data error to skip over row by row.
        foreign = [r.line for r in classes.refusals if r.code == "other_academie"]
        if foreign:
            raise HTTPException(403, {
                "reason": f"rows of another académie than '{academie}': nothing enrolled",
                "raison": f"lignes d'une autre académie que « {academie} » : aucune "
                          "inscription faite",
                "lines": foreign,
            })
    try:
        if learners:
            assert not isinstance(classes, ClassesFile)
            pupils = enroll_learners(engine, design, classes, key=context.pseudonym_key(),
                                     actor=principal.actor, publish=context.publish)
        else:
            assert isinstance(classes, ClassesFile)
            outcome = enroll_classes(engine, design, classes, actor=principal.actor,
                                     publish=context.publish)
    except EnrollmentError as exc:
        raise HTTPException(409, exc.reason) from None
    if learners:
        return {
            "experiment": experiment_id, "unit": "learner",
            "enrolled": [_pupil_json(p) for p in pupils.enrolled],
            "already": [_pupil_json(p) for p in pupils.already],
            "refused": _refusals_for(engine, experiment_id, academie, pupils.refusals),
            "published": pupils.published, "pending": pupils.pending,
            "balance": _balance_for(engine, design, academie),
        }
    return {
        "experiment": experiment_id,
        "enrolled": [_class_json(c) for c in outcome.enrolled],
        "already": [_class_json(c) for c in outcome.already],
        "refused": _refusals_for(engine, experiment_id, academie, outcome.refusals),
        "published": outcome.published, "pending": outcome.pending,
        "balance": _balance_for(engine, design, academie),
    }


@router.post("/{experiment_id}/enrollments")
async def post_enrollments(
    experiment_id: str, request: Request, principal: _Caller, context: _Context
) -> Any:
    """Enroll classes (CSV or JSON rows); the platform assigns the arms."""
    body = await request.body()  # after the caller's token was checked
    is_json = request.headers.get("content-type", "").startswith("application/json")
    # The database work is synchronous: run it off the event loop.
    return await run_in_threadpool(_enroll_body, context, experiment_id, body, is_json,
                                   principal)


@router.get("/{experiment_id}/enrollments")
def get_enrollments(experiment_id: str, principal: _Caller, context: _Context) -> Any:
    """An académie's classes and arms; for an EdTech, the classes to give the resource."""
    engine = context.engine
    if principal.role not in ("academie", "edtech", "researcher", "admin"):
        raise HTTPException(403, f"role '{principal.role}' may not read enrollments")
    if principal.role == "researcher" and not principal.can_act_for(experiment_id):
        raise _no_experiment(experiment_id)
    design = _design_of(context, experiment_id)
    if principal.role == "academie":
        classes = enrolled_classes(engine, experiment_id, academie=principal.scope)
        return {"experiment": experiment_id, "classes": [_class_json(c) for c in classes]}
    if principal.role == "edtech":
        if principal.scope != design.resource_id:
            raise _no_experiment(experiment_id)  # another resource's: as if it were not
        # In a learner design every class is mixed: some of its pupils get the resource.
        arms = (MIXED_ARM,) if design.unit == "learner" else design.treatment_arms
        classes = [
            c for c in enrolled_classes(engine, experiment_id, arms=arms)
            if c.status == "enrolled"
        ]
        with Session(engine) as session, session.begin():
            record_audit(session, principal.actor, "enrollment.read", experiment_id,
                         {"classes": len(classes)})
        return {
            "experiment": experiment_id, "resource_id": design.resource_id,
            "classes": [{"class_id": c.class_id, "school_uai": c.school_uai, "arm": c.arm}
                        for c in classes],
        }
    classes = enrolled_classes(engine, experiment_id)
    return {"experiment": experiment_id, "classes": [_class_json(c) for c in classes]}


@router.post("/{experiment_id}/assignments",
             openapi_extra=_json_request_body(AssignmentRequest))
def post_assignments(
    experiment_id: str, principal: _Caller, context: _Context,
    body: Annotated[AssignmentRequest, Depends(_json_body(AssignmentRequest))],
) -> Any:
    """For the EdTech resource of a learner-randomised experiment: which of these
    pupils (ids as the resource knows them, the ones its events carry) are to get it.

    A POST so that pupil ids never sit in a URL or an access log. The ids are
    pseudonymised for the lookup and neither stored nor logged; the answer echoes
    them in the order sent, with the arm only when it is a treatment arm.
    """
    if principal.role != "edtech":
        raise HTTPException(403, "only the experiment's resource (an EdTech token) may ask "
                                 "which of its pupils are treated")
    design = _design_of(context, experiment_id)
    if principal.scope != design.resource_id:
        raise _no_experiment(experiment_id)  # another resource's: as if it were not
    if design.unit != "learner":
        raise HTTPException(409, "this experiment randomises classes: read GET "
                                 f"/v1/experiments/{experiment_id}/enrollments")
    key = context.pseudonym_key()
    check_pseudonym_key(context.engine, experiment_id, key)
    keys = {learner: pseudonymise(key, experiment_id, learner) for learner in body.learner_ids}
    found = learner_statuses(context.engine, experiment_id, keys.values())
    treated = set(design.treatment_arms)
    assignments = []
    for learner in body.learner_ids:
        arm, status = found.get(keys[learner], (None, "not_enrolled"))
        assignments.append({"learner_id": learner, "status": status,
                            "treated": arm in treated and status == "enrolled",
                            "arm": arm if arm in treated else None})
    with Session(context.engine) as session, session.begin():
        record_audit(session, principal.actor, "assignment.read", experiment_id,
                     {"pupils": len(body.learner_ids)})
    return {"experiment": experiment_id, "resource_id": design.resource_id,
            "assignments": assignments}


@router.post("/{experiment_id}/withdrawals",
             openapi_extra=_json_request_body(WithdrawalRequest))
def post_withdrawal(
    experiment_id: str, principal: _Caller, context: _Context,
    body: Annotated[WithdrawalRequest, Depends(_json_body(WithdrawalRequest))],
) -> Any:
    """Withdraw a class or one pupil; the class keeps its arm (intention to treat)."""
    academie = _academie_of(principal)
    design = _design_of(context, experiment_id)
    try:
        done = withdraw(context.engine, design, body.class_id, reason=body.reason,
                        actor=principal.actor, learner_id=body.learner_id,
                        key=context.pseudonym_key() if body.learner_id else None,
                        academie=academie)
    except EnrollmentError as exc:
        status = {"class_id": 404, "learner_id": 404, "status": 409}.get(exc.field or "", 400)
        raise HTTPException(status, exc.reason) from None
    removed = remove_withdrawn_pupil_data(context.settings, done, actor=principal.actor)
    report = publish_pending(context.engine, experiment_id, context.publish)
    return {
        "experiment": experiment_id, "class_id": done.class_id,
        "learner_id": body.learner_id, "arm": done.arm, "data_policy": done.data_policy,
        "withdrawn_at": done.withdrawn_at.isoformat(), "published": report.error is None,
        "removed": removed,
    }


class CorrectionRequest(BaseModel):
    """Body of ``POST .../corrections``."""

    model_config = ConfigDict(extra="forbid")

    class_id: str = Field(min_length=1, max_length=128, pattern=_NO_NUL)
    reason: str = Field(min_length=1, max_length=512, pattern=_NO_NUL,
                        description="Why; never a name, e-mail or phone number.")
    pupils: int | None = Field(None, description="The corrected number of pupils.")
    attributes: dict[str, str] = Field(default_factory=dict,
                                       description="Corrected unit attributes.")


def correction_answer(engine: Engine, settings: Settings, design: EnrollmentDesign,
                      body: CorrectionRequest, actor: str, academie: str | None) -> Any:
    """The answer of ``POST .../corrections`` (404 unknown class, 409 too late or
    withdrawn, 400 an invalid value)."""
    from experiments.enrollment.corrections import correct_enrollment
    from experiments.registry import registered_protocol

    start = registered_protocol(engine, design.experiment_id).protocol.periods.intervention.start
    try:
        done = correct_enrollment(engine, design, body.class_id, pupils=body.pupils,
                                  attributes=body.attributes, reason=body.reason, actor=actor,
                                  academie=academie, intervention_start=start,
                                  today=settings.today())
    except EnrollmentError as exc:
        late = exc.reason.startswith("the intervention started")
        status = 409 if late or exc.field == "status" else 404 if exc.field == "class_id" and \
            "not enrolled" in exc.reason else 400
        raise HTTPException(status, exc.reason) from None
    return {"experiment": done.experiment_id, "class_id": done.class_id,
            "version": done.version, "arm": done.arm,
            "changes": {k: list(v) for k, v in done.changes.items()},
            "corrected_at": done.corrected_at.isoformat()}


@router.post("/{experiment_id}/corrections",
             openapi_extra=_json_request_body(CorrectionRequest))
def post_correction(
    experiment_id: str, principal: _Caller, context: _Context,
    body: Annotated[CorrectionRequest, Depends(_json_body(CorrectionRequest))],
) -> Any:
    """Correct a class's pupil count or attributes before the intervention starts
    (:mod:`experiments.enrollment.corrections`); the class keeps its arm. 409 once the
    intervention has started (then only a withdrawal)."""
    academie = _academie_of(principal)
    return correction_answer(context.engine, context.settings,
                             _design_of(context, experiment_id), body, principal.actor,
                             academie)
