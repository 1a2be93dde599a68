"""How every HTTP app of Preuve says no: one body shape, one set of handlers.

The gateway (events and enrollment) and the portal's JSON endpoints answer every refusal
with the same :class:`Refusal` body::

    {"detail": "why, in one sentence (or an object, or FastAPI's validation list)",
     "errors": [{"index": null, "field": "Authorization", "reason": "..."}]}

``errors`` lists each problem (for a batch of events, each bad item by index);
``detail`` is the sentence a person reads. :func:`install_refusals` makes an app answer
that way for Preuve's refusals (:class:`Refused`, the gateway's
:class:`~ingest.errors.BatchRefused`), FastAPI's and Starlette's (``HTTPException``,
a body that fails validation) and a registry that cannot be reached: a 503 whose body
says only that (the database's own message, which names its host and user, goes to the
log).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from ingest.errors import BatchRefused

__all__ = ["Problem", "Refusal", "Refused", "install_refusals", "refusal_response"]

logger = logging.getLogger(__name__)

#: Seconds a client waits before retrying when the registry is unavailable.
_REGISTRY_RETRY_AFTER_S = 5


class Problem(BaseModel):
    """One reason to refuse a request."""

    index: int | None = Field(description="Index of the item in the batch; null: the request.")
    field: str | None = Field(description="The offending field, when there is one.")
    reason: str


class Refusal(BaseModel):
    """Answer of a refused request: nothing of it was done."""

    detail: str | dict[str, Any] | list[Any] = Field(
        description="Why, in one sentence; for an enrollment file with another académie's "
        "rows, an object with `reason`, `raison` (French) and the `lines` concerned; for a "
        "body that fails validation, the list of its errors."
    )
    errors: list[Problem] = Field(description="Each problem (each bad item of a batch).")


class Refused(Exception):
    """Refuse the request with ``status``: ``reason`` (and ``field``) or ``problems``."""

    def __init__(self, status: int, reason: str, *, field: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.field = field
        self.headers = dict(headers or {})


def refusal_response(status: int, detail: str | dict[str, Any] | list[Any],
                     problems: Sequence[Problem],
                     headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The JSON answer of a refusal (:class:`Refusal`)."""
    body = Refusal(detail=detail, errors=list(problems))
    return JSONResponse(jsonable_encoder(body), status_code=status, headers=dict(headers or {}))


def _detail_problems(detail: Any) -> list[Problem]:
    if isinstance(detail, dict):
        reason = detail.get("reason")
        return [Problem(index=None, field=None, reason=str(reason if reason else detail))]
    return [Problem(index=None, field=None, reason=str(detail))]


async def _refused(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Refused)
    return refusal_response(exc.status, exc.reason,
                            [Problem(index=None, field=exc.field, reason=exc.reason)],
                            exc.headers)


async def _batch_refused(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BatchRefused)
    problems = [Problem(index=p.index, field=p.field, reason=p.reason) for p in exc.problems]
    detail = problems[0].reason if len(problems) == 1 else (
        f"{len(problems)} problems: each is listed in `errors`")
    return refusal_response(exc.status, detail, problems, exc.headers)


async def _http_exception(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return refusal_response(exc.status_code, exc.detail, _detail_problems(exc.detail),
                            exc.headers)


async def _invalid(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # A body that is not UTF-8 comes back as bytes in ``input``: shown, never a crash.
    errors = jsonable_encoder(exc.errors(),
                              custom_encoder={bytes: lambda b: b.decode("utf-8", "replace")})
    problems = [
        Problem(index=None,
                field=".".join(str(part) for part in e.get("loc", ())[1:]) or None,
                reason=str(e.get("msg", "invalid")))
        for e in errors
    ]
    return refusal_response(422, errors, problems)


async def _registry_unavailable(request: Request, exc: Exception) -> JSONResponse:
    # The driver's message names the database host and user: the log has it, not the client.
    logger.warning("answering 503 to %s %s: the registry is unavailable: %s",
                   request.method, request.url.path,
                   getattr(exc, "orig", None) or type(exc).__name__)
    reason = "the registry is unavailable; retry later"
    return refusal_response(503, reason, [Problem(index=None, field=None, reason=reason)],
                            {"Retry-After": str(_REGISTRY_RETRY_AFTER_S)})


def install_refusals(app: FastAPI) -> None:
    """Make ``app`` answer every refusal with the :class:`Refusal` body."""
    app.add_exception_handler(Refused, _refused)
    app.add_exception_handler(BatchRefused, _batch_refused)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(sa.exc.OperationalError, _registry_unavailable)
    app.add_exception_handler(sa.exc.InterfaceError, _registry_unavailable)
