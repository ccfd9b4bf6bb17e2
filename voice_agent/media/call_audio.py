"""The per-call audio API the rest of the agent sees, whatever the transport.

Inbound: an async stream of :class:`InboundFrame` — 20 ms of 16 kHz PCM16 with
the monotonic time its packet arrived (latency and barge-in are measured from
it). Outbound: :meth:`CallAudio.write` accepts PCM16 at any supported rate
(16 kHz internal, 8 kHz, TTS 22.05/24 kHz), cuts it into 20 ms frames and hands
them to the transport; :meth:`CallAudio.flush` drops everything not yet sent and
says how much that was — barge-in calls it and the caller hears silence within
a frame or two. :meth:`CallAudio.pause` silences the caller's side as fast but
keeps the audio, for :meth:`CallAudio.resume` to play on.

Transports (RTP, WebSocket) subclass :class:`CallAudio` and implement four
hooks: ``_send_frame`` (queue one 20 ms frame), ``_drop_queued``,
``_hold_output`` and ``queued_frames``. They call :meth:`CallAudio._deliver` with decoded audio.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from voice_agent.audio.frames import FRAME_SAMPLES, FRAME_SECONDS, INTERNAL_RATE, Pcm16
from voice_agent.audio.resample import Resampler

log = logging.getLogger(__name__)

SUPPORTED_RATES = (8000, 16000, 22050, 24000)


class InboundFrame(NamedTuple):
    """20 ms of the caller's voice at 16 kHz and the time its packet arrived."""

    pcm: Pcm16
    arrival: float


@dataclass
class AudioStats:
    frames_in: int = 0
    frames_out: int = 0
    inbound_dropped: int = 0  # consumer too slow: oldest frames dropped
    flushed_frames: int = 0
    flushes: int = 0
    extra: dict[str, int] = field(default_factory=dict)


class CallAudio:
    """Bidirectional 16 kHz PCM16 audio for one call (transport-independent part)."""

    #: Inbound frames kept for a slow consumer before the oldest are dropped (1 s).
    INBOUND_CAPACITY = 50

    def __init__(self) -> None:
        self.stats = AudioStats()
        self._inbound: asyncio.Queue[InboundFrame | None] = asyncio.Queue()
        self._in_rest = np.zeros(0, dtype=np.int16)
        self._out_rest = np.zeros(0, dtype=np.int16)
        self._resamplers: dict[int, Resampler] = {}
        self._paused = False
        self.closed = False
        #: The transport died under the call (not closed by us): the caller is still there.
        self.connection_lost = False

    # ------------------------------------------------------------- inbound
    async def frames(self) -> AsyncIterator[InboundFrame]:
        """The caller's audio, frame by frame, until the call's media closes."""
        while (frame := await self._inbound.get()) is not None:
            yield frame

    async def next_frame(self, timeout: float | None = None) -> InboundFrame | None:
        """The next frame, or ``None`` if none arrived within ``timeout``.

        Asterisk sends nothing while the caller is silent, so a consumer that
        must notice silence (the endpointer) needs to wake up without a frame.
        Raises ``EOFError`` once the call's media has closed.
        """
        try:
            async with asyncio.timeout(timeout):
                frame = await self._inbound.get()
        except TimeoutError:
            return None
        if frame is None:
            self._inbound.put_nowait(None)  # keep the end visible to later reads
            raise EOFError("call media closed")
        return frame

    def _deliver(self, pcm16k: Pcm16, arrival: float) -> None:
        """Transports call this with decoded 16 kHz audio of any length."""
        if self.closed:
            return
        if len(pcm16k) == FRAME_SAMPLES and not len(self._in_rest):
            self._put(InboundFrame(pcm16k, arrival))  # the common case: one 20 ms packet
            return
        pcm = np.concatenate((self._in_rest, pcm16k))
        whole = len(pcm) - len(pcm) % FRAME_SAMPLES
        for start in range(0, whole, FRAME_SAMPLES):
            self._put(InboundFrame(pcm[start:start + FRAME_SAMPLES], arrival))
        self._in_rest = pcm[whole:]

    def _put(self, frame: InboundFrame) -> None:
        if self._inbound.qsize() >= self.INBOUND_CAPACITY:
            self._inbound.get_nowait()
            self.stats.inbound_dropped += 1
        self.stats.frames_in += 1
        self._inbound.put_nowait(frame)

    # ------------------------------------------------------------ outbound
    def write(self, pcm: Pcm16 | bytes, rate: int = INTERNAL_RATE) -> int:
        """Queue PCM16 (little-endian bytes or int16 array) at ``rate``; returns frames queued.

        A tail shorter than 20 ms waits for the next write or :meth:`finish`.
        """
        if self.closed:
            return 0
        samples = np.frombuffer(pcm, dtype="<i2") if isinstance(pcm, bytes) else pcm
        if rate != INTERNAL_RATE:
            samples = self._resampler(rate).process(samples)
        if len(self._out_rest):
            samples = np.concatenate((self._out_rest, samples))
        whole = len(samples) - len(samples) % FRAME_SAMPLES
        for start in range(0, whole, FRAME_SAMPLES):
            self._send_frame(samples[start:start + FRAME_SAMPLES])
        self._out_rest = samples[whole:]
        self.stats.frames_out += whole // FRAME_SAMPLES
        return whole // FRAME_SAMPLES

    def finish(self) -> int:
        """End of an utterance: send the held tail, padded with silence to a whole frame."""
        if not len(self._out_rest):
            return 0
        pad = np.zeros(FRAME_SAMPLES - len(self._out_rest), dtype=np.int16)
        return self.write(pad)

    @property
    def paused(self) -> bool:
        return self._paused

    def pause(self) -> None:
        """Hold the outbound audio: nothing more goes out, nothing queued is lost.

        Barge-in pauses the agent the moment the caller starts talking over it
        and only then decides: a backchannel ("uh-huh") or a cough resumes the
        reply where it stopped, a real interruption flushes it.
        """
        if not self._paused:
            self._paused = True
            self._hold_output(True)

    def resume(self) -> None:
        """Send the held audio again, from where :meth:`pause` stopped it."""
        if self._paused:
            self._paused = False
            self._hold_output(False)

    def flush(self) -> int:
        """Drop all audio not yet sent to the caller, ending a pause; returns frames dropped."""
        self.resume()
        dropped = self._drop_queued() + (1 if len(self._out_rest) else 0)
        self._out_rest = np.zeros(0, dtype=np.int16)
        for resampler in self._resamplers.values():
            resampler.reset()
        self.stats.flushes += 1
        self.stats.flushed_frames += dropped
        return dropped

    async def wait_played(self) -> None:
        """Until everything written has gone out (or the media closed).

        Transports expose no drain event, but they drain at exactly one frame
        per 20 ms, so sleeping for what is queued keeps wake-ups few.
        """
        while (queued := self.queued_frames) and not self.closed:  # noqa: ASYNC110
            await asyncio.sleep(queued * FRAME_SECONDS)

    def _resampler(self, rate: int) -> Resampler:
        if rate not in SUPPORTED_RATES:
            raise ValueError(f"unsupported sample rate {rate}; use one of {SUPPORTED_RATES}")
        if rate not in self._resamplers:
            self._resamplers[rate] = Resampler(rate, INTERNAL_RATE)
        return self._resamplers[rate]

    # ------------------------------------------------------ transport hooks
    @property
    def queued_frames(self) -> int:
        """Frames written but not yet played out (as far as the transport can tell)."""
        raise NotImplementedError

    def _send_frame(self, frame: Pcm16) -> None:
        raise NotImplementedError

    def _drop_queued(self) -> int:
        raise NotImplementedError

    def _hold_output(self, hold: bool) -> None:
        """Stop (``True``) or restart sending queued frames."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Stop the media: the frame stream ends, further writes are ignored."""
        if not self.closed:
            self.closed = True
            self._inbound.put_nowait(None)
