"""Play a sound on a channel and wait until Asterisk says it has finished.

ARI's play call returns as soon as the playback is *queued*; the end arrives
later as a ``PlaybackFinished`` event on the events socket. The tracker joins
the two, so call logic can simply ``await playbacks.play(...)``.
"""

from __future__ import annotations

import asyncio
import uuid

from voice_agent.ari.asterisk_ari import AriClient, Event


class PlaybackTracker:
    """Futures for playbacks in flight, resolved by ``PlaybackFinished`` events."""

    def __init__(self, ari: AriClient) -> None:
        self._ari = ari
        self._waiting: dict[str, asyncio.Future[str]] = {}

    async def play(self, channel_id: str, media: str, timeout: float = 60.0) -> str:
        """Play ``media`` (e.g. ``sound:hello-world``) and return its final state.

        Raises ``TimeoutError`` if Asterisk never reports the end (it always
        should; the timeout keeps a lost event from hanging a call forever).
        """
        playback_id = f"va-pb-{uuid.uuid4().hex[:16]}"
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiting[playback_id] = future
        try:
            await self._ari.play(channel_id, media, playback_id)
            async with asyncio.timeout(timeout):
                return await future
        finally:
            self._waiting.pop(playback_id, None)

    def on_event(self, event: Event) -> None:
        """Feed ``PlaybackFinished`` events here."""
        playback = event.get("playback") or {}
        future = self._waiting.get(playback.get("id", ""))
        if future is not None and not future.done():
            future.set_result(str(playback.get("state", "done")))

    @property
    def in_flight(self) -> int:
        return len(self._waiting)
