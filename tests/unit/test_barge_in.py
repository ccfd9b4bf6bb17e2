"""The barge-in rule: pause on caller speech, resume on noise and backchannels, stop otherwise;
an echo margin measured per call."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers import tone_at
from voice_agent.audio.levels import SILENCE_DBFS, level_dbfs
from voice_agent.conversation.barge_in import (
    BargeIn,
    BargeInConfig,
    BargeInDetector,
    EchoMargin,
    Event,
    Judge,
    Pause,
    Resume,
    is_backchannel,
)

FRAME = 0.02
SPEECH = 0.9  # a probability the VAD gives speech (or speech-like noise)
QUIET = (-70.0, 0.0)


def feed(detector: BargeInDetector, frames: list[tuple[float, float]],
         agent: float | None = None, start: int = 0) -> list[Event]:
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


def test_held_speech_pauses_at_60_ms_and_interrupts_at_700_ms() -> None:
    speech = [(-20.0, SPEECH)] * 36  # 720 ms
    events = feed(BargeInDetector(), [QUIET] * 5 + speech)
    # Onset on frame 5; 60 ms = 3 frames: paused on frame 7; 700 ms = 35 frames: frame 39.
    assert events == [Pause(onset=pytest.approx(5 * FRAME), at=pytest.approx(7 * FRAME)),
                      BargeIn(onset=pytest.approx(5 * FRAME), detected=pytest.approx(39 * FRAME))]


def test_a_cough_pauses_then_resumes_without_a_judgement() -> None:
    cough = [(-10.0, SPEECH)] * 5  # 100 ms, loud and scored as speech
    events = feed(BargeInDetector(), cough + [QUIET] * 12)
    pause, resume = events
    assert isinstance(pause, Pause) and isinstance(resume, Resume)
    assert resume.reason == "noise"
    assert resume.at == pytest.approx((5 + 9) * FRAME)  # 200 ms = 10 quiet frames


def test_a_click_shorter_than_the_pause_hold_changes_nothing() -> None:
    click = [(-10.0, SPEECH)] * 2 + [QUIET]
    assert feed(BargeInDetector(), click * 10) == []


def test_words_that_end_are_judged_a_backchannel_resumes() -> None:
    detector = BargeInDetector()
    events = feed(detector, [(-20.0, SPEECH)] * 20 + [QUIET] * 10)  # 400 ms: "uh-huh"
    assert [type(e) for e in events] == [Pause, Judge]
    resume = detector.verdict(backchannel=True, at=1.0)
    assert isinstance(resume, Resume) and resume.reason == "backchannel"
    assert not detector.paused
    assert detector.verdict(backchannel=True, at=1.1) is None  # moot now


def test_words_judged_not_a_backchannel_interrupt_from_their_onset() -> None:
    detector = BargeInDetector()
    feed(detector, [QUIET] * 2 + [(-20.0, SPEECH)] * 20 + [QUIET] * 10)
    cut = detector.verdict(backchannel=False, at=1.0)
    assert cut == BargeIn(onset=pytest.approx(2 * FRAME), detected=1.0)


def test_a_caller_talking_again_when_judged_interrupts_even_on_a_backchannel() -> None:
    detector = BargeInDetector()
    feed(detector, [(-20.0, SPEECH)] * 20 + [QUIET] * 10 + [(-20.0, SPEECH)] * 2)
    assert isinstance(detector.verdict(backchannel=True, at=1.0), BargeIn)


def test_a_pause_never_outlasts_max_pause() -> None:
    detector = BargeInDetector(BargeInConfig(max_pause_ms=1000))
    events = feed(detector, [(-20.0, SPEECH)] * 20 + [QUIET] * 60)  # the verdict never comes
    assert [type(e) for e in events] == [Pause, Judge, BargeIn]
    assert events[-1].detected - events[0].onset == pytest.approx(1.0)


def test_a_dip_restarts_the_pause_hold() -> None:
    almost = [(-20.0, SPEECH)] * 2 + [(-20.0, 0.2)]
    assert feed(BargeInDetector(), almost * 5) == []


def test_line_noise_scored_as_speech_stays_under_the_floor() -> None:
    hiss = [(-55.0, SPEECH)] * 50  # 1 s of quiet noise the VAD mistakes for speech
    assert feed(BargeInDetector(), hiss) == []


def test_echo_12_db_under_the_agent_never_counts_before_the_line_is_measured() -> None:
    detector = BargeInDetector(BargeInConfig(echo_return_loss_db=12))
    assert detector.counts(tone_at(-26.5), SPEECH, -15.0)
    assert not detector.counts(tone_at(-27.5), SPEECH, -15.0)
    assert not detector.counts(tone_at(-10.0), 0.3, -15.0)  # loud but not speech


def test_on_a_line_without_echo_a_caller_18_db_under_the_agent_pauses_it() -> None:
    detector = BargeInDetector()
    silent_line = [(SILENCE_DBFS, 0.0)] * 60  # 1.2 s of the agent talking, nothing back
    quiet_caller = [(-33.0, SPEECH)] * 5  # 18 dB under the agent's -15 dBFS
    events = feed(detector, silent_line + quiet_caller, agent=-15.0)
    assert detector.echo.db == 30.0  # the widest margin
    assert [type(e) for e in events] == [Pause]


def test_on_a_line_with_echo_the_echo_never_counts_and_a_caller_over_it_does() -> None:
    detector = BargeInDetector()
    rng = np.random.default_rng(3)
    # Echo 20 dB under the agent, ±4 dB with the speech envelope, 5 s of it.
    echo = [(-35.0 + float(rng.uniform(-4, 4)), SPEECH) for _ in range(250)]
    assert feed(detector, echo, agent=-15.0) == []
    assert 12.0 <= detector.echo.db <= 20.0 - 4.0  # below the loudest echo
    assert [type(e) for e in feed(detector, [(-25.0, SPEECH)] * 5, agent=-15.0)] == [Pause]


def test_caller_speech_in_the_window_only_makes_the_margin_stricter() -> None:
    margin = EchoMargin(BargeInConfig())
    for _ in range(400):
        margin.observe(-15.0, SILENCE_DBFS)
    wide = margin.db
    for _ in range(100):  # 2 s of a caller as loud as the agent
        margin.observe(-15.0, -15.0)
    assert margin.db < wide


@given(st.lists(st.tuples(st.floats(-90, 0), st.floats(0, 1)), max_size=300))
def test_any_frames_give_ordered_events_and_every_pause_is_settled(
        frames: list[tuple[float, float]]) -> None:
    """Pauses and their ends alternate; a pause is settled within max_pause (no verdicts)."""
    detector = BargeInDetector()
    events = feed(detector, frames + [QUIET] * 101, agent=-20.0)
    open_pause = None
    for event in events:
        if isinstance(event, Pause):
            assert open_pause is None
            open_pause = event
        elif isinstance(event, Resume | BargeIn):
            assert open_pause is not None and event.onset == open_pause.onset
            open_pause = None
    assert open_pause is None and not detector.paused


def test_reset_forgets_a_run_in_progress() -> None:
    detector = BargeInDetector()
    speech = [(-20.0, SPEECH)] * 2
    assert feed(detector, speech) == []
    detector.reset()  # the agent stopped talking: nothing to interrupt any more
    assert [e.onset for e in feed(detector, speech * 2, start=2)] == [pytest.approx(2 * FRAME)]
    assert [e.at for e in feed(BargeInDetector(), speech * 2)] == [pytest.approx(2 * FRAME)]


@pytest.mark.parametrize(("pause_ms", "frames"), [(20, 1), (60, 3), (70, 4)])
def test_pause_hold_is_pause_ms_rounded_up_to_frames(pause_ms: int, frames: int) -> None:
    detector = BargeInDetector(BargeInConfig(pause_ms=pause_ms))
    events = feed(detector, [(-20.0, SPEECH)] * 10)
    assert [e.at for e in events if isinstance(e, Pause)] == [pytest.approx((frames - 1) * FRAME)]


def test_holds_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="pause_ms <= min_speech_ms <= interrupt_ms"):
        BargeInConfig(pause_ms=200, min_speech_ms=150)


@pytest.mark.parametrize(("text", "backchannel"), [
    ("Uh-huh.", True), ("Mm-hmm", True), ("okay", True), ("Yeah, right.", True),
    ("I see.", True), ("", True), ("Stop.", False), ("No, wait", False),
    ("yes I want to cancel my order", False), ("okay okay okay okay okay", False),
])
def test_backchannels(text: str, backchannel: bool) -> None:
    assert is_backchannel(text) is backchannel
