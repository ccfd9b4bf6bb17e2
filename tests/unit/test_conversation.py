"""The conversation agent's state machine and barge-in, on a fake line in virtual time.

The line plays queued frames at 20 ms each like a transport; the caller is a
scripted stream of frames (tones are "speech" to an energy VAD); STT and TTS
are fakes, the dialog engine is the real TechStore one. The call is a plain
:class:`FakeCall` (the calls protocol), not an ARI session.

Time is the event loop's, and looptime fast-forwards it whenever every task
waits, so seconds of conversation run in milliseconds; the agent takes the
same clock (``clock=loop.time``), so its timestamps are virtual too.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.helpers import tone_at as tone
from voice_agent.audio.frames import FRAME_SECONDS
from voice_agent.audio.levels import level_dbfs
from voice_agent.calls.record import CallRecord, CallState
from voice_agent.conversation.agent import ConversationAgent
from voice_agent.media.call_audio import CallAudio
from voice_agent.providers.errors import ProviderConnectionError, ProviderStreamError
from voice_agent.providers.stt import Transcript
from voice_agent.providers.tts import split_for_speech
from voice_agent.tenants import TenantRegistry
from voice_agent.tenants.data import TenantDatabases

S = CallState
AGENT_DBFS = -20.0
pytestmark = pytest.mark.looptime


class FakeCall:
    """The :class:`~voice_agent.calls.protocol.Call` an agent needs, and nothing of ARI."""

    def __init__(self, tenant: str, caller: str, audio: CallAudio) -> None:
        self.record = CallRecord(session_id="s1", channel_id="c1", channel_name="Test/c1",
                                 caller=caller, tenant=tenant)
        self.audio: CallAudio | None = audio
        self.dtmf: asyncio.Queue[str] = asyncio.Queue()
        self.transfer_to: tuple[str, str] | None = None
        self.gave_up: str | None = None
        self.transition(S.STARTING)

    @property
    def state(self) -> CallState:
        return self.record.transitions[-1][1]

    def transition(self, state: CallState) -> None:
        if not self.record.transitions or self.state is not state:
            self.record.transitions.append((asyncio.get_running_loop().time(), state))

    def on_dtmf(self, digit: str) -> None:
        self.dtmf.put_nowait(digit)


class Line(CallAudio):
    """A transport that plays one queued frame per 20 ms, like the RTP pacer.

    The caller's side is one frame per 20 ms too: what :meth:`say` queued, plus,
    with ``echo_db``, the agent's frame playing at that moment that much quieter
    (a line's echo). With neither, nothing arrives, as from a silent RTP caller.
    """

    def __init__(self, echo_db: float | None = None) -> None:
        super().__init__()
        self.echo_db = echo_db
        self.queue: deque[np.ndarray] = deque()
        self.mic: deque[np.ndarray] = deque()
        self.player = asyncio.create_task(self._play())

    async def _play(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(FRAME_SECONDS)
            out = self.queue.popleft() if self.queue and not self.paused else None
            heard = self.mic.popleft().astype(np.float64) if self.mic else None
            if out is not None and self.echo_db is not None:
                echo = out * 10 ** (-self.echo_db / 20)
                heard = echo if heard is None else heard + echo
            if heard is not None:
                self._deliver(np.clip(heard, -32768, 32767).astype(np.int16), loop.time())

    @property
    def queued_frames(self) -> int:
        return len(self.queue)

    def _send_frame(self, frame: np.ndarray) -> None:
        self.queue.append(frame)

    def _drop_queued(self) -> int:
        dropped = len(self.queue)
        self.queue.clear()
        return dropped

    def _hold_output(self, hold: bool) -> None:
        pass  # the player looks at ``paused``

    async def say(self, seconds: float, level: float, then_silence: float = 0.0) -> None:
        """The caller's side: a tone at ``level`` dBFS, then silence, paced at 20 ms."""
        frames = [tone(level)] * round(seconds / FRAME_SECONDS)
        frames += [np.zeros(320, np.int16)] * round(then_silence / FRAME_SECONDS)
        self.mic.extend(frames)
        await asyncio.sleep(len(frames) * FRAME_SECONDS)


class EnergyVad:
    """Anything above -60 dBFS is speech: echo and coughs included, as with a real VAD."""

    name = "energy"

    def speech_probability(self, frame: np.ndarray) -> float:
        return 0.9 if level_dbfs(frame) > -60 else 0.0

    def reset(self) -> None:
        pass


class ScriptedStt:
    name = "scripted"

    def __init__(self, *texts: str) -> None:
        self.texts = list(texts)
        self.heard: list[float] = []  # seconds of audio per transcription

    async def transcribe(self, pcm16k: np.ndarray) -> Transcript:
        self.heard.append(len(pcm16k) / 16000)
        return Transcript(self.texts.pop(0), "en", len(pcm16k) / 16000, 0.0)


class ToneTts:
    """``seconds_per_char`` of tone per character of text, at -20 dBFS, in two chunks."""

    name = "tone"
    voice = "test"
    sample_rate = 16000

    def __init__(self, seconds_per_char: float) -> None:
        self.seconds_per_char = seconds_per_char

    async def stream(self, text: str) -> AsyncIterator[np.ndarray]:
        audio = tone(AGENT_DBFS, int(len(text) * self.seconds_per_char * 16000))
        yield audio[: len(audio) // 2]
        yield audio[len(audio) // 2:]


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll every 10 ms (of loop time): the agent's progress is time, not event-loop turns."""
    for _ in range(round(timeout / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the call never got there")


@pytest.fixture
async def call(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """``start(*transcripts, seconds_per_char=, stt=, tts=, watchdog_seconds=, echo_db=)``
    → (session, line): a TechStore call in its greeting, whose agent speaks
    ``seconds_per_char`` per character (or through ``tts``), hearing ``stt``, on a
    line whose echo is ``echo_db`` under the agent (``None``: no echo)."""
    tasks: list[asyncio.Task[Any]] = []

    async def start(*transcripts: str, seconds_per_char: float = 0.01,
                    stt: Any = None, tts: Any = None, watchdog_seconds: float = 20.0,
                    echo_db: float | None = None) -> tuple[FakeCall, Line]:
        tenants = TenantRegistry.load()
        stt = stt or ScriptedStt(*transcripts)
        agent = ConversationAgent(tenants, TenantDatabases(tmp_path),
                                  stt, tts or ToneTts(seconds_per_char), vad=EnergyVad,
                                  watchdog_seconds=watchdog_seconds,
                                  clock=asyncio.get_running_loop().time)
        await agent.warm_up()  # pre-synthesizes the apology, as the service does
        line = Line(echo_db)
        session = FakeCall("techstore", "555", line)
        line.stt = stt  # type: ignore[attr-defined]
        session.transition(S.GREETING)  # what the session does before it hands over
        tasks.extend([line.player, asyncio.create_task(agent(session))])
        return session, line

    yield start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_greeting_then_one_turn_walks_the_states(call: Callable[..., Any]) -> None:
    session, line = await call("where is my order 12345")
    assert session.state is S.GREETING
    await until(lambda: session.state is S.LISTENING)  # only once the greeting was played
    assert line.queued_frames == 0

    await line.say(0.4, -20.0, then_silence=0.6)
    await until(lambda: "played" in next(iter(session.record.turns), {}))

    record = session.record
    assert record.states == [S.STARTING, S.GREETING, S.LISTENING, S.THINKING, S.SPEAKING,
                             S.LISTENING]
    stamps = [at for at, _ in record.transitions]
    assert stamps == sorted(stamps)
    turn = record.turns[0]
    assert "shipped" in turn["reply"]
    assert (turn["speech_end"] <= turn["stt_final"] <= turn["reply_ready"]
            <= turn["first_audio"] <= turn["played"])
    assert turn["played"] - turn["first_audio"] >= len(turn["reply"]) * 0.01 * 0.9
    assert not record.barge_ins and "interrupted" not in turn


async def test_caller_barges_in_and_the_interruption_is_answered(
    call: Callable[..., Any],
) -> None:
    # The return policy is 209 characters: 4.2 s of reply to talk over, on a line
    # whose echo comes back 20 dB under the agent.
    session, line = await call("what is your return policy", "where is my order 12345",
                               seconds_per_char=0.02, echo_db=20.0)
    await until(lambda: session.state is S.LISTENING)
    await line.say(0.4, -20.0, then_silence=0.6)
    await until(lambda: session.state is S.SPEAKING)
    record = session.record

    await line.say(0.1, -20.0, then_silence=0.3)  # a cough: a pause, then the reply goes on
    await asyncio.sleep(0.7)  # the agent's echo alone, meanwhile, pauses nothing
    assert session.state is S.SPEAKING and not record.barge_ins
    (pause,) = record.turns[0]["pauses"]
    assert pause["reason"] == "noise" and pause["resumed"] - pause["onset"] < 0.4
    assert len(record.turns) == 1  # none of it was taken for an utterance either

    spoke = asyncio.get_running_loop().time()
    await line.say(0.4, -20.0)  # the caller talks over the agent
    assert line.paused and session.state is S.SPEAKING  # silent at once, words being judged
    await line.say(0.0, -20.0, then_silence=0.6)
    await until(lambda: len(record.turns) == 2 and "played" in record.turns[1])

    assert record.states == [S.STARTING, S.GREETING, S.LISTENING, S.THINKING, S.SPEAKING,
                             S.LISTENING, S.THINKING, S.SPEAKING, S.LISTENING]
    (cut,) = record.barge_ins
    assert spoke <= cut["onset"] < cut["paused"] < cut["detected"] <= cut["stopped"]
    assert cut["paused"] - cut["onset"] == pytest.approx(0.04)  # held 3 frames (2 intervals)
    assert cut["detected"] - cut["onset"] >= 0.55  # the words (0.4 s), then 200 ms of quiet
    assert cut["dropped_frames"] > 0
    first, second = record.turns
    assert first["interrupted"] and "played" not in first
    assert first["reply"].startswith(first["played_text"])
    assert 0 < len(first["played_text"]) < len(first["reply"])
    assert "shipped" in second["reply"] and second["speculative"]  # the judged words, reused
    assert len(line.stt.heard) == 2  # no transcription beyond the two turns'


async def test_a_backchannel_pauses_the_reply_which_then_plays_on_in_full(
    call: Callable[..., Any],
) -> None:
    session, line = await call("what is your return policy", "uh-huh", seconds_per_char=0.02)
    await until(lambda: session.state is S.LISTENING)
    await line.say(0.4, -20.0, then_silence=0.6)
    await until(lambda: session.state is S.SPEAKING)
    await asyncio.sleep(1.0)
    await line.say(0.4, -20.0, then_silence=0.6)  # "uh-huh"
    await until(lambda: "played" in session.record.turns[0])
    (turn,) = session.record.turns
    assert not session.record.barge_ins and "interrupted" not in turn
    (pause,) = turn["pauses"]
    assert pause["reason"] == "backchannel"
    assert line.stats.flushed_frames == 0  # every frame of the reply was played
    assert turn["played"] - turn["first_audio"] >= len(turn["reply"]) * 0.02


async def test_sound_broken_into_pieces_too_short_for_an_utterance_is_noise(
    call: Callable[..., Any],
) -> None:
    session, line = await call("what is your return policy", seconds_per_char=0.02)
    await until(lambda: session.state is S.LISTENING)
    await line.say(0.4, -20.0, then_silence=0.6)
    await until(lambda: session.state is S.SPEAKING)
    # 100 ms, a 20 ms dip, 80 ms: enough counted speech to be judged, but never the
    # 150 ms in a row the endpointer needs for an utterance.
    await line.say(0.1, -20.0, then_silence=0.02)
    await line.say(0.08, -20.0, then_silence=0.5)
    await until(lambda: "played" in session.record.turns[0])
    assert not session.record.barge_ins
    assert [p["reason"] for p in session.record.turns[0]["pauses"]] == ["noise"]
    assert len(line.stt.heard) == 1  # nothing transcribed for it


async def test_a_caller_18_db_under_the_agent_stops_it_on_a_line_without_echo(
    call: Callable[..., Any],
) -> None:
    session, line = await call("what is your return policy", "stop", seconds_per_char=0.02)
    await until(lambda: session.state is S.LISTENING)
    await line.say(0.4, -20.0, then_silence=0.6)
    await until(lambda: session.state is S.SPEAKING)
    await asyncio.sleep(1.5)  # long enough to measure the line: it sends nothing back
    await line.say(0.1, AGENT_DBFS - 18)
    assert line.paused
    await line.say(0.3, AGENT_DBFS - 18, then_silence=0.4)
    await until(lambda: bool(session.record.barge_ins))
    assert session.record.turns[0]["interrupted"]


async def test_a_key_cuts_the_reply_and_repeat_says_all_of_it(call: Callable[..., Any]) -> None:
    session, line = await call("what is your return policy")
    await until(lambda: session.state is S.LISTENING)
    await line.say(0.4, -20.0, then_silence=0.6)
    await until(lambda: session.state is S.SPEAKING)
    await asyncio.sleep(0.3)

    session.on_dtmf("#")  # a key is a barge-in too; '#' repeats the whole last reply
    record = session.record
    await until(lambda: len(record.turns) == 2 and "first_audio" in record.turns[1])
    first, repeat = record.turns
    assert len(record.barge_ins) == 1 and record.barge_ins[0]["dropped_frames"] > 0
    assert first["interrupted"] and len(first["played_text"]) < len(first["reply"])
    assert repeat["reply"] == first["reply"]
    assert record.states[-4:] == [S.SPEAKING, S.LISTENING, S.THINKING, S.SPEAKING]


async def test_transcription_starts_in_the_pause_and_the_turn_reuses_it(
    call: Callable[..., Any],
) -> None:
    session, line = await call("where is my order 12345")
    await until(lambda: session.state is S.LISTENING)
    await line.say(0.4, -20.0, then_silence=0.6)
    await until(lambda: "played" in next(iter(session.record.turns), {}))
    turn = session.record.turns[0]
    assert turn["speculative"] and "shipped" in turn["reply"]
    assert len(line.stt.heard) == 1  # started 200 ms into the silence, used at 500 ms


async def test_a_pause_the_caller_talks_through_discards_the_early_transcript(
    call: Callable[..., Any],
) -> None:
    session, line = await call("where is", "where is my order 12345")
    await until(lambda: session.state is S.LISTENING)
    await line.say(0.4, -20.0, then_silence=0.3)  # a pause: early transcription starts
    await line.say(0.4, -20.0, then_silence=0.6)  # ...but the caller went on
    await until(lambda: "played" in next(iter(session.record.turns), {}))
    (turn,) = session.record.turns
    assert turn["heard"] == "where is my order 12345" and "shipped" in turn["reply"]
    first, second = line.stt.heard
    assert second > first + 0.5  # the used transcription covers both parts


async def test_words_that_make_a_whole_request_end_the_turn_before_the_silence_does(
    call: Callable[..., Any],
) -> None:
    session, line = await call("where is my order 12345")
    await until(lambda: session.state is S.LISTENING)
    spoke = asyncio.get_running_loop().time()
    await line.say(0.4, -20.0, then_silence=0.6)
    await until(lambda: "played" in next(iter(session.record.turns), {}))
    (turn,) = session.record.turns
    assert turn["turn_end"] == "complete" and "shipped" in turn["reply"]
    # Ended 200 ms into the silence (the early transcript's moment), not 570 ms.
    assert turn["speech_end"] - (spoke + 0.4) < 0.3


async def test_words_that_stop_mid_sentence_wait_for_the_rest(
    call: Callable[..., Any],
) -> None:
    session, line = await call("my order number is", "my order number is 12345")
    await until(lambda: session.state is S.LISTENING)
    await line.say(0.4, -20.0, then_silence=0.8)  # a pause longer than the fixed silence
    await line.say(0.4, -20.0, then_silence=1.5)
    await until(lambda: "played" in next(iter(session.record.turns), {}))
    (turn,) = session.record.turns  # one turn, not "my order number is" answered alone
    assert turn["heard"] == "my order number is 12345" and "shipped" in turn["reply"]


async def test_unsure_words_keep_the_fixed_silence(call: Callable[..., Any]) -> None:
    session, line = await call("hello there")
    await until(lambda: session.state is S.LISTENING)
    spoke = asyncio.get_running_loop().time()
    await line.say(0.4, -20.0, then_silence=1.0)
    await until(lambda: "played" in next(iter(session.record.turns), {}))
    (turn,) = session.record.turns
    assert turn["turn_end"] == "unsure"
    assert turn["speech_end"] - (spoke + 0.4) >= 0.5


class CountingTts(ToneTts):
    """Remembers every text it was asked to speak."""

    def __init__(self, seconds_per_char: float) -> None:
        super().__init__(seconds_per_char)
        self.said: list[str] = []

    async def stream(self, text: str) -> AsyncIterator[np.ndarray]:
        self.said.append(text)
        async for chunk in super().stream(text):
            yield chunk


async def test_the_greeting_is_ready_at_start_and_a_fixed_reply_is_synthesized_once(
    call: Callable[..., Any],
) -> None:
    tts = CountingTts(0.005)
    session, line = await call("what is your return policy", "what is your return policy",
                               tts=tts)
    spoken_at_start = list(tts.said)  # warm-up: every tenant's greeting, the apology
    assert any("TechStore" in text for text in spoken_at_start)
    await until(lambda: session.state is S.LISTENING)
    for _ in range(2):
        await line.say(0.4, -20.0, then_silence=0.8)
        await until(lambda: session.state is S.LISTENING and line.queued_frames == 0)
    first, second = session.record.turns
    assert first["reply"] == second["reply"]
    synthesized = tts.said[len(spoken_at_start):]
    assert synthesized == split_for_speech(first["reply"])  # once, not twice; no greeting


async def test_a_silent_caller_is_asked_again_twice_then_the_agent_says_goodbye(
    call: Callable[..., Any],
) -> None:
    session, line = await call("where is my order 12345")
    await until(lambda: session.state is S.LISTENING)
    await asyncio.sleep(8.5)  # nobody says anything
    await until(lambda: len(session.record.turns) == 1 and session.state is S.LISTENING)
    (asked,) = session.record.turns
    assert asked["reply"].startswith("Are you still there?") and "order" in asked["reply"]
    await line.say(0.4, -20.0, then_silence=0.8)  # the caller answers: the count restarts
    await until(lambda: len(session.record.turns) == 2 and "played" in session.record.turns[1])
    assert "shipped" in session.record.turns[1]["reply"]
    await until(lambda: session.record.end_reason == "caller silent", timeout=40)
    assert [t["reply"].split("?")[0].split(",")[0] for t in session.record.turns[2:]] == [
        "Are you still there", "Are you still there", "I haven't heard anything"]


# ------------------------------------------------------------------ failures


class BrokenStt:
    """Fails every transcription the way a dead server does (or never answers)."""

    name = "broken-stt"

    def __init__(self, hang: bool = False) -> None:
        self.hang = hang

    async def transcribe(self, pcm16k: np.ndarray) -> Transcript:
        if self.hang:
            await asyncio.Event().wait()
        raise ProviderConnectionError("cannot reach STT server at http://stt:9000/v1")


class FlakyTts(ToneTts):
    """Breaks off the return-policy reply after its first chunk (a server reset)."""

    name = "flaky-tts"

    async def stream(self, text: str) -> AsyncIterator[np.ndarray]:
        async for chunk in super().stream(text):
            yield chunk
            if "within 30 days" in text:
                raise ProviderStreamError("the TTS server reset the connection")


async def test_a_failed_stt_is_apologised_for_and_the_call_listens_again(
    call: Callable[..., Any],
) -> None:
    session, line = await call(stt=BrokenStt())
    await until(lambda: session.state is S.LISTENING)
    await line.say(0.4, -20.0, then_silence=0.6)
    await until(lambda: bool(session.record.errors) and session.state is S.LISTENING
                and line.queued_frames == 0)
    (error,) = session.record.errors
    assert error["stage"] == "stt" and error["provider"] == "broken-stt"
    assert "cannot reach STT server" in error["error"]
    assert session.record.states[-4:] == [S.LISTENING, S.THINKING, S.SPEAKING, S.LISTENING]
    assert not session.record.turns  # nothing was understood, so no dialog turn


async def test_a_reply_broken_mid_sentence_ends_with_the_apology(
    call: Callable[..., Any],
) -> None:
    session, line = await call("what is your return policy", tts=FlakyTts(0.01))
    await until(lambda: session.state is S.LISTENING)
    await line.say(0.4, -20.0, then_silence=0.6)
    await until(lambda: bool(session.record.errors) and session.state is S.LISTENING
                and line.queued_frames == 0)
    (error,) = session.record.errors
    assert error["stage"] == "tts" and "reset the connection" in error["error"]
    turn = session.record.turns[0]
    assert "first_audio" in turn and "played" not in turn  # half said, then cut short
    assert session.state is S.LISTENING


class DeadTts(ToneTts):
    """A TTS server that is down from the start: nothing, not even the apology, is cached."""

    name = "dead-tts"

    async def stream(self, text: str) -> AsyncIterator[np.ndarray]:
        raise ProviderConnectionError("cannot reach TTS server at http://tts:9000/v1")
        yield np.zeros(0, np.float32)  # pragma: no cover - makes this an async generator


async def test_an_agent_that_cannot_speak_hands_the_call_back_rather_than_hold_it_silent(
    call: Callable[..., Any],
) -> None:
    session, line = await call(tts=DeadTts(0.01))
    await until(lambda: session.gave_up is not None)
    assert session.gave_up.startswith("cannot speak: ") and "cannot reach TTS" in session.gave_up
    assert session.transfer_to == ("voice-agent-operators", "9100")  # techstore's operator
    assert [e["stage"] for e in session.record.errors] == ["tts"]  # the greeting's failure
    assert line.queued_frames == 0  # nothing was played: the session's prompts speak now


async def test_the_watchdog_frees_a_call_stuck_on_a_hanging_provider(
    call: Callable[..., Any],
) -> None:
    session, line = await call(stt=BrokenStt(hang=True), watchdog_seconds=3.0)
    await until(lambda: session.state is S.LISTENING)
    await line.say(0.4, -20.0, then_silence=0.6)
    assert session.state is S.THINKING
    await until(lambda: bool(session.record.errors), timeout=10)
    (error,) = session.record.errors
    assert error["stage"] == "stt" and error["error"].startswith("watchdog: no progress for 3 s")
    await until(lambda: session.state is S.LISTENING and line.queued_frames == 0)
    await line.say(0.4, -20.0, then_silence=0.6)  # the call still takes turns afterwards
    assert session.state is S.THINKING


async def test_speech_that_transcribes_to_nothing_is_asked_again(
    call: Callable[..., Any],
) -> None:
    session, line = await call("", "")
    await until(lambda: session.state is S.LISTENING)
    await line.say(0.15, -20.0, then_silence=0.6)  # a click the VAD took for speech
    await until(lambda: len(line.stt.heard) == 1 and session.state is S.LISTENING)
    assert not session.record.turns and line.stt.heard[0] < 0.6  # ignored
    await line.say(0.8, -20.0, then_silence=0.6)  # real speech the model could not read
    await until(lambda: "played" in next(iter(session.record.turns), {}))
    (turn,) = session.record.turns
    assert turn["heard"] == "" and turn["reply"].startswith("Sorry, I didn't")
