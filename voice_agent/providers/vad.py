"""Voice activity detection and endpointing: where the caller's utterances start and end.

Two layers, kept apart so each can be swapped and tested on its own:

Detectors (:class:`VoiceActivityDetector`)
    Score one 20 ms frame (320 PCM16 samples at 16 kHz) with a speech
    probability. :class:`SileroVad` is the default: a small recurrent network
    run with onnxruntime, robust to noise and to the 8 kHz telephone band.
    :class:`WebRtcVad` is the dependency-light fallback: a GMM that answers 0 or
    1 and is known to fire on noise. Detectors are synchronous and CPU-bound;
    a call session runs them off the event loop (see DESIGN.md).

Endpointer (:class:`Endpointer`)
    A pure, deterministic hysteresis state machine fed one frame and its
    probability at a time. It turns a noisy probability trace into two events:
    :class:`SpeechStart` (with pre-roll audio so the first syllable reaches STT)
    and :class:`SpeechEnd` (after ``silence_ms`` of non-speech, with the
    utterance audio). Its parameters, :class:`EndpointerConfig`, are the main
    latency/robustness trade-off of a turn: see each field.

Times are counted in frames from the last ``reset()``: frame ``i`` covers
``[i * 20 ms, (i + 1) * 20 ms)``.

Cost per 20 ms frame, measured on this (shared, 2-core) machine with
``voice-agent bench micro vad``: Silero ~210-290 µs (one ~340 µs model run
on 5 of every 8 frames, i.e. ~1-1.5 % of one core per call; model load ~65 ms,
once per process), webrtcvad ~6 µs, the endpointer ~1.3 µs.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import math
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnxruntime as ort
from pydantic import BaseModel, ConfigDict, Field, model_validator

from voice_agent.audio.frames import FRAME_MS, FRAME_SAMPLES, FRAME_SECONDS, INTERNAL_RATE, Pcm16


def check_frame(frame: Pcm16) -> Pcm16:
    """``frame`` if it is one internal frame, else a ValueError naming what arrived.

    Both detectors silently misbehave on other sizes (Silero drifts out of step,
    webrtcvad rejects or misreads the buffer), so the contract is enforced here.
    """
    if frame.dtype != np.int16 or frame.shape != (FRAME_SAMPLES,):
        raise ValueError(
            f"expected one 20 ms frame: {FRAME_SAMPLES} int16 samples at {INTERNAL_RATE} Hz, "
            f"got {frame.dtype} array of shape {frame.shape}"
        )
    return frame


def iter_frames(samples: Pcm16) -> Iterator[Pcm16]:
    """``samples`` as consecutive 20 ms frames, the last one zero-padded."""
    padded_len = math.ceil(len(samples) / FRAME_SAMPLES) * FRAME_SAMPLES
    padded = np.zeros(padded_len, dtype=np.int16)
    padded[: len(samples)] = samples
    yield from padded.reshape(-1, FRAME_SAMPLES)


class VoiceActivityDetector(Protocol):
    """Scores frames of one call. One instance per call: ``reset()`` clears its state."""

    name: str

    def speech_probability(self, frame: Pcm16) -> float:
        """Probability in [0, 1] that one 20 ms 16 kHz frame contains speech."""
        ...

    def reset(self) -> None:
        """Forget the previous audio (new call, or after audio was discontinuous)."""
        ...


# ---------------------------------------------------------------------------
# Silero (onnxruntime)
# ---------------------------------------------------------------------------

_SILERO_WINDOW = 512
"""Samples per model run at 16 kHz: the only window size the v5/v6 model accepts."""
_SILERO_CONTEXT = 64
"""Samples of the previous window prepended to each run, as the model was trained."""
_SILERO_STATE_SHAPE = (2, 1, 128)
_SILERO_RATE = np.array(INTERNAL_RATE, dtype=np.int64)


def silero_model_path() -> Path:
    """The ONNX model inside the installed ``silero-vad`` wheel.

    Located through the import system's spec, not ``importlib.resources.files``:
    the latter executes ``silero_vad/__init__.py``, which imports torch, and
    torch is deliberately not installed (pyproject overrides it away). Only the
    model file is used, never silero's Python code.
    """
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("silero-vad is not installed; it ships the Silero ONNX model")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "silero_vad.onnx"
    if not path.is_file():
        raise FileNotFoundError(f"Silero model missing from the silero-vad wheel: {path}")
    return path


@functools.cache
def _load_silero_session() -> ort.InferenceSession:
    options = ort.SessionOptions()
    # One thread per run: many calls score frames concurrently, and a 512-sample
    # window is far too small to gain from intra-op parallelism.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(
        str(silero_model_path()), sess_options=options, providers=["CPUExecutionProvider"]
    )


_SILERO_LOAD_LOCK = threading.Lock()


def silero_session() -> ort.InferenceSession:
    """The Silero session, created on first use and shared by every call in the process.

    The model is stateless (its recurrent state is an input and an output) and
    ``InferenceSession.run`` is thread-safe, so one session serves all calls;
    building one per call would cost load time before each greeting (a peer's
    mistake, see DESIGN.md). The lock makes "once" hold when two calls arrive
    together on different threads.
    """
    with _SILERO_LOAD_LOCK:
        return _load_silero_session()


class SileroVad:
    """Silero VAD v5/v6 on 20 ms frames.

    The model consumes 512-sample windows (32 ms) but the agent delivers
    320-sample frames, so samples are buffered and the model runs whenever a
    full window is ready: 5 runs per 8 frames. A frame's probability is the
    latest model output, which covers audio up to 32 ms older than the frame's
    end (less than one window is ever pending). The first frame after
    ``reset()`` has no output yet and scores 0.0. That lag is small next to the
    endpointer's ``min_speech_ms``/``silence_ms``, and it is the price of
    running the model at its trained window size rather than on padded frames.

    Per call state is only the 2×1×128 recurrent state and 64 samples of context.
    """

    name = "silero"

    def __init__(self, session: ort.InferenceSession | None = None) -> None:
        self._session = session if session is not None else silero_session()
        # [context | window] exactly as the model input, filled in place.
        self._input = np.zeros((1, _SILERO_CONTEXT + _SILERO_WINDOW), dtype=np.float32)
        self.reset()

    def reset(self) -> None:
        self._state = np.zeros(_SILERO_STATE_SHAPE, dtype=np.float32)
        self._input[:] = 0.0
        self._pending = 0  # samples of the next window already in self._input
        self._probability = 0.0

    def speech_probability(self, frame: Pcm16) -> float:
        for _ in self._full_windows(frame):
            output, self._state = self._session.run(
                ["output", "stateN"],
                {"input": self._input, "state": self._state, "sr": _SILERO_RATE},
            )
            self._probability = float(output[0, 0])
        return self._probability

    def _full_windows(self, frame: Pcm16) -> Iterator[None]:
        """Buffer ``frame``; pause each time ``self._input`` holds a full window to score."""
        samples = check_frame(frame).astype(np.float32) / 32768.0
        while len(samples):
            start = _SILERO_CONTEXT + self._pending
            take = min(_SILERO_WINDOW - self._pending, len(samples))
            self._input[0, start : start + take] = samples[:take]
            samples = samples[take:]
            self._pending += take
            if self._pending == _SILERO_WINDOW:
                yield
                self._input[0, :_SILERO_CONTEXT] = self._input[0, -_SILERO_CONTEXT:]
                self._pending = 0


class SileroBatch:
    """One Silero run for every call's full window of one event-loop turn.

    Per call and window, a batch-of-one ONNX run costs ≈ 150 µs, most of it
    fixed overhead; the same model on a batch of 50 windows costs ≈ 60 µs a
    window (measured, the input is ``[batch, 576]`` and the state
    ``[2, batch, 128]``). The RTP transport hands every call its frames in one
    batch (the edge codec's 5 ms window), so the calls' frame loops all reach
    their VAD in the same loop turn: each submits its window, and one
    ``call_soon`` callback hands them together to a model thread at the end of
    that turn. Nothing waits for a timer: a window never waits for a partner
    that is not already there. Hand-written because batching across calls is
    the product's hot path.
    """

    def __init__(self, session: ort.InferenceSession | None = None) -> None:
        self._session = session
        self._windows: list[np.ndarray] = []
        self._states: list[np.ndarray] = []
        self._waiters: list[asyncio.Future[tuple[float, np.ndarray]]] = []
        self.runs = 0
        self.windows_scored = 0
        # One thread of its own: the model never blocks the event loop that paces
        # every call's RTP (a 50-window run is ≈ 3 ms), and never queues behind STT/TTS.
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="silero-batch")

    def submit(self, window: np.ndarray, state: np.ndarray
               ) -> asyncio.Future[tuple[float, np.ndarray]]:
        """Score ``window`` (1×576, context included) from ``state``: (probability, new state)."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[tuple[float, np.ndarray]] = loop.create_future()
        if not self._waiters:
            loop.call_soon(self._launch)
        self._windows.append(window)
        self._states.append(state)
        self._waiters.append(waiter)
        return waiter

    def _launch(self) -> None:
        """End of the loop turn: hand this turn's windows to the model thread."""
        windows, states, waiters = self._windows, self._states, self._waiters
        self._windows, self._states, self._waiters = [], [], []
        session = self._session or silero_session()
        inputs = {"input": np.concatenate(windows), "state": np.concatenate(states, axis=1),
                  "sr": _SILERO_RATE}
        future = self._thread.submit(session.run, ["output", "stateN"], inputs)
        asyncio.wrap_future(future).add_done_callback(
            lambda done: self._deliver(done, waiters))

    def _deliver(self, done: asyncio.Future[Any],
                 waiters: list[asyncio.Future[tuple[float, np.ndarray]]]) -> None:
        if (exc := done.exception()) is not None:  # every waiter learns it, none hangs
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
            return
        output, state = done.result()
        self.runs += 1
        self.windows_scored += len(waiters)
        for i, waiter in enumerate(waiters):
            if not waiter.done():  # a hung-up call's frame loop was cancelled meanwhile
                waiter.set_result((float(output[i, 0]), state[:, i : i + 1, :]))


_BATCH = SileroBatch()


class BatchedSileroVad(SileroVad):
    """:class:`SileroVad` whose model runs are batched with every other call's.

    ``await score(frame)`` is the frame loop's entry; ``speech_probability``
    (synchronous, unbatched) stays for tools that score a clip alone.
    """

    name = "silero"

    def __init__(self, batch: SileroBatch | None = None) -> None:
        super().__init__()
        self._batch = batch or _BATCH

    async def score(self, frame: Pcm16) -> float:
        for _ in self._full_windows(frame):
            self._probability, self._state = await self._batch.submit(
                self._input.copy(), self._state)
        return self._probability


async def score(vad: VoiceActivityDetector, frame: Pcm16) -> float:
    """A frame's speech probability from any detector: batched ones are awaited."""
    batched = getattr(vad, "score", None)
    if batched is not None:
        return float(await batched(frame))
    return vad.speech_probability(frame)


# ---------------------------------------------------------------------------
# WebRTC (fallback)
# ---------------------------------------------------------------------------


class WebRtcVad:
    """The WebRTC GMM detector: no model file, ~µs per frame, answers 0.0 or 1.0.

    ``aggressiveness`` 0-3 trades misses for false alarms: 3 rejects the most
    noise but also clips soft speech. Its noise model adapts over a call, which
    is the state ``reset()`` discards.
    """

    name = "webrtc"

    def __init__(self, aggressiveness: int = 2) -> None:
        if aggressiveness not in range(4):
            raise ValueError(f"webrtcvad aggressiveness must be 0-3, got {aggressiveness}")
        self.aggressiveness = aggressiveness
        self.reset()

    def reset(self) -> None:
        try:
            import webrtcvad  # optional: only the benchmarks use this detector
        except ImportError as exc:
            raise RuntimeError("WebRtcVad needs the webrtcvad-wheels package "
                               "(uv sync --group bench)") from exc
        self._vad = webrtcvad.Vad(self.aggressiveness)

    def speech_probability(self, frame: Pcm16) -> float:
        payload = check_frame(frame).astype("<i2", copy=False).tobytes()
        return 1.0 if self._vad.is_speech(payload, INTERNAL_RATE) else 0.0


# ---------------------------------------------------------------------------
# Endpointing
# ---------------------------------------------------------------------------


class EndpointerConfig(BaseModel):
    """How a probability trace becomes utterances; every field moves latency or robustness.

    Two thresholds make a hysteresis band: speech must score ``start_threshold``
    to begin, but only has to stay above ``stop_threshold`` to continue, so a
    probability wobbling around one value neither chops an utterance nor
    flickers at its edges.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    start_threshold: float = Field(
        0.5, gt=0, le=1,
        description="Probability at which a frame can open an utterance. Higher: fewer "
        "false starts on noise/echo, later onsets and missed soft speech.",
    )
    stop_threshold: float = Field(
        0.35, gt=0, le=1,
        description="Probability under which a frame counts as silence once speech is "
        "open (and under which an unconfirmed onset is dropped). Must be <= start_threshold.",
    )
    min_speech_ms: int = Field(
        150, ge=0,
        description="An onset must stay above stop_threshold this long before SpeechStart. "
        "Filters coughs, clicks and short noise; adds exactly this delay to barge-in.",
    )
    silence_ms: int = Field(
        500, ge=FRAME_MS,
        description="Non-speech after the last speech frame that ends the turn. The fixed "
        "part of response latency; pauses shorter than this stay inside one utterance.",
    )
    pre_roll_ms: int = Field(
        300, ge=0,
        description="Audio kept from before the onset and prepended to the utterance, "
        "so STT hears the soft first syllable the detector scored late.",
    )
    max_utterance_s: float = Field(
        30.0, gt=0,
        description="Longest utterance before SpeechEnd is forced (truncated=True), so a "
        "caller who never pauses or a noise source scored as speech cannot hold the turn.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> EndpointerConfig:
        if self.stop_threshold > self.start_threshold:
            raise ValueError(
                f"stop_threshold ({self.stop_threshold}) must be <= start_threshold "
                f"({self.start_threshold}): otherwise speech would end on the frame that "
                "started it"
            )
        if self.max_utterance_s * 1000 <= self.min_speech_ms:
            raise ValueError(
                f"max_utterance_s ({self.max_utterance_s}) must be longer than min_speech_ms "
                f"({self.min_speech_ms} ms): no utterance could ever be confirmed"
            )
        return self


def _frames_in(ms: float) -> int:
    """Whole frames covering ``ms`` (rounded up, so a limit is never undercut)."""
    return math.ceil(round(ms / FRAME_MS, 9))


@dataclass(frozen=True, eq=False)
class SpeechStart:
    """The caller started speaking; emitted once the onset lasted ``min_speech_ms``.

    ``audio`` runs from ``audio_start_frame`` (pre-roll) through ``detected_frame``:
    everything an STT stream needs before the live frames that follow.
    """

    onset_frame: int
    """First frame that scored ``start_threshold``."""
    detected_frame: int
    """Frame on which the onset was confirmed (this event's frame)."""
    audio_start_frame: int
    audio: Pcm16 = field(repr=False)

    @property
    def onset_s(self) -> float:
        return self.onset_frame * FRAME_SECONDS

    @property
    def pre_roll(self) -> Pcm16:
        """The audio before the onset frame (up to ``pre_roll_ms``)."""
        return self.audio[: (self.onset_frame - self.audio_start_frame) * FRAME_SAMPLES]


@dataclass(frozen=True, eq=False)
class SpeechEnd:
    """The utterance ended: ``silence_ms`` passed, ``max_utterance_s`` hit, or the stream ended.

    ``audio`` is the whole utterance, pre-roll included, trailing silence excluded.
    """

    onset_frame: int
    end_frame: int
    """One past the last frame that scored ``stop_threshold`` (exclusive)."""
    detected_frame: int
    """Frame on which the end was decided (this event's frame)."""
    audio_start_frame: int
    audio: Pcm16 = field(repr=False)
    truncated: bool = False
    """True when ``max_utterance_s`` forced the end while speech went on."""

    @property
    def onset_s(self) -> float:
        return self.onset_frame * FRAME_SECONDS

    @property
    def end_s(self) -> float:
        return self.end_frame * FRAME_SECONDS


EndpointEvent = SpeechStart | SpeechEnd


class _Phase(Enum):
    QUIET = "quiet"
    ONSET = "onset"  # above start_threshold, not yet min_speech_ms long
    SPEECH = "speech"


class Endpointer:
    """Hysteresis endpointing for one call: frames and probabilities in, events out.

    Pure and synchronous: the same inputs always give the same events, so it is
    tested without clocks and replayed offline by benchmarks. Detectors score an
    onset a little late (Silero: window lag plus its recurrent smoothing, typically
    20-60 ms), which is what the pre-roll makes up for. ``silence_ms`` is the
    fixed fallback end of turn; an end-of-turn model may end a turn sooner.
    """

    def __init__(self, config: EndpointerConfig | None = None) -> None:
        self.config = config if config is not None else EndpointerConfig()
        self._min_speech_frames = max(1, _frames_in(self.config.min_speech_ms))
        self._max_frames = _frames_in(self.config.max_utterance_s * 1000)
        self._recent: deque[Pcm16] = deque(maxlen=_frames_in(self.config.pre_roll_ms))
        self.reset()

    def reset(self) -> None:
        self._next_index = 0
        self._recent.clear()
        self._quiet()

    def discard(self) -> None:
        """Forget the open utterance, if any (frame numbering goes on): it was no turn."""
        self._quiet()

    def end_now(self) -> SpeechEnd | None:
        """End the open utterance at its last speech frame, before the silence ran out.

        For a caller whose words already say the turn is over (the dialog knows);
        ``None`` if no utterance is open.
        """
        return self._end(self._next_index - 1, truncated=False) if self.in_speech else None

    def wait_longer(self, silence_ms: int) -> None:
        """This utterance ends after ``silence_ms`` of silence instead (the caller is
        mid-sentence); the next one goes back to ``config.silence_ms``."""
        if self.in_speech:
            self._silence_frames = max(self._silence_frames, _frames_in(silence_ms))

    @property
    def in_speech(self) -> bool:
        """True between SpeechStart and SpeechEnd."""
        return self._phase is _Phase.SPEECH

    @property
    def trailing_silence_frames(self) -> int:
        """Frames since the open utterance's last speech frame (0 outside speech)."""
        return self._next_index - 1 - self._last_speech if self.in_speech else 0

    def utterance_so_far(self) -> tuple[int, Pcm16]:
        """``(end_frame, audio)`` of the open utterance up to its last speech frame.

        Exactly what :class:`SpeechEnd` will carry if the caller stays silent, so
        speech recognition can start on it before the end of the turn is decided
        (and its result be used when ``SpeechEnd.end_frame`` matches).
        """
        end = self._last_speech + 1
        return end, np.concatenate(self._audio[: end - self._audio_start])

    def process(self, frame: Pcm16, probability: float) -> EndpointEvent | None:
        """Advance by one frame; returns the event this frame caused, if any."""
        index = self._next_index
        self._next_index += 1
        event: EndpointEvent | None = None
        if self._phase is _Phase.QUIET and probability >= self.config.start_threshold:
            self._phase = _Phase.ONSET
            self._onset = index
            self._audio_start = index - len(self._recent)
            self._audio = list(self._recent)
        if self._phase is _Phase.ONSET:
            event = self._grow_onset(index, frame, probability)
        elif self._phase is _Phase.SPEECH:
            event = self._continue_speech(index, frame, probability)
        self._recent.append(frame)
        return event

    def finish(self) -> SpeechEnd | None:
        """End of stream (hang-up, end of a clip): closes an open utterance, then resets."""
        event = self._end(self._next_index, truncated=False) if self.in_speech else None
        self.reset()
        return event

    def _grow_onset(self, index: int, frame: Pcm16, probability: float) -> SpeechStart | None:
        if probability < self.config.stop_threshold:
            self._quiet()  # too short: a cough, a click, a burst of noise
            return None
        self._audio.append(frame)
        self._last_speech = index
        if index - self._onset + 1 < self._min_speech_frames:
            return None
        self._phase = _Phase.SPEECH
        return SpeechStart(self._onset, index, self._audio_start, np.concatenate(self._audio))

    def _continue_speech(self, index: int, frame: Pcm16, probability: float) -> SpeechEnd | None:
        self._audio.append(frame)
        if probability >= self.config.stop_threshold:
            self._last_speech = index
        if index - self._onset + 1 >= self._max_frames:
            return self._end(index, truncated=self._last_speech == index)
        if index - self._last_speech >= self._silence_frames:
            return self._end(index, truncated=False)
        return None

    def _end(self, detected: int, truncated: bool) -> SpeechEnd:
        end = self._last_speech + 1
        audio = np.concatenate(self._audio[: end - self._audio_start])
        event = SpeechEnd(self._onset, end, detected, self._audio_start, audio, truncated)
        self._quiet()
        return event

    def _quiet(self) -> None:
        self._silence_frames = _frames_in(self.config.silence_ms)
        self._phase = _Phase.QUIET
        self._audio: list[Pcm16] = []
        self._onset = self._audio_start = self._last_speech = 0


def segments(
    samples: Pcm16, vad: VoiceActivityDetector, config: EndpointerConfig | None = None
) -> list[tuple[float, float]]:
    """(start, end) seconds of each utterance the endpointer finds in a 16 kHz clip.

    Offline replay of exactly what a call does frame by frame, for tests and
    benchmarks. ``vad`` is reset first, so one detector can score many clips.
    """
    vad.reset()
    endpointer = Endpointer(config)
    found: list[tuple[float, float]] = []
    for frame in iter_frames(samples):
        event = endpointer.process(frame, vad.speech_probability(frame))
        if isinstance(event, SpeechEnd):
            found.append((event.onset_s, event.end_s))
    last = endpointer.finish()
    if last is not None:
        found.append((last.onset_s, last.end_s))
    return found
