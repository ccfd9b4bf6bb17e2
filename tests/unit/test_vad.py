"""Tests for voice activity detection and endpointing.

Speech comes from espeak-ng, trimmed to its audible extent (RMS envelope), so a
clip's true speech boundaries are exactly where the test placed them. The
endpointer's state machine is also driven with scripted probabilities, where
every event's frame index is known exactly. No assertion involves wall-clock time.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np
import pytest

from voice_agent.audio.frames import FRAME_SAMPLES, Pcm16
from voice_agent.dev.sim import signals
from voice_agent.providers.vad import (
    BatchedSileroVad,
    Endpointer,
    EndpointerConfig,
    SileroBatch,
    SileroVad,
    SpeechEnd,
    SpeechStart,
    WebRtcVad,
    iter_frames,
    segments,
    silero_session,
)

RATE = 16000
BOUNDARY_TOLERANCE_S = 0.15


def trim_to_audible(samples: Pcm16) -> Pcm16:
    """Drop espeak's leading/trailing near-silence (10 ms windows under 1 % of peak RMS)."""
    window = RATE // 100
    envelope = signals.rms_envelope(samples, RATE, window=0.01)
    loud = np.flatnonzero(envelope > 0.01 * envelope.max())
    return samples[loud[0] * window : (loud[-1] + 1) * window]


def silence(seconds: float) -> Pcm16:
    return np.zeros(int(seconds * RATE), dtype=np.int16)


@dataclass(frozen=True)
class Clip:
    samples: Pcm16
    speech: list[tuple[float, float]]
    """True (start, end) seconds of each placed utterance."""


def compose(*parts: Pcm16 | float) -> Clip:
    """Concatenate speech arrays and silences (given as seconds), recording speech extents."""
    pieces: list[Pcm16] = []
    speech: list[tuple[float, float]] = []
    position = 0
    for part in parts:
        piece = silence(part) if isinstance(part, float) else part
        if not isinstance(part, float):
            speech.append((position / RATE, (position + len(piece)) / RATE))
        pieces.append(piece)
        position += len(piece)
    return Clip(np.concatenate(pieces), speech)


def white_noise(seconds: float, rms: float, seed: int = 7) -> Pcm16:
    noise = np.random.default_rng(seed).normal(0, rms, int(seconds * RATE))
    return noise.clip(-32768, 32767).astype(np.int16)


@pytest.fixture(scope="module")
def utterances() -> tuple[Pcm16, Pcm16]:
    return (
        trim_to_audible(signals.speech("Hello, I would like to check the status of my order.")),
        trim_to_audible(signals.speech("My order number is four five six.")),
    )


@pytest.fixture(scope="module")
def two_utterances(utterances: tuple[Pcm16, Pcm16]) -> Clip:
    first, second = utterances
    return compose(0.5, first, 1.0, second, 0.7)


@pytest.fixture(scope="module")
def short_vocal() -> Pcm16:
    """The first 100 ms of a spoken "ah": as brief as a cough, and scored as speech."""
    return trim_to_audible(signals.speech("ah"))[: RATE // 10]


@pytest.fixture(scope="module")
def silero() -> SileroVad:
    return SileroVad()


# ---------------------------------------------------------------------------
# Detectors on real audio
# ---------------------------------------------------------------------------


def test_digital_silence_has_no_segment(silero: SileroVad) -> None:
    assert segments(silence(3.0), silero) == []


def test_low_white_noise_has_no_segment_with_silero(silero: SileroVad) -> None:
    noise = white_noise(3.0, rms=300)
    assert segments(noise, silero) == []
    assert max(silero.speech_probability(frame) for frame in iter_frames(noise)) < 0.35


@pytest.mark.parametrize("path", ["wideband", "ulaw 8 kHz"])
def test_two_utterances_found_at_their_true_boundaries(
    silero: SileroVad, two_utterances: Clip, path: str
) -> None:
    samples = two_utterances.samples
    if path != "wideband":
        samples = signals.phone_path(samples)
    found = segments(samples, silero)
    assert len(found) == len(two_utterances.speech) == 2
    for (start, end), (true_start, true_end) in zip(found, two_utterances.speech, strict=True):
        assert start == pytest.approx(true_start, abs=BOUNDARY_TOLERANCE_S)
        assert end == pytest.approx(true_end, abs=BOUNDARY_TOLERANCE_S)


def test_silence_ms_decides_whether_a_one_second_pause_ends_the_turn(
    silero: SileroVad, two_utterances: Clip
) -> None:
    split = segments(two_utterances.samples, silero, EndpointerConfig(silence_ms=500))
    merged = segments(two_utterances.samples, silero, EndpointerConfig(silence_ms=1500))
    assert len(split) == 2
    assert len(merged) == 1
    assert merged[0] == pytest.approx((split[0][0], split[1][1]))


def test_min_speech_ms_ignores_a_cough_length_sound(silero: SileroVad, short_vocal: Pcm16) -> None:
    clip = compose(1.0, short_vocal, 1.0)
    assert segments(clip.samples, silero, EndpointerConfig(min_speech_ms=150)) == []
    found = segments(clip.samples, silero, EndpointerConfig(min_speech_ms=40))
    assert len(found) == 1
    assert found[0][0] == pytest.approx(clip.speech[0][0], abs=BOUNDARY_TOLERANCE_S)


def test_speech_start_carries_pre_roll_from_before_the_onset(
    silero: SileroVad, two_utterances: Clip
) -> None:
    silero.reset()
    endpointer = Endpointer(EndpointerConfig(pre_roll_ms=300))
    events = [
        event
        for frame in iter_frames(two_utterances.samples)
        if (event := endpointer.process(frame, silero.speech_probability(frame))) is not None
    ]
    start, end = events[0], events[1]
    assert isinstance(start, SpeechStart) and isinstance(end, SpeechEnd)
    assert start.onset_frame - start.audio_start_frame == 15  # 300 ms of 20 ms frames
    assert len(start.pre_roll) == 15 * FRAME_SAMPLES
    # The pre-roll is the clip's own audio and reaches back before the true speech
    # start, so the first syllable scored late by the detector still reaches STT.
    first_sample = start.audio_start_frame * FRAME_SAMPLES
    assert np.array_equal(start.audio, two_utterances.samples[first_sample : first_sample
                                                              + len(start.audio)])
    assert start.audio_start_frame * 0.02 <= two_utterances.speech[0][0]
    # The utterance audio starts with the same pre-roll and ends at the last speech frame.
    assert end.audio_start_frame == start.audio_start_frame
    assert np.array_equal(end.audio[: len(start.audio)], start.audio)
    assert len(end.audio) == (end.end_frame - end.audio_start_frame) * FRAME_SAMPLES


def test_webrtc_separates_speech_from_digital_silence(utterances: tuple[Pcm16, Pcm16]) -> None:
    vad = WebRtcVad(aggressiveness=2)
    assert {vad.speech_probability(frame) for frame in iter_frames(silence(1.0))} == {0.0}
    scores = [vad.speech_probability(frame) for frame in iter_frames(utterances[0])]
    assert set(scores) <= {0.0, 1.0}
    assert np.mean(scores) > 0.8


# ---------------------------------------------------------------------------
# Silero plumbing
# ---------------------------------------------------------------------------


def test_silero_session_is_loaded_once_and_shared() -> None:
    assert silero_session() is silero_session()
    assert SileroVad()._session is SileroVad()._session is silero_session()


def test_silero_frame_probability_is_the_latest_512_sample_window(
    two_utterances: Clip,
) -> None:
    """Buffering 320-sample frames must equal running the model on 512-sample windows."""
    samples = two_utterances.samples[: 100 * FRAME_SAMPLES]
    session = silero_session()
    state = np.zeros((2, 1, 128), dtype=np.float32)
    context = np.zeros(64, dtype=np.float32)
    window_outputs = []
    for start in range(0, len(samples) - 511, 512):
        window = samples[start : start + 512].astype(np.float32) / 32768
        model_input = np.concatenate((context, window))[np.newaxis]
        output, state = session.run(
            None, {"input": model_input, "state": state, "sr": np.array(RATE, dtype=np.int64)}
        )
        window_outputs.append(float(output[0, 0]))
        context = window[-64:]

    vad = SileroVad()
    for index, frame in enumerate(iter_frames(samples)):
        complete_windows = (index + 1) * FRAME_SAMPLES // 512
        expected = window_outputs[complete_windows - 1] if complete_windows else 0.0
        assert vad.speech_probability(frame) == pytest.approx(expected, abs=1e-6)
    assert max(window_outputs) > 0.9  # the reference really saw speech


def test_silero_calls_keep_separate_state(silero: SileroVad, two_utterances: Clip) -> None:
    frames = list(iter_frames(two_utterances.samples[: 80 * FRAME_SAMPLES]))
    silero.reset()
    alone = [silero.speech_probability(frame) for frame in frames]
    silero.reset()
    other = SileroVad()
    interleaved = []
    for frame, noise in zip(frames, iter_frames(white_noise(len(frames) * 0.02, 3000)),
                            strict=True):
        interleaved.append(silero.speech_probability(frame))
        other.speech_probability(noise)
    assert interleaved == alone


@pytest.mark.parametrize("vad_type", [SileroVad, WebRtcVad])
def test_detectors_reject_anything_but_one_internal_frame(vad_type: type) -> None:
    vad = vad_type()
    with pytest.raises(ValueError, match="320 int16 samples"):
        vad.speech_probability(np.zeros(160, dtype=np.int16))
    with pytest.raises(ValueError, match="320 int16 samples"):
        vad.speech_probability(np.zeros(320, dtype=np.float32))


# ---------------------------------------------------------------------------
# Endpointer state machine (scripted probabilities, exact frame indices)
# ---------------------------------------------------------------------------


def run(probabilities: list[float], config: EndpointerConfig) -> list[tuple[int, object]]:
    """Feed one frame per probability (frame i holds the value i); return (frame, event)."""
    endpointer = Endpointer(config)
    events: list[tuple[int, object]] = []
    for index, probability in enumerate(probabilities):
        frame = np.full(FRAME_SAMPLES, index, dtype=np.int16)
        if (event := endpointer.process(frame, probability)) is not None:
            events.append((index, event))
    if (last := endpointer.finish()) is not None:
        events.append((len(probabilities), last))
    return events


def test_onset_confirmed_after_min_speech_and_ended_after_silence() -> None:
    config = EndpointerConfig(min_speech_ms=100, silence_ms=200, pre_roll_ms=60)
    events = run([0.0] * 10 + [0.9] * 20 + [0.0] * 15, config)
    (start_at, start), (end_at, end) = events
    assert isinstance(start, SpeechStart) and isinstance(end, SpeechEnd)
    assert (start.onset_frame, start_at, start.detected_frame) == (10, 14, 14)  # 5 frames
    assert start.audio_start_frame == 7
    assert list(start.audio[::FRAME_SAMPLES]) == list(range(7, 15))
    assert list(start.pre_roll[::FRAME_SAMPLES]) == [7, 8, 9]
    assert (end.end_frame, end_at, end.detected_frame) == (30, 39, 39)  # 10 silent frames
    assert (end.onset_s, end.end_s) == pytest.approx((0.2, 0.6))
    assert list(end.audio[::FRAME_SAMPLES]) == list(range(7, 30))
    assert not end.truncated


def test_hysteresis_between_stop_and_start_threshold() -> None:
    config = EndpointerConfig(start_threshold=0.5, stop_threshold=0.3, min_speech_ms=40,
                              silence_ms=100)
    # 0.4 alone never opens speech, but keeps open speech (and an onset) going.
    assert run([0.4] * 30, config) == []
    events = run([0.6] + [0.4] * 20 + [0.1] * 10, config)
    assert [(type(e).__name__, at) for at, e in events] == [("SpeechStart", 1),
                                                           ("SpeechEnd", 25)]
    assert events[1][1].end_frame == 21


def test_onset_dropped_when_it_falls_under_stop_threshold() -> None:
    config = EndpointerConfig(min_speech_ms=100)
    assert run([0.0, 0.9, 0.9, 0.9, 0.2, 0.9, 0.9, 0.9, 0.9, 0.0], config) == []


def test_pre_roll_is_shorter_at_the_start_of_the_stream() -> None:
    (_, start), _ = run([0.0, 0.9, 0.9], EndpointerConfig(min_speech_ms=40, pre_roll_ms=300))
    assert start.audio_start_frame == 0
    assert list(start.pre_roll[::FRAME_SAMPLES]) == [0]


def test_max_utterance_forces_an_end_and_speech_restarts() -> None:
    config = EndpointerConfig(min_speech_ms=40, max_utterance_s=0.2)
    events = run([0.9] * 15, config)
    kinds = [(type(e).__name__, at) for at, e in events]
    assert kinds == [("SpeechStart", 1), ("SpeechEnd", 9), ("SpeechStart", 11),
                     ("SpeechEnd", 15)]
    assert events[1][1].truncated and events[1][1].end_frame == 10
    assert not events[3][1].truncated  # closed by finish(): the stream ended


def test_finish_without_speech_returns_nothing_and_resets() -> None:
    endpointer = Endpointer(EndpointerConfig(min_speech_ms=40))
    frame = np.zeros(FRAME_SAMPLES, dtype=np.int16)
    endpointer.process(frame, 0.9)
    assert endpointer.finish() is None  # an unconfirmed onset is not an utterance
    endpointer.process(frame, 0.9)
    start = endpointer.process(frame, 0.9)
    assert isinstance(start, SpeechStart) and start.onset_frame == 0
    assert endpointer.in_speech


# ---------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"start_threshold": 0.4, "stop_threshold": 0.6}, "stop_threshold .* must be <="),
        ({"start_threshold": 1.5}, "less than or equal to 1"),
        ({"stop_threshold": 0.0}, "greater than 0"),
        ({"min_speech_ms": -1}, "greater than or equal to 0"),
        ({"silence_ms": 10}, "greater than or equal to 20"),
        ({"max_utterance_s": 0.1, "min_speech_ms": 150}, "max_utterance_s .* longer than"),
        ({"silence_m": 500}, "Extra inputs are not permitted"),
    ],
)
def test_config_rejects_inconsistent_values(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EndpointerConfig(**fields)


def test_webrtc_aggressiveness_is_validated() -> None:
    with pytest.raises(ValueError, match="0-3"):
        WebRtcVad(aggressiveness=4)


# ---------------------------------------------------------------------------
# Batched Silero (one model run for every call's window)
# ---------------------------------------------------------------------------


async def test_batched_silero_gives_each_call_exactly_its_own_probabilities() -> None:
    """Three calls with different audio, frames interleaved as the frame loops run them:
    batching must not mix calls' states or windows (same numbers as one call alone)."""
    talk = signals.speech("Where is my order?")
    clips = [np.concatenate([talk, np.zeros(24000, np.int16)]), signals.tone(300, 1.5),
             np.zeros(24000, np.int16)]
    batch = SileroBatch()
    batched = [BatchedSileroVad(batch) for _ in clips]
    alone = [SileroVad() for _ in clips]
    frames = [list(iter_frames(clip))[:60] for clip in clips]
    for index in range(60):
        got = await asyncio.gather(*(vad.score(f[index]) for vad, f in zip(batched, frames,
                                                                           strict=True)))
        want = [vad.speech_probability(f[index]) for vad, f in zip(alone, frames, strict=True)]
        assert got == pytest.approx(want, abs=1e-5), index
    assert batch.windows_scored == 3 * batch.runs  # every run carried all three calls
    assert batch.runs == 60 * 320 // 512  # 5 runs per 8 frames


async def test_a_frame_loop_cancelled_mid_batch_does_not_break_the_others() -> None:
    batch = SileroBatch()
    first, second = BatchedSileroVad(batch), BatchedSileroVad(batch)
    frame = signals.tone(300, 0.02)
    cancelled = asyncio.create_task(first.score(np.concatenate([frame] * 2)[:320]))
    await asyncio.sleep(0)
    for _ in range(2):  # fill a window for both, then cancel one loop mid-run
        task = asyncio.create_task(first.score(frame))
        probability = await second.score(frame)
        task.cancel()
    await asyncio.gather(cancelled, return_exceptions=True)
    assert 0.0 <= probability <= 1.0 and batch.runs >= 1
