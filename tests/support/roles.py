"""The callers of the role matrix (``tests/integration/test_role_matrix.py``) and how to
list what they could call: every HTTP route an app serves, every leaf command of
``preuve``.

The world is the portal's (:func:`tests.support.portal.build_world`: fluence-cp-2027,
classes of Versailles and Créteil, a term of usage, two recorded runs), plus the tokens
the matrix needs beyond it and a few classes to withdraw.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import date
from typing import Any

import httpx
import typer
from anyio.from_thread import start_blocking_portal
from fastapi import FastAPI
from starlette.routing import BaseRoute, Mount, Route

from experiments.access import issue_token
from experiments.enrollment.assignments import enrolled_classes
from experiments.enrollment.design import enrollment_design
from experiments.enrollment.files import read_classes
from experiments.enrollment.transaction import enroll_classes
from experiments.settings import Settings
from tests.support.portal import EXPERIMENT, PortalWorld, build_world

#: Every caller of the matrix, in the order of its columns. ``none``: no token or
#: session; ``bad``: a token never issued (a forged session for the portal);
#: ``revoked``: an admin token revoked after it signed in to the portal; ``*_other``:
#: the same role for another experiment (researcher), académie (Créteil, which has
#: classes in the same experiment), resource (EdTech) or experiment (assessor: the
#: evaluation team, who sends outcome scores and reads nothing).
CALLERS: tuple[str, ...] = (
    "none", "bad", "revoked",
    "researcher", "researcher_other",
    "academie", "academie_other",
    "edtech", "edtech_other",
    "assessor", "assessor_other",
    "officer", "admin",
)

OTHER_RESOURCE = "scriptum"
OTHER_EXPERIMENT = "autre-experience"


@dataclass(frozen=True)
class RoleWorld:
    """The registry the matrix runs against, and what each caller holds."""

    settings: Settings
    portal: PortalWorld
    tokens: dict[str, str | None]
    """Caller → the token it presents (None: none)."""
    treatment_classes: frozenset[str]
    """Classes of the experiment in a treatment arm when the matrix starts."""
    withdrawable: dict[str, str]
    """Caller → a Versailles class it asks to withdraw (those refused must stay)."""

    @property
    def learner_keys(self) -> list[str]:
        return self.portal.learner_keys

    def classes_of(self, academie: str) -> list[str]:
        return self.portal.class_ids[academie]


def build_role_world(settings: Settings) -> RoleWorld:
    """The portal's world, the matrix's extra tokens, and classes to withdraw."""
    world = build_world(settings)
    registry = world.registry
    tokens: dict[str, str | None] = {
        "none": None,
        "bad": f"pv_admin_{secrets.token_urlsafe(24)}",
        "revoked": issue_token(registry, "admin", "*", "revoked-later"),
        "researcher": world.tokens["researcher"],
        "researcher_other": world.tokens["researcher_other"],
        "academie": world.tokens["academie_a"],
        "academie_other": world.tokens["academie_b"],
        "edtech": world.tokens["edtech"],
        "edtech_other": issue_token(registry, "edtech", OTHER_RESOURCE),
        "assessor": issue_token(registry, "assessor", EXPERIMENT, "DEPP"),
        "assessor_other": issue_token(registry, "assessor", OTHER_EXPERIMENT, "DEPP"),
        "officer": world.tokens["officer"],
        "admin": world.tokens["admin"],
    }
    assert set(tokens) == set(CALLERS)
    design, _ = enrollment_design(registry, EXPERIMENT)
    withdrawable = {caller: f"wd-{caller}-{secrets.token_hex(3)}" for caller in CALLERS}
    # The portal's withdrawal form (issue 17) withdraws a class of its own.
    withdrawable.update({f"portal-{caller}": f"wp-{caller}-{secrets.token_hex(3)}"
                         for caller in CALLERS})
    lines = ["class_id,school_uai,level,pupils,academie,education_priority"]
    lines += [f"{c},0780001C,CP,20,versailles,REP" for c in withdrawable.values()]
    enroll_classes(registry, design,
                   read_classes("\n".join(lines) + "\n", design, today=date(2027, 9, 1)),
                   actor="test")
    classes = enrolled_classes(registry, EXPERIMENT)
    treatment = frozenset(c.class_id for c in classes if c.arm in design.treatment_arms)
    world.class_ids["versailles"].extend(withdrawable.values())
    return RoleWorld(settings, world, tokens, treatment, withdrawable)


# --- what can be called ---------------------------------------------------------------


def served_routes(routes: Iterable[BaseRoute], prefix: str = "") -> Iterator[tuple[str, str]]:
    """(METHOD, path template) of every route an app serves, included routers and mounts
    too. A kind of route it does not know is an error, so none can hide from the matrix.
    """
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:  # FastAPI ≥ 0.16x keeps included routers as one route
            yield from served_routes(included.routes, prefix + route.include_context.prefix)  # type: ignore[attr-defined]
        elif isinstance(route, Mount):
            yield from served_routes(route.routes, prefix + route.path)
        elif isinstance(route, Route):
            for method in sorted((route.methods or set()) - {"HEAD"}):
                yield method, prefix + route.path
        else:
            raise TypeError(f"{route!r}: a kind of route the role matrix cannot enumerate")


def leaf_commands(app: typer.Typer) -> set[str]:
    """Every command of a typer app that does something (``protocol register``, ...)."""
    # Typer ≥ 0.2x ships its own copy of click: duck-typed, not isinstance(click.Group).
    root = typer.main.get_command(app)
    found: set[str] = set()

    def walk(command: Any, path: tuple[str, ...], ctx: Any) -> None:
        if hasattr(command, "list_commands"):
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                assert sub is not None
                walk(sub, (*path, name), sub.context_class(sub, parent=ctx, info_name=name))
        else:
            found.add(" ".join(path))

    walk(root, (), root.context_class(root, info_name="preuve"))
    return found


# --- calling an app in process ----------------------------------------------------------


class AppClient:
    """An ASGI app in process, its lifespan run (like tests/support/gateway_client.py's,
    for any method)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self._stack = ExitStack()

    def __enter__(self) -> AppClient:
        self._portal = self._stack.enter_context(start_blocking_portal())
        self._stack.enter_context(
            self._portal.wrap_async_context_manager(self.app.router.lifespan_context(self.app)))
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    async def _request(self, method: str, url: str, kwargs: dict[str, Any]) -> httpx.Response:
        transport = httpx.ASGITransport(app=self.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway",
                                     timeout=60) as client:
            return await client.request(method, url, **kwargs)

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        answer: httpx.Response = self._portal.call(self._request, method, url, kwargs)
        return answer
