"""Wyoming speech servers: STT and TTS over the Wyoming protocol (``tcp://host:port``).

Wyoming is the protocol of Home Assistant's voice stack: JSON-line events with
binary payloads over TCP. Its servers are maintained, on PyPI and run offline
from local model files (``wyoming-faster-whisper --model DIR``, ``wyoming-piper
--data-dir DIR``), which is why they are the second server protocol next to
OpenAI-compatible HTTP. The ``wyoming`` package does the framing; this module
maps one turn onto its events and every failure onto the provider error family.

One TCP connection per request: Wyoming servers handle one request per
connection, and a request is a whole utterance or a reply piece, so the
connection cost (~1 ms on a LAN) is noise next to the model's.

Deadlines: ``connect_timeout`` bounds the TCP connect, ``first_result_timeout``
the wait for the transcript or the first audio chunk, ``idle_timeout`` each
later audio chunk; all raise :class:`~voice_agent.providers.errors.ProviderTimeoutError`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from urllib.parse import urlsplit

import numpy as np
from wyoming.asr import Transcribe
from wyoming.asr import Transcript as WyomingTranscript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error as WyomingError
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.tts import Synthesize, SynthesizeVoice

from voice_agent.audio.frames import INTERNAL_RATE, Pcm16
from voice_agent.audio.g711 import split_odd
from voice_agent.providers.errors import (
    ProviderConnectionError,
    ProviderResponseError,
    ProviderStreamError,
    ProviderTimeoutError,
)
from voice_agent.providers.stt import Transcript, TranscriptEvent, transcribe_stream
from voice_agent.providers.tts import at_internal_rate, split_for_speech


def parse_tcp_url(url: str) -> tuple[str, int]:
    """``tcp://host:port`` → (host, port); anything else is a clear ``ValueError``."""
    parts = urlsplit(url)
    if parts.scheme != "tcp" or not parts.hostname or parts.port is None:
        raise ValueError(f"a Wyoming server URL looks like tcp://host:port, got {url!r}")
    return parts.hostname, parts.port


#: A live server describes itself at once; a long transcript deadline (STT_TIMEOUT)
#: must not hold the service's start when a server accepts and never answers.
PROBE_TIMEOUT = 5.0

class _WyomingClient:
    """Connection and event plumbing shared by the STT and TTS clients."""

    stage = "Wyoming"

    def __init__(self, url: str, *, connect_timeout: float, first_result_timeout: float,
                 idle_timeout: float) -> None:
        self.url = url
        self._host, self._port = parse_tcp_url(url)
        self.connect_timeout = connect_timeout
        self.first_result_timeout = first_result_timeout
        self.idle_timeout = idle_timeout

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[AsyncTcpClient]:
        client = AsyncTcpClient(self._host, self._port)
        try:
            async with asyncio.timeout(self.connect_timeout):
                await client.connect()
        except TimeoutError as exc:
            raise ProviderTimeoutError(
                f"{self.stage} server at {self.url}: no connection within "
                f"{self.connect_timeout} s") from exc
        except OSError as exc:
            raise ProviderConnectionError(
                f"cannot reach {self.stage} server at {self.url}: {exc}") from exc
        try:
            yield client
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            raise ProviderStreamError(
                f"{self.stage} server at {self.url} dropped the connection: {exc}") from exc
        finally:
            await client.disconnect()

    async def _read(self, client: AsyncTcpClient, timeout: float, waiting_for: str) -> Event:
        """The next event; a closed connection, an error event or a timeout raise."""
        try:
            async with asyncio.timeout(timeout):
                event = await client.read_event()
        except TimeoutError as exc:
            raise ProviderTimeoutError(
                f"{self.stage} server at {self.url} sent no {waiting_for} within {timeout} s"
            ) from exc
        except (ValueError, KeyError, UnicodeDecodeError) as exc:  # not Wyoming framing
            raise ProviderResponseError(
                f"{self.stage} server at {self.url} sent an unreadable event: {exc}") from exc
        if event is None:
            raise ProviderStreamError(
                f"{self.stage} server at {self.url} closed the connection before the "
                f"{waiting_for}")
        if WyomingError.is_type(event.type):
            raise ProviderResponseError(
                f"{self.stage} server at {self.url}: {WyomingError.from_event(event).text}")
        return event

    async def probe(self) -> Info:
        """Ask the server to describe itself (the readiness probe); raises if it cannot."""
        async with self._connection() as client:
            await client.write_event(Describe().event())
            while True:
                event = await self._read(
                    client, min(self.first_result_timeout, PROBE_TIMEOUT), "info")
                if Info.is_type(event.type):
                    return Info.from_event(event)

    async def aclose(self) -> None:
        """Nothing pooled: every request has its own connection."""


class WyomingStt(_WyomingClient):
    """Speech-to-text from a Wyoming ASR server (e.g. ``wyoming-faster-whisper``)."""

    stage = "STT"

    def __init__(self, url: str, *, language: str = "en", model: str | None = None,
                 connect_timeout: float = 2.0, first_result_timeout: float = 5.0) -> None:
        super().__init__(url, connect_timeout=connect_timeout,
                         first_result_timeout=first_result_timeout,
                         idle_timeout=first_result_timeout)
        self.language = language
        self.model = model
        self.name = f"wyoming-stt@{url}"

    async def transcribe(self, pcm16k: Pcm16) -> Transcript:
        start = time.perf_counter()
        audio = np.asarray(pcm16k, dtype="<i2").tobytes()
        form = {"rate": INTERNAL_RATE, "width": 2, "channels": 1}
        async with self._connection() as client:
            await client.write_event(Transcribe(name=self.model, language=self.language).event())
            await client.write_event(AudioStart(**form).event())
            await client.write_event(AudioChunk(audio=audio, **form).event())
            await client.write_event(AudioStop().event())
            while True:
                event = await self._read(client, self.first_result_timeout, "transcript")
                if WyomingTranscript.is_type(event.type):
                    text = WyomingTranscript.from_event(event).text or ""
                    break
        return Transcript(text.strip(), self.language, len(pcm16k) / INTERNAL_RATE,
                          time.perf_counter() - start)

    def stream(self, frames: AsyncIterator[Pcm16]) -> AsyncIterator[TranscriptEvent]:
        return transcribe_stream(self.transcribe, frames, partial_interval=None)


class WyomingTts(_WyomingClient):
    """Text-to-speech from a Wyoming TTS server (e.g. ``wyoming-piper``), resampled to 16 kHz.

    One request per piece of :func:`split_for_speech`, so the first clause is
    heard while the rest is synthesized, as with the other providers.
    """

    stage = "TTS"
    sample_rate = INTERNAL_RATE

    def __init__(self, url: str, *, voice: str | None = None, connect_timeout: float = 2.0,
                 first_result_timeout: float = 3.0, idle_timeout: float = 3.0) -> None:
        super().__init__(url, connect_timeout=connect_timeout,
                         first_result_timeout=first_result_timeout, idle_timeout=idle_timeout)
        self.voice = voice or "default"
        self._voice = voice
        self.name = f"wyoming-tts@{url}"

    def stream(self, text: str) -> AsyncIterator[Pcm16]:
        return at_internal_rate(self._pieces(text))

    async def _pieces(self, text: str) -> AsyncIterator[tuple[int, Pcm16]]:
        for piece in split_for_speech(text):
            async with aclosing(self._synthesize(piece)) as received:
                async for chunk in received:
                    yield chunk

    async def _synthesize(self, text: str) -> AsyncIterator[tuple[int, Pcm16]]:
        """(rate, samples) of ``text`` as the server sends them."""
        voice = SynthesizeVoice(name=self._voice) if self._voice else None
        rate: int | None = None
        odd = b""  # a chunk may end in the middle of a sample
        async with self._connection() as client:
            await client.write_event(Synthesize(text=text, voice=voice).event())
            timeout, waiting_for = self.first_result_timeout, "audio"
            while True:
                event = await self._read(client, timeout, waiting_for)
                if AudioStart.is_type(event.type):
                    start = AudioStart.from_event(event)
                    _check_format(self.url, start.width, start.channels)
                    rate = start.rate
                elif AudioChunk.is_type(event.type):
                    chunk = AudioChunk.from_event(event)
                    if rate is None:
                        _check_format(self.url, chunk.width, chunk.channels)
                        rate = chunk.rate
                    data, odd = split_odd(odd + chunk.audio)
                    yield rate, np.frombuffer(data, "<i2").astype(np.int16)
                    timeout, waiting_for = self.idle_timeout, "next audio chunk"
                elif AudioStop.is_type(event.type):
                    break


def _check_format(url: str, width: int, channels: int) -> None:
    if width != 2 or channels != 1:
        raise ProviderResponseError(
            f"TTS server at {url} sends {width * 8}-bit audio in {channels} channel(s); "
            "need 16-bit mono")

