"""WebSocket media (chan_websocket, Asterisk 22.6+): true 16 kHz both ways.

Asterisk sends 640-byte little-endian slin16 frames every 20 ms and accepts
audio at any pace: it queues and re-times what we send. So we do not pace to
the millisecond; we keep a small lead (``lead_frames`` of audio queued inside
Asterisk, enough to ride out our scheduling jitter) and hold the rest locally,
where :meth:`flush` can drop it. ``FLUSH_MEDIA`` then empties Asterisk's queue,
so barge-in silences the caller at once. ``MEDIA_XOFF``/``MEDIA_XON`` (Asterisk's
queue is full / has room again) pause and resume sending.

Control messages are plain text lines like
``MEDIA_START connection_id:… format:slin16 optimal_frame_size:640 ptime:20``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from voice_agent.audio.frames import FRAME_SECONDS, Pcm16
from voice_agent.audio.g711 import pcm16_from_le, pcm16_to_le
from voice_agent.media.call_audio import CallAudio

log = logging.getLogger(__name__)



def parse_control(message: str) -> tuple[str, dict[str, str]]:
    """``"MEDIA_START a:1 b:2"`` → ``("MEDIA_START", {"a": "1", "b": "2"})``."""
    command, *fields = message.split()
    return command, dict(f.split(":", 1) for f in fields if ":" in f)


class WebSocketCallAudio(CallAudio):
    """One call's audio over a chan_websocket media connection."""

    def __init__(self, url: str, lead_frames: int = 3) -> None:
        super().__init__()
        self.url = url
        self.lead_frames = lead_frames
        self._ws: ClientConnection | None = None
        self._queue: collections.deque[bytes] = collections.deque()
        self._wake = asyncio.Event()
        self._xoff = False
        self._play_deadline = 0.0  # when what we already sent finishes playing
        self._primed = False  # already waited for this talkspurt's lead to fill
        self._tasks: list[asyncio.Task[None]] = []
        self.media_start: dict[str, str] = {}
        self.control_events: collections.Counter[str] = collections.Counter()

    async def connect(self, timeout: float = 5.0) -> None:
        """Open the media socket; Asterisk starts the channel once it is open."""
        self._ws = await websockets.connect(self.url, subprotocols=["media"],
                                            open_timeout=timeout, max_size=2**20)
        self._tasks = [asyncio.create_task(self._receive(), name="ws-media-rx"),
                       asyncio.create_task(self._send(), name="ws-media-tx")]

    async def _receive(self) -> None:
        assert self._ws is not None
        try:
            async for message in self._ws:
                if isinstance(message, bytes):
                    if len(message) % 2:
                        self.stats.extra["odd_frames"] = self.stats.extra.get("odd_frames", 0) + 1
                        continue
                    self._deliver(pcm16_from_le(message), time.monotonic())
                else:
                    self._on_control(message)
        except ConnectionClosed:
            pass
        finally:
            if not self.closed:
                self.connection_lost = True
                log.warning("WebSocket media connection %s closed", self.url)
                await super().aclose()

    def _on_control(self, message: str) -> None:
        try:
            command, fields = parse_control(message)
        except ValueError:
            log.warning("unparseable media control message %.100r", message)
            return
        self.control_events[command] += 1
        if command == "MEDIA_START":
            self.media_start = fields
        elif command == "MEDIA_XOFF":
            self._xoff = True
        elif command == "MEDIA_XON":
            self._xoff = False
            self._wake.set()

    async def _send(self) -> None:
        """Keep up to ``lead_frames`` in Asterisk's queue; the rest waits here."""
        assert self._ws is not None
        lead = self.lead_frames * FRAME_SECONDS
        with contextlib.suppress(ConnectionClosed):
            while True:
                if not self._queue or self._xoff or self.paused:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                now = time.monotonic()
                ahead = self._play_deadline - now
                if ahead <= 0 and len(self._queue) < self.lead_frames and not self._primed:
                    # Start of a talkspurt from a real-time producer (echo, relayed
                    # audio): wait up to the lead for it to queue up, or its jitter
                    # would starve Asterisk's queue and every underrun becomes a gap.
                    self._primed = True
                    await asyncio.sleep(lead)
                    continue
                self._primed = False
                if ahead >= lead:
                    await asyncio.sleep(ahead - lead + FRAME_SECONDS)
                    continue
                await self._ws.send(self._queue.popleft())
                self._play_deadline = max(self._play_deadline, now) + FRAME_SECONDS

    def _send_frame(self, frame: Pcm16) -> None:
        self._queue.append(pcm16_to_le(frame))
        self._wake.set()

    def _drop_queued(self) -> int:
        dropped = len(self._queue)
        self._queue.clear()
        in_asterisk = max(0.0, self._play_deadline - time.monotonic())
        self._play_deadline = 0.0
        if self._ws is not None and in_asterisk > 0:
            asyncio.get_running_loop().create_task(self._command("FLUSH_MEDIA"))
        return dropped + round(in_asterisk / FRAME_SECONDS)

    def _hold_output(self, hold: bool) -> None:
        """Hold our queue; the lead already inside Asterisk (≤ ``lead_frames``) still plays."""
        if not hold:
            self._wake.set()

    @property
    def queued_frames(self) -> int:
        in_asterisk = max(0.0, self._play_deadline - time.monotonic())
        return len(self._queue) + round(in_asterisk / FRAME_SECONDS)

    async def _command(self, command: str) -> None:
        if self._ws is not None:
            with contextlib.suppress(ConnectionClosed):
                await self._ws.send(command)

    async def aclose(self) -> None:
        if self.closed:
            return
        await super().aclose()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._ws is not None:
            await self._ws.close()

