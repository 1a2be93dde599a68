"""The gateway app driven in process, with its lifespan (shared by the fault and leak
tests; same as tests/integration/test_gateway.py's client)."""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

import httpx
from anyio.from_thread import start_blocking_portal
from fastapi import FastAPI


class AppClient:
    """The gateway app in process (same as tests/integration/test_gateway.py's)."""

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

    async def _post(self, url: str, kwargs: dict[str, Any]) -> httpx.Response:
        transport = httpx.ASGITransport(app=self.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway",
                                     timeout=60) as client:
            return await client.post(url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self._portal.call(self._post, url, kwargs)
