"""Attach the agent's audio to a call: externalMedia channel + the call's bridge.

Per call: create an externalMedia channel (RTP or WebSocket transport) with an
id we choose, wait for *its* ``StasisStart`` and only then add it to the call's
mixing bridge — adding it as soon as the REST call returns fails with 422 under
load (7 of 10 at 10 concurrent calls, NOTES.md), because the channel is not in
Stasis yet. Everything created is registered on the session's exit stack, so a
hang-up tears it down: the externalMedia channel is hung up, the transport
closed, the RTP demux entry removed.

Transport choice: ``websocket`` needs chan_websocket (Asterisk 22.6+/21.11+/
20.16+); when the module is not loaded we fall back to ``rtp`` once, with a
warning, and remember it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Literal
from urllib.parse import urlsplit

from voice_agent.ari.asterisk_ari import AriClient, AriError, AriNotFoundError
from voice_agent.media.call_audio import CallAudio
from voice_agent.media.rtp_transport import RtpFormat, RtpMediaServer
from voice_agent.media.websocket_transport import WebSocketCallAudio

log = logging.getLogger(__name__)

Transport = Literal["rtp", "websocket"]


def media_channel_prefix(app: str) -> str:
    """Ids of the externalMedia channels an app creates start with this.

    Named per app so an agent can recognise (and clean up) media channels a
    previous run of itself left behind, without touching anyone else's.
    """
    return f"{app}-media-"


def bridge_prefix(app: str) -> str:
    """Ids of the per-call bridges an app creates start with this (see above)."""
    return f"{app}-bridge-"


class MediaSetupError(AriError):
    """The externalMedia channel could not be created or bridged."""


#: Audio closes in flight (a task must be referenced until it ends).
_closing: set[asyncio.Task[None]] = set()


class HelperChannels:
    """Channels the agent creates itself: ignored as callers, awaited until in Stasis."""

    def __init__(self) -> None:
        self._pending: dict[str, asyncio.Future[None]] = {}
        self._known: set[str] = set()
        self._on_gone: dict[str, Callable[[], None]] = {}

    def expect(self, channel_id: str) -> asyncio.Future[None]:
        self._known.add(channel_id)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending[channel_id] = future
        return future

    def started(self, channel_id: str) -> bool:
        """Feed every StasisStart; True when the channel is one of ours."""
        future = self._pending.pop(channel_id, None)
        if future is not None and not future.done():
            future.set_result(None)
        return channel_id in self._known

    def watch(self, channel_id: str, on_gone: Callable[[], None]) -> None:
        """Call ``on_gone`` if Asterisk destroys the channel before we :meth:`forget` it."""
        self._on_gone[channel_id] = on_gone

    def unwatch(self, channel_id: str) -> None:
        """We are ending the channel ourselves: its end is no loss."""
        self._on_gone.pop(channel_id, None)

    def gone(self, channel_id: str) -> None:
        """Feed the end (StasisEnd, ChannelDestroyed) of one of our channels."""
        if (on_gone := self._on_gone.pop(channel_id, None)) is not None:
            on_gone()

    def forget(self, channel_id: str) -> None:
        self._known.discard(channel_id)
        self._on_gone.pop(channel_id, None)
        future = self._pending.pop(channel_id, None)
        if future is not None and not future.done():
            future.cancel()

    def __contains__(self, channel_id: object) -> bool:
        return channel_id in self._known


class MediaFactory:
    """Creates and bridges each call's externalMedia channel."""

    def __init__(
        self,
        ari: AriClient,
        helpers: HelperChannels,
        *,
        app: str,
        transport: Transport,
        rtp_server: RtpMediaServer | None,
        rtp_format: RtpFormat = "ulaw",
        rtp_advertise_host: str = "",
        setup_timeout: float = 5.0,
    ) -> None:
        self._ari = ari
        self._helpers = helpers
        self._app = app
        self.transport: Transport = transport
        self._rtp = rtp_server
        self._rtp_format = rtp_format
        self._advertise = rtp_advertise_host
        self._timeout = setup_timeout
        self._transport_checked = transport == "rtp"

    @property
    def rtp_server(self) -> RtpMediaServer | None:
        return self._rtp

    async def attach(self, bridge_id: str, resources: AsyncExitStack) -> CallAudio:
        """Give the call in ``bridge_id`` an agent audio path; torn down with ``resources``."""
        await self._check_transport()
        channel_id = f"{media_channel_prefix(self._app)}{uuid.uuid4().hex[:16]}"
        in_stasis = self._helpers.expect(channel_id)
        resources.callback(self._helpers.forget, channel_id)
        if self.transport == "websocket":
            audio = await self._create_websocket(channel_id, resources)
        else:
            audio = await self._create_rtp(channel_id, resources)
        try:
            async with asyncio.timeout(self._timeout):
                await in_stasis
        except TimeoutError:
            raise MediaSetupError(
                f"externalMedia channel {channel_id} never entered Stasis "
                f"({self.transport}); check Asterisk's log") from None
        await self._ari.add_to_bridge(bridge_id, channel_id)
        self._helpers.watch(channel_id, lambda: self._lost(channel_id, audio))
        return audio

    @staticmethod
    def _lost(channel_id: str, audio: CallAudio) -> None:
        """Asterisk ended the media channel under a live call: end the call's audio, so
        its agent stops and the session can tell the caller (RTP would just go quiet)."""
        log.error("media channel %s ended by Asterisk mid-call", channel_id)
        audio.connection_lost = True
        task = asyncio.get_running_loop().create_task(audio.aclose())
        _closing.add(task)
        task.add_done_callback(_closing.discard)

    async def _create_rtp(self, channel_id: str, resources: AsyncExitStack) -> CallAudio:
        assert self._rtp is not None, "RTP transport needs the RTP media server"
        host, port = self._rtp.local_address
        channel = await self._ari.request("POST", "/channels/externalMedia", params={
            "app": self._app, "channelId": channel_id,
            "external_host": f"{self._advertise or host}:{port}",
            "format": self._rtp_format, "encapsulation": "rtp", "transport": "udp",
            "connection_type": "client", "direction": "both",
        })
        resources.push_async_callback(self._hangup, channel_id)
        variables = channel.get("channelvars") or {}
        try:
            remote = (variables["UNICASTRTP_LOCAL_ADDRESS"],
                      int(variables["UNICASTRTP_LOCAL_PORT"]))
        except (KeyError, ValueError) as exc:
            raise MediaSetupError(
                f"externalMedia response lacks UNICASTRTP_LOCAL_ADDRESS/PORT: {variables}"
            ) from exc
        if remote[0] in ("0.0.0.0", "::"):  # Asterisk bound to any: it sends from its host
            remote = (urlsplit(self._ari.base_url).hostname or "127.0.0.1", remote[1])
        audio = self._rtp.attach(remote, self._rtp_format)
        resources.push_async_callback(audio.aclose)
        return audio

    async def _create_websocket(self, channel_id: str, resources: AsyncExitStack) -> CallAudio:
        channel = await self._ari.request("POST", "/channels/externalMedia", params={
            "app": self._app, "channelId": channel_id, "external_host": "INCOMING",
            "format": "slin16", "encapsulation": "none", "transport": "websocket",
            "connection_type": "server", "direction": "both",
        })
        resources.push_async_callback(self._hangup, channel_id)
        connection = (channel.get("channelvars") or {}).get("MEDIA_WEBSOCKET_CONNECTION_ID")
        if not connection:
            raise MediaSetupError("externalMedia response lacks MEDIA_WEBSOCKET_CONNECTION_ID")
        base = urlsplit(self._ari.base_url)
        scheme = "wss" if base.scheme == "https" else "ws"
        audio = WebSocketCallAudio(f"{scheme}://{base.netloc}/media/{connection}")
        resources.push_async_callback(audio.aclose)
        await audio.connect(self._timeout)
        return audio

    async def _check_transport(self) -> None:
        """Fall back to RTP (once, loudly) when this Asterisk has no chan_websocket."""
        if self._transport_checked:
            return
        self._transport_checked = True
        try:
            await self._ari.request("GET", "/asterisk/modules/chan_websocket.so")
        except AriNotFoundError:
            if self._rtp is None:
                raise MediaSetupError(
                    "chan_websocket is not loaded and no RTP media server is running") from None
            log.warning("chan_websocket not loaded in this Asterisk (needs 22.6+/21.11+/"
                        "20.16+): falling back to the RTP transport")
            self.transport = "rtp"

    async def _hangup(self, channel_id: str) -> None:
        self._helpers.unwatch(channel_id)
        try:
            await self._ari.hangup(channel_id)
        except AriNotFoundError:
            pass  # went down with the call
        except AriError as exc:
            log.warning("could not hang up media channel %s: %s", channel_id, exc)
