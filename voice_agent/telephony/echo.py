"""The echo agent: plays the caller's own audio back after a fixed delay.

The simplest end-to-end proof of the media plane (what the caller says comes
back, undistorted, on time) and the workload of the media load benchmark. The
delay is measured from each frame's *arrival*, so it holds even while the
caller is silent and Asterisk sends nothing.
"""

from __future__ import annotations

import asyncio
import time

from voice_agent.telephony.call_audio import CallAudio
from voice_agent.telephony.call_session import CallSession


async def echo(audio: CallAudio, delay: float = 0.0) -> None:
    """Write every inbound frame back, ``delay`` seconds after it arrived."""
    loop = asyncio.get_running_loop()
    async for frame in audio.frames():
        wait = frame.arrival + delay - time.monotonic()
        if wait <= 0:
            audio.write(frame.pcm)
        else:
            loop.call_later(wait, audio.write, frame.pcm)


class EchoAgent:
    """The echo workload as a :class:`CallAgent` (the session plays the greeting)."""

    speaks_greeting = False

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay

    async def __call__(self, call: CallSession) -> None:
        assert call.audio is not None
        await echo(call.audio, self.delay)
