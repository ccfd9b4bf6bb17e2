"""The echo agent: plays the caller's own audio back after a fixed delay.

The simplest end-to-end proof of the media plane (what the caller says comes
back, undistorted, on time) and the workload of the media load benchmark. The
delay is measured from each frame's *arrival*, so it holds even while the
caller is silent and Asterisk sends nothing.

The delay also stays fixed when packets arrive in a burst (Asterisk or the
network catching up after a stall): audio goes out at exactly one frame per
20 ms, so every burst would otherwise add its length to the delay for the rest
of the call. A frame that finds more than :data:`MAX_BACKLOG_FRAMES` queued
ahead of it is dropped instead, as a real-time relay must. (The bound counts
what the transport reports as queued: RTP holds ~1 frame in steady state,
WebSocket also counts its ~3-frame lead inside Asterisk, so 6 never drops
frames of a steady stream on either.)
"""

from __future__ import annotations

import asyncio
import time

from voice_agent.audio.frames import Pcm16
from voice_agent.calls.protocol import Call
from voice_agent.media.call_audio import CallAudio

MAX_BACKLOG_FRAMES = 6


async def echo(audio: CallAudio, delay: float = 0.0) -> None:
    """Write every inbound frame back, ``delay`` seconds after it arrived."""
    loop = asyncio.get_running_loop()
    async for frame in audio.frames():
        wait = frame.arrival + delay - time.monotonic()
        if wait <= 0:
            _play(audio, frame.pcm)
        else:
            loop.call_later(wait, _play, audio, frame.pcm)


def _play(audio: CallAudio, pcm: Pcm16) -> None:
    if audio.queued_frames > MAX_BACKLOG_FRAMES:
        audio.stats.extra["echo_dropped"] = audio.stats.extra.get("echo_dropped", 0) + 1
        return
    audio.write(pcm)


class EchoAgent:
    """The echo workload as a :class:`CallAgent` (the session plays the greeting)."""

    speaks_greeting = False

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay

    async def __call__(self, call: Call) -> None:
        assert call.audio is not None
        await echo(call.audio, self.delay)
