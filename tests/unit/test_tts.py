"""Text-to-speech: clause splitting, Piper streaming, the round trip through Whisper,
the espeak fallback, the prompt cache, and the OpenAI-compatible client.

"First audio comes early" is checked by counting model calls completed when the
first chunk arrives, never by the clock. Intelligibility is checked by
transcribing Piper's output with Whisper. The HTTP client talks to a real
loopback server (``tests.fakes.CannedHttpServer``).
"""

from __future__ import annotations

import asyncio
import json
import os
import struct
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.fakes import CannedHttpServer
from tests.helpers import closed_port_url
from voice_agent.audio.frames import Pcm16
from voice_agent.audio.wav import WavFormatError, parse_wav, wav_bytes
from voice_agent.dev.sim import signals
from voice_agent.dev.sim.wer import word_error_rate
from voice_agent.providers.errors import ProviderConnectionError, ProviderError, ProviderHttpError
from voice_agent.providers.stt import WhisperStt
from voice_agent.providers.tts import (
    EspeakTts,
    OpenAiTts,
    PiperTts,
    PromptCache,
    load_piper_voice,
    split_for_speech,
)
from voice_agent.providers.workers import ModelWorkers

os.environ["HF_HUB_OFFLINE"] = "1"  # belt and braces: models come from package dirs only

TWO_SENTENCES = "Your order shipped yesterday. It will arrive on Thursday afternoon."
MAX_ROUND_TRIP_WER = 0.2


@pytest.fixture(scope="module")
def workers() -> Iterator[ModelWorkers]:
    """A pool of its own, so its counters show exactly this module's model calls."""
    pool = ModelWorkers(max_workers=2)
    yield pool
    pool.shutdown()


@pytest.fixture(scope="module")
def piper(workers: ModelWorkers) -> PiperTts:
    tts = PiperTts(workers=workers)
    asyncio.run(tts.load())
    return tts


async def collect(chunks: AsyncIterator[Pcm16]) -> list[Pcm16]:
    return [chunk async for chunk in chunks]


# ---------------------------------------------------------------------------
# Splitting
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        ("", []),
        ("Thank you for calling TechStore, how can I help you today?",
         ["Thank you for calling TechStore,", "how can I help you today?"]),
        # A lone "Sure," would be a clipped model call: it joins the next clause.
        ("Sure, I can help with that.", ["Sure, I can help with that."]),
        # Only the first sentence is cut at commas; later ones keep their intonation.
        ("Your order shipped yesterday, as planned. It arrives Thursday, before noon.",
         ["Your order shipped yesterday,", "as planned.", "It arrives Thursday, before noon."]),
        ("I booked Dr. Smith for you. Anything else I can do today?",
         ["I booked Dr. Smith for you.", "Anything else I can do today?"]),
        ("The total is 3.50 dollars!  Shall   I charge your card?",
         ["The total is 3.50 dollars!", "Shall I charge your card?"]),
    ],
)
def test_split_for_speech(text: str, pieces: list[str]) -> None:
    assert split_for_speech(text) == pieces


# ---------------------------------------------------------------------------
# Piper
# ---------------------------------------------------------------------------


async def test_piper_streams_first_piece_before_synthesizing_the_rest(
    piper: PiperTts, workers: ModelWorkers
) -> None:
    assert len(split_for_speech(TWO_SENTENCES)) == 2
    before = workers.stats().completed
    done_at_chunk = []
    chunks = []
    async for chunk in piper.stream(TWO_SENTENCES):
        done_at_chunk.append(workers.stats().completed - before)
        chunks.append(chunk)
    assert len(chunks) > 1
    assert done_at_chunk[0] == 1  # one of two syntheses done when the first audio arrives
    assert workers.stats().completed - before == 2
    assert piper.sample_rate == 16000
    assert all(chunk.dtype == np.int16 and chunk.ndim == 1 for chunk in chunks)
    seconds = sum(len(chunk) for chunk in chunks) / 16000
    assert 2.5 < seconds < 8.0  # ~12 words of speech, at 16 kHz rather than 22.05 kHz


async def test_piper_voice_is_loaded_once_per_process(piper: PiperTts) -> None:
    assert load_piper_voice() is load_piper_voice()
    assert await PiperTts().load() is await piper.load()


async def test_piper_speech_is_understood_by_whisper(piper: PiperTts) -> None:
    text = "Thank you for calling TechStore, how can I help you today?"
    audio = np.concatenate(await collect(piper.stream(text)))
    stt = WhisperStt()
    transcript = await stt.transcribe(audio)
    assert word_error_rate(text, transcript.text) <= MAX_ROUND_TRIP_WER, transcript.text


async def test_piper_keeps_headroom_below_full_scale(piper: PiperTts) -> None:
    audio = np.concatenate(await collect(piper.stream("Hello there, how are you?")))
    assert 0.5 * 32767 < np.abs(audio.astype(np.int32)).max() < 0.8 * 32767


# ---------------------------------------------------------------------------
# espeak-ng fallback
# ---------------------------------------------------------------------------


async def test_espeak_streams_audible_16k_speech() -> None:
    chunks = await collect(EspeakTts().stream(TWO_SENTENCES))
    assert len(chunks) > 1
    audio = np.concatenate(chunks)
    assert audio.dtype == np.int16
    assert 2.0 < len(audio) / 16000 < 8.0
    assert np.sqrt(np.mean(audio.astype(np.float64) ** 2)) > 500


async def test_missing_espeak_is_a_tts_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ProviderError, match="espeak-ng is not installed"):
        await collect(EspeakTts().stream("Hello there, everybody."))


# ---------------------------------------------------------------------------
# WAV parsing
# ---------------------------------------------------------------------------


def test_parse_wav_reads_a_canonical_file() -> None:
    pcm = np.arange(-500, 500, dtype=np.int16)
    assert parse_wav(wav_bytes(pcm, 22050))[0] == 22050
    assert np.array_equal(parse_wav(wav_bytes(pcm, 22050))[1], pcm)


def test_parse_wav_accepts_unknown_streaming_sizes() -> None:
    """Streaming writers put 0xFFFFFFFF where the sizes go: data runs to the end."""
    pcm = np.arange(100, dtype=np.int16)
    data = bytearray(wav_bytes(pcm, 24000))
    struct.pack_into("<I", data, 4, 0xFFFFFFFF)
    struct.pack_into("<I", data, 40, 0xFFFFFFFF)
    rate, samples = parse_wav(bytes(data) + b"\x01")  # and a dangling half sample
    assert rate == 24000 and np.array_equal(samples, pcm)


@pytest.mark.parametrize(
    "data", [b"", b"ID3 not a wav file", wav_bytes(np.zeros(4, np.int16))[:36]]
)
def test_parse_wav_rejects_what_it_cannot_read(data: bytes) -> None:
    with pytest.raises(WavFormatError):
        parse_wav(data)


# ---------------------------------------------------------------------------
# Prompt cache
# ---------------------------------------------------------------------------


class CountingTts:
    """A fake provider: two chunks per text, and a count of how often it was asked."""

    name = "fake"
    voice = "counting"
    sample_rate = 16000

    def __init__(self) -> None:
        self.calls = 0

    async def stream(self, text: str) -> AsyncIterator[Pcm16]:
        self.calls += 1
        seed = sum(text.encode())
        for part in range(2):
            yield np.full(1600, seed + part, np.int16)


async def test_prompt_cache_hit_replays_audio_without_the_provider() -> None:
    cache, tts = PromptCache(), CountingTts()
    first = await cache.get(tts, "Welcome to TechStore.")
    again = await cache.get(tts, "Welcome to TechStore.")
    assert tts.calls == 1 and (cache.hits, cache.misses) == (1, 1)
    assert np.array_equal(first, again) and len(again) == 3200
    assert not again.flags.writeable  # shared by every call: nobody may change it
    streamed = await collect(cache.stream(tts, "Welcome to TechStore."))
    assert len(streamed) == 1 and np.array_equal(streamed[0], first)
    await cache.get(tts, "Another prompt.")
    assert tts.calls == 2


async def test_prompt_cache_keeps_interrupted_prompts_out() -> None:
    cache, tts = PromptCache(), CountingTts()
    stream = cache.stream(tts, "Welcome to TechStore.")
    async for _ in stream:
        break  # barge-in after the first chunk
    await stream.aclose()
    assert len(cache) == 0
    await cache.get(tts, "Welcome to TechStore.")
    assert tts.calls == 2


async def test_prompt_cache_evicts_least_recently_used() -> None:
    cache, tts = PromptCache(max_bytes=2 * 6400), CountingTts()  # room for two prompts
    for text in ("one", "two", "one", "three"):
        await cache.get(tts, text)
    assert tts.calls == 3 and len(cache) == 2
    await cache.get(tts, "one")  # kept: used more recently than "two"
    assert tts.calls == 3
    await cache.get(tts, "two")  # evicted
    assert tts.calls == 4


# ---------------------------------------------------------------------------
# OpenAI-compatible client against a real local HTTP server
# ---------------------------------------------------------------------------


async def test_openai_tts_streams_pcm_resampled_to_16k(http_server: CannedHttpServer) -> None:
    tone = signals.tone(440.0, 1.0, rate=24000)
    http_server.content_type, http_server.body = "audio/pcm", tone.astype("<i2").tobytes()
    async with OpenAiTts(http_server.base_url, "kokoro", "af_heart", api_key="sk-test") as tts:
        audio = np.concatenate(await collect(tts.stream("Hello there, everybody.")))
    assert len(audio) == pytest.approx(16000, abs=40)
    assert signals.dominant_frequency(audio, 16000) == pytest.approx(440.0, abs=5.0)
    request = http_server.requests[0]
    assert request.path == "/v1/audio/speech"
    assert request.headers["Authorization"] == "Bearer sk-test"
    assert json.loads(request.body) == {
        "model": "kokoro", "voice": "af_heart", "input": "Hello there, everybody.",
        "response_format": "pcm",
    }


async def test_openai_tts_reads_the_rate_from_wav(http_server: CannedHttpServer) -> None:
    http_server.content_type = "audio/wav"
    http_server.body = wav_bytes(signals.tone(300.0, 0.5, rate=22050), 22050)
    async with OpenAiTts(http_server.base_url, response_format="wav") as tts:
        audio = np.concatenate(await collect(tts.stream(TWO_SENTENCES)))
    assert len(http_server.requests) == 2  # one request per piece: the first clause comes early
    second = json.loads(http_server.requests[1].body)
    assert second["input"] == "It will arrive on Thursday afternoon."
    assert len(audio) == pytest.approx(16000, abs=40)  # two 0.5 s replies at 16 kHz
    assert signals.dominant_frequency(audio, 16000) == pytest.approx(300.0, abs=5.0)


async def test_openai_tts_connection_refused_is_a_connection_error() -> None:
    async with OpenAiTts(closed_port_url()) as tts:
        with pytest.raises(ProviderConnectionError, match="cannot reach TTS server at http://127"):
            await collect(tts.stream("Hello there, everybody."))


async def test_openai_tts_http_500_is_an_http_error(http_server: CannedHttpServer) -> None:
    http_server.status, http_server.body = 500, b"voice not loaded"
    async with OpenAiTts(http_server.base_url) as tts:
        with pytest.raises(ProviderHttpError, match="HTTP 500: voice not loaded") as caught:
            await collect(tts.stream("Hello there, everybody."))
    assert caught.value.status == 500
