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

    def _open(self, base_url: str, api_key: str | None, timeout: httpx.Timeout) -> None:
        """Set ``base_url`` and the pooled client (the key only ever as a bearer header)."""
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(timeout=timeout, headers=headers)

    async def probe(self) -> None:
        """``GET {base_url}/models``: the server is up and takes our key.

        Speech servers often lack ``/models``: a 404 still proves a live server
        at that address. 401/403 (a wrong or missing key) and 5xx raise a
        :class:`~voice_agent.providers.errors.ProviderError`, as does no answer.
        """
        url = self.base_url + "/models"
        with http_errors(self.stage, url):
            response = await self._http.get(url)
        if response.status_code >= 500 or response.status_code in (401, 403):
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
