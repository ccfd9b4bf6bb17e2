"""Async ARI client: REST over httpx, events over one reconnecting WebSocket.

Why our own thin client and not a library (weighed on 2026-11-29):

* ``ari-client`` 0.9 (Oct 2026; httpx + pydantic + websockets, our stack) raises
  bare ``Exception("Failed ...: 404 ...")`` for every REST error, so "channel
  already gone" cannot be told from "Asterisk down"; it calls
  ``logging.basicConfig`` at import time (hijacking the host's logging); it has
  no reconnect; and it runs every event handler as its own task, so a
  ``StasisEnd`` can be processed before the ``StasisStart`` of the same channel.
* ``asyncari`` 0.20 is anyio/trio-first with placeholder tests, built on the
  swagger-generated ``aioswagger11``; ``aioari`` (2020) and ``ari-py`` (2014)
  are unmaintained.

What a call-control client needs is small: ~15 REST calls, typed errors a user
can act on, events delivered *in order*, and reconnect with backoff plus a hook
to reconcile state after a reconnect. That is this module (~300 lines), fully
covered by our unit and real-Asterisk tests.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import websockets
from websockets.exceptions import InvalidHandshake, InvalidStatus, WebSocketException

from voice_agent.backoff import backoff_delays

log = logging.getLogger(__name__)

Event = dict[str, Any]


#: Connection attempts retried (httpcore waits 0, 0.5, 1 s before them); only failures
#: to connect are retried, never a request Asterisk may have received.
CONNECT_RETRIES = 3

class AriError(Exception):
    """Base class of every error this client raises."""


class AriConnectionError(AriError):
    """Asterisk's HTTP server cannot be reached (down, restarting, wrong URL)."""


class AriAuthError(AriError):
    """Asterisk refused the ARI credentials (check ari.conf and VOICE_AGENT_ARI_*)."""


class AriRequestError(AriError):
    """Asterisk answered a REST call with an error status."""

    def __init__(self, method: str, path: str, status: int, detail: str) -> None:
        self.method, self.path, self.status, self.detail = method, path, status, detail
        super().__init__(f"ARI {method} {path} failed: HTTP {status}: {detail}")


class AriNotFoundError(AriRequestError):
    """404: the channel, bridge or playback no longer exists (often: caller hung up)."""


class AriConflictError(AriRequestError):
    """409/422: the object exists but is in the wrong state (e.g. not yet in Stasis)."""




def _error_for(method: str, path: str, response: httpx.Response) -> AriError:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "message" in body:
        detail = str(body["message"])
    else:  # not Asterisk's JSON (e.g. a proxy's error page)
        detail = response.text.strip() or response.reason_phrase
    status = response.status_code
    if status == 401:
        return AriAuthError(
            f"Asterisk rejected the ARI user for {method} {path}: check ari.conf and "
            "VOICE_AGENT_ARI_USER / VOICE_AGENT_ARI_PASSWORD"
        )
    if status == 404:
        return AriNotFoundError(method, path, status, detail)
    if status in (409, 422):
        return AriConflictError(method, path, status, detail)
    return AriRequestError(method, path, status, detail)


class AriClient:
    """One ARI application's connection to one Asterisk.

    Use as ``async with AriClient(...) as ari:``; REST methods can be called
    from any task, :meth:`events` is consumed by exactly one task.
    """

    def __init__(
        self,
        base_url: str,
        user: str,
        password: str,
        app: str,
        *,
        timeout: float = 5.0,
        reconnect_initial: float = 0.5,
        reconnect_max: float = 15.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.app = app
        self._auth = (user, password)
        self._timeout = timeout
        self._reconnect = (reconnect_initial, reconnect_max)
        self._http: httpx.AsyncClient | None = None
        #: Set while the events socket is open; tests and health checks wait on it.
        self.connected = asyncio.Event()
        #: How many times the events socket has been (re)opened.
        self.connections = 0
        #: Events that could not be parsed (never raised into the loop).
        self.bad_events = 0

    async def __aenter__(self) -> AriClient:
        self._http = httpx.AsyncClient(
            base_url=f"{self.base_url}/ari", auth=self._auth, timeout=self._timeout,
            # a refused or timed-out connect never reached Asterisk, so any request,
            # POST included, may be tried again: a short network flap (or Asterisk's
            # HTTP server restarting) then costs a call's setup 1.5 s, not the call
            transport=httpx.AsyncHTTPTransport(retries=CONNECT_RETRIES),
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    # ------------------------------------------------------------------ REST
    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: dict[str, Any] | None = None,
    ) -> Any:
        """Send one REST call; returns the decoded JSON body (or None for 204)."""
        response = await self._send(method, path, params=params, json_body=json_body)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    async def download(self, path: str) -> bytes:
        """GET a binary resource (e.g. ``/recordings/stored/NAME/file``)."""
        return (await self._send("GET", path)).content

    async def _send(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: dict[str, Any] | None = None,
    ) -> httpx.Response:
        if self._http is None:
            raise RuntimeError("AriClient used outside 'async with'")
        clean = {k: _param(v) for k, v in (params or {}).items() if v is not None}
        try:
            response = await self._http.request(method, path, params=clean, json=json_body)
        except httpx.TransportError as exc:
            raise AriConnectionError(
                f"cannot reach Asterisk ARI at {self.base_url} ({type(exc).__name__}: {exc}); "
                "is Asterisk running with http.conf enabled? (voice-agent asterisk status)"
            ) from exc
        if response.status_code >= 400:
            raise _error_for(method, path, response)
        return response

    async def asterisk_info(self) -> dict[str, Any]:
        return await self.request("GET", "/asterisk/info")

    async def list_channels(self) -> list[dict[str, Any]]:
        return await self.request("GET", "/channels")

    async def list_bridges(self) -> list[dict[str, Any]]:
        return await self.request("GET", "/bridges")

    async def answer(self, channel_id: str) -> None:
        await self.request("POST", f"/channels/{channel_id}/answer")

    async def hangup(self, channel_id: str, reason: str = "normal") -> None:
        await self.request("DELETE", f"/channels/{channel_id}", params={"reason": reason})

    async def play(self, channel_id: str, media: str, playback_id: str) -> dict[str, Any]:
        return await self.request(
            "POST", f"/channels/{channel_id}/play/{playback_id}", params={"media": media}
        )

    async def send_dtmf(self, channel_id: str, digits: str) -> None:
        await self.request("POST", f"/channels/{channel_id}/dtmf", params={"dtmf": digits})

    async def set_variable(self, channel_id: str, name: str, value: str) -> None:
        await self.request(
            "POST", f"/channels/{channel_id}/variable", params={"variable": name, "value": value}
        )

    async def get_variable(self, channel_id: str, name: str) -> str:
        body = await self.request(
            "GET", f"/channels/{channel_id}/variable", params={"variable": name}
        )
        return str(body.get("value", ""))

    async def originate(
        self,
        endpoint: str,
        *,
        app: str,
        app_args: str | None = None,
        channel_id: str | None = None,
        other_channel_id: str | None = None,
        caller_id: str | None = None,
        timeout: int = 30,
    ) -> dict[str, Any]:
        return await self.request(
            "POST",
            "/channels",
            params={
                "endpoint": endpoint,
                "app": app,
                "appArgs": app_args,
                "channelId": channel_id,
                "otherChannelId": other_channel_id,
                "callerId": caller_id,
                "timeout": timeout,
            },
        )

    async def create_bridge(self, bridge_id: str, bridge_type: str = "mixing") -> dict[str, Any]:
        return await self.request(
            "POST", f"/bridges/{bridge_id}", params={"type": bridge_type}
        )

    async def add_to_bridge(self, bridge_id: str, channel_id: str) -> None:
        await self.request(
            "POST", f"/bridges/{bridge_id}/addChannel", params={"channel": channel_id}
        )

    async def destroy_bridge(self, bridge_id: str) -> None:
        await self.request("DELETE", f"/bridges/{bridge_id}")

    # ---------------------------------------------------------------- events
    async def events(
        self, on_connected: Callable[[], Awaitable[None]] | None = None
    ) -> AsyncIterator[Event]:
        """Yield ARI events in arrival order, forever, reconnecting as needed.

        ``on_connected`` runs after every (re)connect and *before* the first
        event of that connection is yielded: the place to reconcile state that
        may have changed while we were away (calls that ended, Asterisk that
        restarted). A wrong password raises :class:`AriAuthError` at once:
        retrying cannot fix it and a silent retry loop would hide it.
        """
        url = f"{_events_url(self.base_url)}?app={self.app}&subscribeAll=false"
        token = base64.b64encode(":".join(self._auth).encode()).decode()
        headers = {"Authorization": f"Basic {token}"}
        delays = backoff_delays(*self._reconnect)
        while True:
            try:
                async with websockets.connect(
                    url,
                    additional_headers=headers,
                    open_timeout=self._timeout,
                    ping_interval=10,
                    ping_timeout=10,
                    max_size=2**22,
                ) as ws:
                    self.connections += 1
                    self.connected.set()
                    delays = backoff_delays(*self._reconnect)
                    log.info("ARI events connected (app=%s, connection #%d)",
                             self.app, self.connections)
                    if on_connected is not None:
                        await on_connected()
                    async for message in ws:
                        event = self._parse(message)
                        if event is not None:
                            yield event
                    log.warning("ARI events socket closed by Asterisk; reconnecting")
            except InvalidStatus as exc:
                if exc.response.status_code == 401:
                    raise AriAuthError(
                        "Asterisk rejected the ARI credentials on the events socket: check "
                        "ari.conf and VOICE_AGENT_ARI_USER / VOICE_AGENT_ARI_PASSWORD"
                    ) from exc
                log.warning("ARI events refused (HTTP %s); retrying", exc.response.status_code)
            except (OSError, TimeoutError, InvalidHandshake, WebSocketException) as exc:
                log.warning("ARI events unavailable at %s (%s: %s); retrying",
                            self.base_url, type(exc).__name__, exc)
            finally:
                self.connected.clear()
            delay = next(delays)
            log.info("reconnecting to ARI in %.2f s", delay)
            await asyncio.sleep(delay)

    def _parse(self, message: str | bytes) -> Event | None:
        try:
            return parse_event(message)
        except ValueError as exc:
            self.bad_events += 1
            log.error("dropping malformed ARI event (%s): %.200r", exc, message)
            return None


def parse_event(message: str | bytes) -> Event:
    """One events-socket message as an event object; ValueError says what is wrong."""
    event = json.loads(message)  # JSONDecodeError and UnicodeDecodeError are ValueErrors
    if not isinstance(event, dict) or "type" not in event:
        raise ValueError("not an ARI event object")
    return event


def _events_url(base_url: str) -> str:
    scheme, rest = base_url.split("://", 1)
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/ari/events"


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
