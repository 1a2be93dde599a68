"""Bounded requests: one ASGI middleware caps the bytes and the time of every body.

Each app (gateway, portal) declares a cap per route (:class:`BodyLimit`): events 1 MiB
(``gateway.max_batch_bytes``), enrollment files a few MiB
(``gateway.server.max_upload_bytes``), forms and small JSON bodies a few KiB
(``*.server.max_form_bytes``). :class:`BodyLimits` applies them before routing:

- a ``Content-Length`` above the cap is answered 413 at once, without reading a byte;
- otherwise the body is counted as the app reads it, and the read that passes the cap
  raises a 413 (:class:`~starlette.exceptions.HTTPException`, so the app answers it
  with its refusal body): the app never holds more than the cap plus one chunk;
- a body that takes longer than ``server.body_timeout_s`` to arrive is a 408.

Nothing is read unless the route reads it, and the routes read bodies only after the
caller's token is checked (:func:`experiments.access.caller`): a request without a token
is answered 401 whatever its size or pace.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import anyio
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from experiments.refusals import Problem, refusal_response
from experiments.settings import ServerSettings, Settings

__all__ = ["BodyLimit", "BodyLimits", "RouteLimits", "gateway_body_limits",
           "portal_body_limits"]

# Small JSON bodies of the enrollment API (a withdrawal: ids and a reason of at most 512
# characters, each possibly written as a 6-byte \u escape).
_SMALL_JSON_BYTES = 16 * 1024
# A collectivité's validation: up to 500 class ids of at most 128 characters (issue 17).
_VALIDATION_BYTES = 96 * 1024


@dataclass(frozen=True)
class BodyLimit:
    """At most ``max_bytes`` of body for ``method`` requests whose path matches ``path``."""

    method: str
    path: str
    max_bytes: int

    def matches(self, method: str, path: str) -> bool:
        return method == self.method and re.fullmatch(self.path, path) is not None


@dataclass(frozen=True)
class RouteLimits:
    """The caps of one app: the first matching :class:`BodyLimit`, else ``default``."""

    routes: Sequence[BodyLimit]
    default: int
    timeout_s: float

    def cap(self, method: str, path: str) -> int:
        """The body cap of a request.

        Examples
        --------
        >>> limits = RouteLimits([BodyLimit("POST", "/v1/events", 1024)], 16, 1.0)
        >>> limits.cap("POST", "/v1/events"), limits.cap("POST", "/connexion")
        (1024, 16)
        """
        return next((r.max_bytes for r in self.routes if r.matches(method, path)),
                    self.default)


def gateway_body_limits(settings: Settings) -> RouteLimits:
    """The gateway's caps: events, enrollment files, small JSON bodies."""
    server: ServerSettings = settings.gateway.server
    batch = settings.gateway.max_batch_bytes
    return RouteLimits(
        [
            BodyLimit("POST", r"/v1/(events|xapi/statements)", batch),
            BodyLimit("POST", r"/v1/experiments/[^/]+/enrollments", server.max_upload_bytes),
            BodyLimit("POST", r"/v1/experiments/[^/]+/assignments", batch),
            BodyLimit("POST", r"/v1/experiments/[^/]+/withdrawals", _SMALL_JSON_BYTES),
            BodyLimit("POST", r"/v1/experiments/[^/]+/validations", _VALIDATION_BYTES),
        ],
        default=server.max_form_bytes,
        timeout_s=server.body_timeout_s,
    )


def portal_body_limits(settings: Settings) -> RouteLimits:
    """The portal's caps: its forms (sign-in, sign-out, a withdrawal, a validation), and
    the académies' enrollment file upload (``server.max_upload_bytes``)."""
    server = settings.portal.server
    return RouteLimits(
        [BodyLimit("POST", r"/inscriptions/[^/]+/fichier", server.max_upload_bytes),
         BodyLimit("POST", r"/validations/[^/]+", _VALIDATION_BYTES)],
        default=server.max_form_bytes, timeout_s=server.body_timeout_s)


class BodyLimits:
    """ASGI middleware that enforces :class:`RouteLimits` (see the module's docstring)."""

    def __init__(self, app: ASGIApp, limits: RouteLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = self.limits.cap(scope["method"], scope["path"])
        declared = _content_length(scope)
        if declared == -1:
            await _refuse(scope, receive, send, 400, "Content-Length is not a number")
            return
        if declared is not None and declared > cap:
            await _refuse(scope, receive, send, 413,
                          f"the body has {declared} bytes, at most {cap} allowed")
            return
        received = 0
        deadline = math.inf

        async def bounded() -> Message:
            nonlocal received, deadline
            now = anyio.current_time()
            if deadline == math.inf:
                deadline = now + self.limits.timeout_s
            with anyio.move_on_after(max(0.0, deadline - now)) as waited:
                message = await receive()
            if waited.cancelled_caught:
                raise HTTPException(408, f"the body did not arrive within "
                                         f"{self.limits.timeout_s:g} s")
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    raise HTTPException(413, f"the body has more than {cap} bytes, at most "
                                             f"{cap} allowed")
            return message

        await self.app(scope, bounded, send)


def _content_length(scope: Scope) -> int | None:
    """The declared length, None when absent, -1 when it is not a number."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else -1
    return None


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int,
                  reason: str) -> None:
    response = refusal_response(status, reason, [Problem(index=None, field=None, reason=reason)],
                                {"Connection": "close"})
    await response(scope, receive, send)
