"""A spoken conversation with the embedded agent, heard and transcribed at the caller side."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

import numpy as np
import pytest

from tests.integration.conftest import AgentFactory, assert_nothing_left, eventually
from voice_agent.config import Settings
from voice_agent.sim.phone import PhoneCall, SimPhone
from voice_agent.sim.signals import rms_envelope, speech
from voice_agent.speech.stt import WhisperStt
from voice_agent.telephony.ari_session_manager import SessionManager
from voice_agent.telephony.asterisk_ari import AriClient


class Ear:
    """Collects what the caller hears, with arrival times."""

    def __init__(self, call: PhoneCall) -> None:
        self.frames: list[tuple[float, np.ndarray]] = []
        self._task = asyncio.create_task(self._run(call))

    async def _run(self, call: PhoneCall) -> None:
        assert call.audio is not None
        async for frame in call.audio.frames():
            self.frames.append((frame.arrival, frame.pcm))

    def since(self, start: float) -> np.ndarray:
        chunks = [pcm for t, pcm in self.frames if t >= start]
        return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)

    async def wait_for_silence_after_speech(self, start: float, silence: float = 0.8,
                                            timeout: float = 30) -> None:
        """Until the agent spoke (after ``start``) and then stayed quiet ``silence`` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            loud = [t for t, pcm in self.frames
                    if t >= start and rms_envelope(pcm, 16000, 0.02)[0] > 300]
            if loud and time.monotonic() - loud[-1] > silence:
                return
            await asyncio.sleep(0.1)
        levels = [int(rms_envelope(pcm, 16000, 0.02)[0]) for _, pcm in self.frames]
        raise AssertionError(f"the agent never finished speaking: {len(self.frames)} frames, "
                             f"levels {levels[:40]}")

    def close(self) -> None:
        self._task.cancel()


@pytest.fixture(scope="module")
def whisper() -> WhisperStt:
    return WhisperStt()


Conversation = tuple[SessionManager, PhoneCall, Ear]


@pytest.fixture
def talk_to(start_agent: AgentFactory, settings: Settings,
            tmp_path_factory: pytest.TempPathFactory
            ) -> Callable[[str], contextlib.AbstractAsyncContextManager[Conversation]]:
    """``async with talk_to(number) as (manager, call, ear)``: a SIP call to the
    conversation agent (fresh tenant data), with an ear on what the caller hears."""

    @contextlib.asynccontextmanager
    async def connect(number: str) -> AsyncIterator[Conversation]:
        data_dir = tmp_path_factory.mktemp("tenants")
        async with start_agent(agent="conversation", data_dir=data_dir) as manager, \
                SimPhone(settings.ari_url, settings.ari_user, settings.ari_secret()) as phone:
            call = await phone.dial(number, audio=True, via="sip")
            ear = Ear(call)
            try:
                yield manager, call, ear
            finally:
                ear.close()

    return connect


async def test_techstore_answers_an_order_status_question(
    talk_to: Callable[[str], contextlib.AbstractAsyncContextManager[Conversation]],
    inspector: AriClient, whisper: WhisperStt,
) -> None:
    async with talk_to("18005551234") as (manager, call, ear):
        start = time.monotonic()
        await ear.wait_for_silence_after_speech(start)
        greeting = (await whisper.transcribe(ear.since(start))).text.lower()
        assert "techstore" in greeting.replace(" ", "") or "tech store" in greeting, greeting

        asked = time.monotonic()
        await call.say(speech("Where is my order one two three four five?"))
        await ear.wait_for_silence_after_speech(asked + 0.5)
        answer = (await whisper.transcribe(ear.since(asked))).text.lower()
        assert "ship" in answer, answer  # tiny.en at 8 kHz sometimes hears "shipton"
        session = next(iter(manager.sessions.values()))
        turn = session.record.turns[-1]
        assert "shipped" in turn["reply"]
        assert turn["speech_end"] <= turn["stt_final"] <= turn["reply_ready"] <= turn["first_audio"]
        await call.hangup()
        await assert_nothing_left(inspector, manager)


async def test_caller_interrupts_a_long_reply_and_gets_the_new_answer(
    talk_to: Callable[[str], contextlib.AbstractAsyncContextManager[Conversation]],
    inspector: AriClient, whisper: WhisperStt,
) -> None:
    """Barge-in: agent audio stops, and the agent answers the interrupting question.

    (The interruption is a phrase tiny.en reliably gets right through 8 kHz µ-law:
    it mishears "headphones" and "five" in espeak speech — a speech-model limit,
    not the barge-in under test.)
    """
    async with talk_to("100") as (manager, call, ear):
        await ear.wait_for_silence_after_speech(time.monotonic())
        session = next(iter(manager.sessions.values()))

        await call.say(speech("What is your return policy?"))  # a ~12 s answer
        await eventually(lambda: len(session.record.turns) == 1
                         and "first_audio" in session.record.turns[0], timeout=20,
                         what="the agent started its long answer")
        await asyncio.sleep(1.5)  # let the caller hear part of it, then talk over it
        interrupted = time.monotonic()
        await call.say(speech("Where is my order one two three four five?"))
        await ear.wait_for_silence_after_speech(interrupted + 0.5)

        assert session.record.barge_ins, "no barge-in was detected"
        assert session.record.barge_ins[0]["dropped_frames"] > 100  # most of the policy unsaid
        assert "shipped" in session.record.turns[-1]["reply"].lower(), session.record.turns
        answer = (await whisper.transcribe(ear.since(interrupted + 1.0))).text.lower()
        assert "ship" in answer, answer  # tiny.en at 8 kHz sometimes hears "shipton"
        assert "prepaid label" not in answer  # the end of the old reply was never played
        await call.hangup()
        await assert_nothing_left(inspector, manager)


async def test_hangup_while_the_agent_speaks_leaves_nothing(
    talk_to: Callable[[str], contextlib.AbstractAsyncContextManager[Conversation]],
    inspector: AriClient,
) -> None:
    async with talk_to("18005555678") as (manager, call, ear):
        await eventually(lambda: len(ear.frames) > 20, what="greeting playing")
        await call.hangup()  # mid-greeting
        await assert_nothing_left(inspector, manager)
        assert "hung up" in manager.completed[-1].end_reason
        assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("call-")]


async def test_dtmf_hash_repeats_and_zero_transfers_to_the_operator(
    talk_to: Callable[[str], contextlib.AbstractAsyncContextManager[Conversation]],
    inspector: AriClient,
) -> None:
    async with talk_to("18005555678") as (manager, call, ear):
        await ear.wait_for_silence_after_speech(time.monotonic())
        session = next(iter(manager.sessions.values()))
        caller_leg = session.channel_id

        await call.send_dtmf("#")
        await eventually(lambda: any(t.get("intent") == "repeat" for t in session.record.turns),
                         what="# repeated the last reply")
        assert "HealthPlus" in session.record.turns[-1]["reply"]  # the greeting again

        await call.send_dtmf("0")
        await eventually(lambda: not manager.sessions, timeout=20, what="session handed over")
        assert manager.completed[-1].end_reason == "transferred to 9200@voice-agent-operators"
        channel = await inspector.request("GET", f"/channels/{caller_leg}")
        assert channel["dialplan"]["context"] == "voice-agent-operators"  # alive, with a person
        await call.hangup()
        await assert_nothing_left(inspector, manager)
