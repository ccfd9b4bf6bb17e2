"""Spoken conversations with the embedded agent, heard and transcribed at the caller side.

The caller is :class:`~voice_agent.dev.sim.conversation.ScriptedCaller` on a real
SIP call through Asterisk: espeak-ng speech in, the agent's µ-law audio out,
Whisper tiny.en transcribing what the caller heard. Each tenant completes its
task and the tenant database shows it.

(Utterances are phrased the way tiny.en reliably transcribes espeak speech
through 8 kHz µ-law: it mishears "headphones" and "five" on their own — a
speech-model limit, not the conversation under test.)
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Iterator

import numpy as np
import pytest
from prometheus_client import REGISTRY

from tests.helpers import eventually, local_llm_server
from tests.integration.conftest import TalkTo, assert_nothing_left
from voice_agent.ari.asterisk_ari import AriClient
from voice_agent.calls.record import CallState
from voice_agent.config import Settings
from voice_agent.dev.llm_server import LocalLlmServer
from voice_agent.dev.local_asterisk import LocalAsterisk
from voice_agent.dev.sim.conversation import Step, words_heard
from voice_agent.dev.sim.signals import speech

ORDER_QUESTION = "Where is my order one two three four five?"
BACKCHANNEL = "Okay."


async def test_techstore_answers_an_order_status_question(
    talk_to: TalkTo, inspector: AriClient,
) -> None:
    async with talk_to("18005551234") as talk:
        greeting = await talk.caller.greeting()
        assert words_heard(talk.session.tenant.greeting, greeting.heard) >= 0.5, greeting
        await talk.caller.step(Step(ORDER_QUESTION))
        [_, answer] = await talk.caller.finish()
        assert answer.latency_s is not None and answer.latency_s > 0
        turn = talk.session.record.turns[-1]
        assert "shipped" in turn["reply"]
        assert words_heard(turn["reply"], answer.heard) >= 0.5, answer
        assert turn["speech_end"] <= turn["stt_final"] <= turn["reply_ready"] <= turn["first_audio"]
        await talk.call.hangup()
        await assert_nothing_left(inspector, talk.manager)


async def test_healthplus_books_an_appointment_that_is_then_in_the_database(
    talk_to: TalkTo, inspector: AriClient,
) -> None:
    async with talk_to("18005555678") as talk:
        await talk.caller.run([
            Step("I would like an appointment next Monday at three PM "
                 "at the downtown clinic."),
        ])
        [*_, confirm] = await talk.caller.finish()
        assert "shall i book" in talk.session.record.turns[-1]["reply"].lower(), \
            talk.session.record.turns
        assert words_heard(talk.session.record.turns[-1]["reply"], confirm.heard) >= 0.5, confirm
        await talk.caller.step(Step("Yes please."))
        [*_, booked] = await talk.caller.finish()
        assert words_heard(talk.session.record.turns[-1]["reply"], booked.heard) >= 0.5, booked
        [(day, clinic, time, status)] = talk.rows(
            "SELECT day, clinic, time, status FROM appointments WHERE id > 2")  # 2 are seeded
        assert (clinic, time, status) == ("Downtown", "15:00", "booked")
        assert datetime.date.fromisoformat(day).weekday() == 0  # a Monday
        await talk.call.hangup()
        await assert_nothing_left(inspector, talk.manager)


async def test_edulearn_enrols_the_caller_in_a_course(
    talk_to: TalkTo, inspector: AriClient,
) -> None:
    async with talk_to("18005559999") as talk:
        # Course names are what tiny.en mishears most over µ-law ("type and matrix",
        # "the third score"): the caller picks from the list with a key, as on any IVR.
        await talk.caller.run([Step("I would like to register for a course."), Step(dtmf="1")])
        await talk.caller.finish()
        assert "shall i enrol" in talk.session.record.turns[-1]["reply"].lower(), \
            talk.session.record.turns
        await talk.caller.step(Step("Yes."))
        [*_, enrolled] = await talk.caller.finish()
        assert words_heard(talk.session.record.turns[-1]["reply"], enrolled.heard) >= 0.5, \
            enrolled
        caller = talk.session.record.caller or "anonymous"
        assert talk.rows(f"SELECT course_code FROM enrolments WHERE caller_id = '{caller}'"
                         ) == [("PY101",)]
        await talk.call.hangup()
        await assert_nothing_left(inspector, talk.manager)


async def test_caller_interrupts_a_long_reply_and_gets_the_new_answer(
    talk_to: TalkTo, inspector: AriClient,
) -> None:
    """Barge-in: agent audio stops at the caller, and the agent answers the new question;
    Prometheus counts the barge-in and the turns once the call ended."""
    labels = {"entry": "ari", "tenant": "techstore"}
    barge_ins = REGISTRY.get_sample_value("voice_agent_barge_ins_total", labels) or 0.0
    turns = REGISTRY.get_sample_value("voice_agent_turns_total", labels) or 0.0
    async with talk_to("100") as talk:
        await talk.caller.run([
            Step("What is your return policy?"),  # a ~12 s answer
            Step(ORDER_QUESTION, barge_in_after=1.5),
        ])
        [_, policy, interruption] = await talk.caller.finish()
        record = talk.session.record
        assert record.barge_ins, "no barge-in was detected"
        assert record.barge_ins[0]["dropped_frames"] > 100  # most of the policy unsaid
        assert interruption.barge_in_stop_s is not None  # the caller heard the agent stop
        assert "prepaid label" not in policy.heard.lower()  # the end was never played
        assert "shipped" in record.turns[-1]["reply"].lower(), record.turns
        assert words_heard(record.turns[-1]["reply"], interruption.heard) >= 0.5, interruption
        await talk.call.hangup()
        await assert_nothing_left(inspector, talk.manager)
    assert REGISTRY.get_sample_value("voice_agent_barge_ins_total", labels) == barge_ins + 1
    assert REGISTRY.get_sample_value("voice_agent_turns_total", labels) == turns + 2


@pytest.mark.parametrize(("via", "gain_db"), [("sip", -12.0), ("local", -12.0)])
async def test_a_quiet_caller_interrupts_too(
    talk_to: TalkTo, inspector: AriClient, via: str, gain_db: float,
) -> None:
    """12 dB under the test voice (and 6 dB more on a Local channel): still a barge-in,
    and the words are understood."""
    async with talk_to("100", via=via, gain_db=gain_db) as talk:
        await talk.caller.run([
            Step("What is your return policy?"),
            Step(ORDER_QUESTION, barge_in_after=2.0),
        ])
        [*_, interruption] = await talk.caller.finish()
        record = talk.session.record
        assert record.barge_ins, "no barge-in was detected"
        cut = record.barge_ins[0]
        assert cut["onset"] < cut["paused"] <= cut["detected"] <= cut["stopped"]
        assert interruption.barge_in_stop_s is not None
        assert "shipped" in record.turns[-1]["reply"].lower(), record.turns
        await talk.call.hangup()
        await assert_nothing_left(inspector, talk.manager)


async def test_a_backchannel_pauses_the_reply_which_then_plays_to_its_end(
    talk_to: TalkTo, inspector: AriClient,
) -> None:
    async with talk_to("18005551234") as talk:
        await talk.caller.run([Step("What is your return policy?")])
        await asyncio.sleep(1.5)
        await talk.call.say(speech(BACKCHANNEL))
        [*_, policy] = await talk.caller.finish()
        record = talk.session.record
        assert not record.barge_ins, record.barge_ins
        turn = record.turns[-1]
        assert [p["reason"] for p in turn.get("pauses", [])] == ["backchannel"], turn
        assert "played" in turn and not turn.get("interrupted")
        last_sentence = turn["reply"].rsplit(". ", 1)[-1]
        assert words_heard(last_sentence, policy.heard) >= 0.5, policy  # it reached the caller
        await talk.call.hangup()
        await assert_nothing_left(inspector, talk.manager)


async def test_a_cough_during_a_reply_does_not_interrupt_it(
    talk_to: TalkTo, inspector: AriClient,
) -> None:
    """100 ms of loud noise (a cough) while the agent talks: the reply plays to its end."""
    async with talk_to("18005551234") as talk:
        await talk.caller.run([Step("What is your return policy?")])
        await asyncio.sleep(1.5)
        rng = np.random.default_rng(7)
        await talk.call.say((rng.standard_normal(1600) * 6000).astype(np.int16))  # 100 ms
        [*_, policy] = await talk.caller.finish()
        record = talk.session.record
        assert not record.barge_ins, record.barge_ins
        assert "played" in record.turns[-1] and not record.turns[-1].get("interrupted")
        last_sentence = record.turns[-1]["reply"].rsplit(". ", 1)[-1]
        assert words_heard(last_sentence, policy.heard) >= 0.5, policy  # it reached the caller
        await talk.call.hangup()
        await assert_nothing_left(inspector, talk.manager)


async def test_hangup_while_the_agent_speaks_leaves_nothing(
    talk_to: TalkTo, inspector: AriClient,
) -> None:
    async with talk_to("18005555678") as talk:
        await talk.caller.ear.first_speech(talk.call.answered_at)
        await asyncio.sleep(0.3)
        await talk.call.hangup()  # mid-greeting
        await assert_nothing_left(inspector, talk.manager)
        assert "hung up" in talk.manager.completed[-1].end_reason
        assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("call-")]


async def test_hangup_while_the_agent_thinks_leaves_nothing(
    talk_to: TalkTo, inspector: AriClient,
) -> None:
    async with talk_to("18005551234") as talk:
        await talk.caller.greeting()
        session = talk.session
        await talk.call.say(speech(ORDER_QUESTION))
        await eventually(lambda: session.state == CallState.THINKING, timeout=10,
                         what="the agent started on the question")
        await talk.call.hangup()  # before the reply could be spoken
        await assert_nothing_left(inspector, talk.manager)
        record = talk.manager.completed[-1]
        assert "hung up" in record.end_reason
        assert not record.turns or "first_audio" not in record.turns[-1]
        assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("call-")]


async def test_dtmf_hash_repeats_and_zero_transfers_to_the_operator(
    talk_to: TalkTo, inspector: AriClient,
) -> None:
    async with talk_to("18005555678") as talk:
        await talk.caller.greeting()
        session = talk.session
        caller_leg = session.channel_id

        await talk.caller.step(Step(dtmf="#"))
        await eventually(lambda: any(t.get("intent") == "repeat" for t in session.record.turns),
                         what="# repeated the last reply")
        assert "HealthPlus" in session.record.turns[-1]["reply"]  # the greeting again

        await talk.call.send_dtmf("0")
        await eventually(lambda: not talk.manager.sessions, timeout=20,
                         what="session handed over")
        assert talk.manager.completed[-1].end_reason == \
            "transferred to 9200@voice-agent-operators"
        channel = await inspector.request("GET", f"/channels/{caller_leg}")
        assert channel["dialplan"]["context"] == "voice-agent-operators"  # alive, with a person
        await talk.call.hangup()
        await assert_nothing_left(inspector, talk.manager)


@pytest.fixture(scope="module")
def llm_server(local_asterisk: LocalAsterisk, settings: Settings) -> Iterator[LocalLlmServer]:
    with local_llm_server(settings, 8096) as server:
        yield server


async def test_replies_come_from_the_llm_server_when_one_is_configured(
    talk_to: TalkTo, inspector: AriClient, llm_server: LocalLlmServer,
) -> None:
    """A real OpenAI-compatible server (llama-server + SmolLM2) writes the reply, streamed."""
    async with talk_to("18005551234", llm_url=llm_server.base_url,
                       llm_model=llm_server.model, llm_max_tokens=60) as talk:
        await talk.caller.run([Step("What are your opening hours?")])
        [*_, answer] = await talk.caller.finish()
        turn = talk.session.record.turns[-1]
        assert turn["llm"] and turn["reply"].strip(), turn
        assert answer.latency_s is not None and answer.heard.strip()  # it was spoken
        await talk.call.hangup()
        await assert_nothing_left(inspector, talk.manager)


async def test_a_dead_llm_server_leaves_the_embedded_engine_answering(
    talk_to: TalkTo, inspector: AriClient,
) -> None:
    async with talk_to("18005551234", llm_url="http://127.0.0.1:9/v1", llm_model="gone") as talk:
        await talk.caller.run([Step(ORDER_QUESTION)])
        [*_, answer] = await talk.caller.finish()
        turn = talk.session.record.turns[-1]
        assert turn["llm"] and "shipped" in turn["reply"], turn  # the engine's answer
        assert words_heard(turn["reply"], answer.heard) >= 0.5, answer
        await talk.call.hangup()
        await assert_nothing_left(inspector, talk.manager)
