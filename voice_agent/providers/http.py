"""The lifecycle every OpenAI-compatible provider client shares (LLM, STT, TTS).

Each client owns one ``httpx.AsyncClient`` (connection pooling across calls)
and must close it: ``async with Client(...)`` or an explicit ``aclose()``.
:meth:`PooledHttpClient.probe` is the readiness check ``serve`` runs at start.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

import httpx

from voice_agent.providers.errors import http_errors, raise_for_status


class PooledHttpClient:
    """Base for clients that hold ``self._http``; gives them ``async with``, ``aclose``
    and ``probe``. ``base_url`` is the API root (``http://host:port/v1``)."""

    _http: httpx.AsyncClient
    base_url: str
    stage = "model"

    async def probe(self) -> None:
        """``GET {base_url}/models``: any answer below 500 means the server is up.

        Speech servers often lack ``/models`` (404) and some want a key for it
        (401): both still prove a live server at that address. Raises a
        :class:`~voice_agent.providers.errors.ProviderError` otherwise.
        """
        url = self.base_url + "/models"
        with http_errors(self.stage, url):
            response = await self._http.get(url)
        if response.status_code >= 500:
            await raise_for_status(self.stage, url, response)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()
