"""Refused sign-ins to the portal: counted per client address, audited, throttled.

A client address that has had ``portal.sign_in_failures`` sign-ins refused within
``portal.sign_in_window_s`` must wait until the oldest of them leaves the window: its
attempts are answered 429 with ``Retry-After`` and the token it sends is not even looked
up, so guessing tokens from one address is slow. A successful sign-in clears the count.

Every refused sign-in is an INFO line and an audit entry (``portal.sign_in_refused``,
actor ``anonymous:<address>:portal``, never the token sent), and the refusal that reaches
the limit adds ``portal.sign_in_throttled``. Attempts refused while an address waits are
not audited one by one, and at most ``portal.audit_refusals_per_minute`` entries are
written per minute whatever the number of addresses; beyond that, one WARNING line per
minute says how many were left out. So the audit log records the attack without an
attacker being able to flood it.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from experiments.access import AuditAction, record_audit
from experiments.settings import PortalSettings

__all__ = ["SignInGuard"]

logger = logging.getLogger(__name__)

#: Addresses remembered at most; beyond, those whose refusals all left the window go.
_MAX_ADDRESSES = 10_000


class SignInGuard:
    """Refused sign-ins per client address (see the module's docstring).

    Parameters
    ----------
    registry
        Where the audit log is.
    settings
        ``sign_in_failures``, ``sign_in_window_s``, ``audit_refusals_per_minute``.
    clock
        What time it is (the portal's clock; tests move it).
    """

    def __init__(self, registry: Engine, settings: PortalSettings,
                 clock: Callable[[], datetime]) -> None:
        self._registry = registry
        self._limit = settings.sign_in_failures
        self._window = settings.sign_in_window_s
        self._per_minute = settings.audit_refusals_per_minute
        self._clock = clock
        self._refusals: dict[str, deque[float]] = {}
        self._minute = -1
        self._audited = 0
        self._left_out = 0
        self._lock = threading.Lock()

    def _now(self) -> float:
        return self._clock().timestamp()

    def wait_s(self, address: str) -> float:
        """Seconds ``address`` must wait before its next sign-in is looked at; 0: none."""
        now = self._now()
        with self._lock:
            times = self._recent(address, now)
            if len(times) < self._limit:
                return 0.0
            return max(times[0] + self._window - now, 1.0)

    def refused(self, address: str) -> None:
        """Count a refused sign-in from ``address``; log it and audit it (if allowed)."""
        now = self._now()
        with self._lock:
            times = self._recent(address, now)
            times.append(now)
            self._refusals[address] = times
            if len(self._refusals) > _MAX_ADDRESSES:
                self._forget_stale(now)
            actions: list[AuditAction] = ["portal.sign_in_refused"]
            if len(times) == self._limit:
                actions.append("portal.sign_in_throttled")
            allowed = self._allowance(now, len(actions))
            failures = len(times)
        logger.info("portal: sign-in refused from %s (unknown or revoked token; %d in %gs)",
                    address, failures, self._window)
        if len(actions) == 2:
            logger.warning("portal: %s throttled after %d refused sign-ins", address,
                           failures)
        if not allowed:
            return
        with Session(self._registry) as session, session.begin():
            for action in actions[:allowed]:
                record_audit(session, f"anonymous:{address}:portal", action, "portal",
                             {"client": address, "failures": failures})

    def signed_in(self, address: str) -> None:
        """A successful sign-in clears ``address``'s refusals."""
        with self._lock:
            self._refusals.pop(address, None)

    def _recent(self, address: str, now: float) -> deque[float]:
        times = self._refusals.get(address, deque())
        while times and times[0] <= now - self._window:
            times.popleft()
        return times

    def _forget_stale(self, now: float) -> None:
        for address in [a for a, t in self._refusals.items() if not self._recent(a, now)]:
            del self._refusals[address]

    def _allowance(self, now: float, wanted: int) -> int:
        """How many of ``wanted`` audit entries this minute still allows."""
        minute = int(now // 60)
        if minute != self._minute:
            if self._left_out:
                logger.warning("portal: %d refused sign-ins were not audited in the last "
                               "minute (at most %d a minute)", self._left_out,
                               self._per_minute)
            self._minute, self._audited, self._left_out = minute, 0, 0
        allowed = max(0, min(wanted, self._per_minute - self._audited))
        self._audited += allowed
        if allowed < wanted:
            if not self._left_out:
                logger.warning("portal: more than %d refused sign-ins this minute: the "
                               "rest are counted, not audited", self._per_minute)
            self._left_out += wanted - allowed
        return allowed
