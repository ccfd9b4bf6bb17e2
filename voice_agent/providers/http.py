"""The lifecycle every OpenAI-compatible provider client shares (LLM, STT, TTS).

Each client owns one ``httpx.AsyncClient`` (connection pooling across calls)
and must close it: ``async with Client(...)`` or an explicit ``aclose()``.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

import httpx


class PooledHttpClient:
    """Base for clients that hold ``self._http``; gives them ``async with`` and ``aclose``."""

    _http: httpx.AsyncClient

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()
