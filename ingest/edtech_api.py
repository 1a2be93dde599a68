"""The gateway's API for an EdTech company's own resource (issue 17): its dead letters.

``GET /v1/resources/{resource_id}/deadletters`` lists the resource's refused events,
newest first, from the dead-letter index (:mod:`ingest.deadletters`), a page at a time:
the answer's ``next_cursor`` is passed back as ``?cursor=`` for the next page (``null``
on the last). Each item says why (a code, the reason in French and English, the field)
and shows the payload as kept: learner id removed, cut to 2,000 characters.

Who reads what: an EdTech key its own resource only (another resource answers the same
404 as an unknown one, so that no key learns which resources exist); an admin key every
resource; every other role 403.

Mounted by :func:`ingest.gateway.create_app` with one line (``install_edtech_api``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query
from pydantic import BaseModel, Field
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from experiments.access import Principal, caller
from experiments.refusals import Refusal, Refused
from ingest.deadletters import REASON_CODES, dead_letter_page

__all__ = ["DeadLetters", "install_edtech_api"]


class Reason(BaseModel):
    fr: str
    en: str


class DeadLetterItem(BaseModel):
    """One refused event."""

    id: int = Field(description="The dead letter's number in the index.")
    event_id: str | None = Field(description="The event's id, when it could be read.")
    code: str = Field(description="Why, as a code: " + ", ".join(sorted(REASON_CODES)) + ".")
    field: str | None = Field(description="The field the reason names, if any.")
    reason: Reason
    received_at: str = Field(description="When the stream worker refused it (RFC 3339).")
    payload: str | None = Field(
        description="The event as sent, `learner_id` removed, cut to 2,000 characters; "
        "null when it was not a JSON object.")


class DeadLetters(BaseModel):
    """One page of a resource's dead letters, newest first."""

    resource_id: str
    items: list[DeadLetterItem]
    next_cursor: str | None = Field(
        description="Pass it as `?cursor=` for the next page; null on the last page.")


_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": Refusal, "description": "A cursor that is not one of this list."},
    401: {"model": Refusal, "description": "No valid API key."},
    403: {"model": Refusal, "description": "A key of a role that reads no dead letters."},
    404: {"model": Refusal, "description": "No such resource for this key (another "
          "resource's answers the same)."},
}


def install_edtech_api(app: FastAPI, *, engine: Engine) -> None:
    """Add the EdTech routes to the gateway ``app``, reading the registry ``engine``."""
    router = APIRouter(tags=["edtech"])

    @router.get(
        "/v1/resources/{resource_id}/deadletters",
        response_model=DeadLetters,
        responses=_RESPONSES,
        summary="A resource's refused events (dead letters), newest first, by page",
    )
    async def dead_letters(
        resource_id: str,
        principal: Annotated[Principal, Depends(caller)],
        cursor: Annotated[str | None, Query(max_length=32,
                                            description="`next_cursor` of the page before")] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        code: Annotated[str | None, Query(max_length=32,
                                          description="Only this reason code.")] = None,
    ) -> DeadLetters:
        if principal.role not in ("edtech", "admin"):
            raise Refused(403, f"role '{principal.role}' reads no dead letters",
                          field="Authorization")
        if not principal.can_act_for(resource_id):
            raise Refused(404, f"no resource {resource_id!r} for this key")
        try:
            page = await run_in_threadpool(dead_letter_page, engine, resource_id, cursor,
                                           limit, code)
        except ValueError as error:
            raise Refused(400, str(error), field="cursor") from None
        return DeadLetters(
            resource_id=resource_id,
            items=[DeadLetterItem.model_validate(row.as_json()) for row in page.items],
            next_cursor=page.next_cursor,
        )

    app.include_router(router)
