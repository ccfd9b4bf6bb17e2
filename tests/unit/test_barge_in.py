"""The barge-in rule: held, loud-enough caller speech interrupts; coughs, noise and echo do not."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import tone_at
from voice_agent.audio.levels import SILENCE_DBFS, level_dbfs
from voice_agent.conversation.barge_in import BargeIn, BargeInConfig, BargeInDetector

FRAME = 0.02
SPEECH = 0.9  # a probability the VAD gives speech (or speech-like noise)


def feed(detector: BargeInDetector, frames: list[tuple[float, float]],
         agent: float | None = None, start: int = 0) -> list[BargeIn]:
    """Events from (level dBFS, probability) frames stamped start, start + 1, ... × 20 ms."""
    events = []
    for index, (level, probability) in enumerate(frames, start):
        event = detector.process(tone_at(level), probability, agent, index * FRAME)
        if event is not None:
            events.append(event)
    return events


def test_level_dbfs() -> None:
    assert level_dbfs(tone_at(-20)) == pytest.approx(-20, abs=0.1)
    assert level_dbfs(np.zeros(320, np.int16)) == SILENCE_DBFS
    assert level_dbfs(np.zeros(0, np.int16)) == SILENCE_DBFS


def test_held_speech_above_the_floor_is_one_barge_in_from_its_onset() -> None:
    silence = [(-70.0, 0.0)] * 5
    speech = [(-20.0, SPEECH)] * 30  # 600 ms: long past the 150 ms hold
    events = feed(BargeInDetector(), silence + speech)
    # 150 ms = 8 frames: onset on frame 5, confirmed on its 8th frame, frame 12.
    assert events == [BargeIn(onset=pytest.approx(5 * FRAME), detected=pytest.approx(12 * FRAME))]


def test_cough_shorter_than_the_hold_does_not_interrupt() -> None:
    cough = [(-10.0, SPEECH)] * 5  # 100 ms, loud and scored as speech
    gap = [(-70.0, 0.0)] * 3
    assert feed(BargeInDetector(), (cough + gap) * 4) == []


def test_a_dip_restarts_the_hold() -> None:
    almost = [(-20.0, SPEECH)] * 7 + [(-20.0, 0.2)] + [(-20.0, SPEECH)] * 7
    assert feed(BargeInDetector(), almost) == []


def test_line_noise_scored_as_speech_stays_under_the_floor() -> None:
    hiss = [(-55.0, SPEECH)] * 50  # 1 s of quiet noise the VAD mistakes for speech
    assert feed(BargeInDetector(), hiss) == []


def test_echo_of_the_agent_does_not_interrupt() -> None:
    echo = [(-35.0, SPEECH)] * 50  # the agent's voice back, 20 dB under its -15 dBFS
    assert feed(BargeInDetector(), echo, agent=-15.0) == []


def test_caller_as_loud_as_the_agent_interrupts() -> None:
    caller = [(-15.0, SPEECH)] * 10
    events = feed(BargeInDetector(), caller, agent=-15.0)
    assert [e.onset for e in events] == [0.0]


def test_echo_margin_is_the_configured_return_loss() -> None:
    detector = BargeInDetector(BargeInConfig(echo_return_loss_db=12))
    assert detector.counts(tone_at(-26.5), SPEECH, -15.0)
    assert not detector.counts(tone_at(-27.5), SPEECH, -15.0)
    assert not detector.counts(tone_at(-10.0), 0.3, -15.0)  # loud but not speech


def test_reset_forgets_a_run_in_progress() -> None:
    detector = BargeInDetector()
    speech = [(-20.0, SPEECH)] * 6
    assert feed(detector, speech) == []
    detector.reset()  # the agent stopped talking: nothing to interrupt any more
    assert feed(detector, speech, start=6) == []
    assert [e.onset for e in feed(detector, speech, start=12)] == [pytest.approx(6 * FRAME)]


@pytest.mark.parametrize(("min_speech_ms", "frames"), [(20, 1), (150, 8), (450, 23)])
def test_hold_is_min_speech_ms_rounded_up_to_frames(min_speech_ms: int, frames: int) -> None:
    detector = BargeInDetector(BargeInConfig(min_speech_ms=min_speech_ms))
    events = feed(detector, [(-20.0, SPEECH)] * 40)
    assert [e.detected for e in events] == [pytest.approx((frames - 1) * FRAME)]
