"""Models on servers, on real calls: speech through real Wyoming servers, and the
failure rules (fallback before the caller heard anything, apology after, the
watchdog) with servers that are dead, hang or break off mid-reply.

The speech servers are the maintained PyPI ones (``wyoming-faster-whisper``,
``wyoming-piper``) run as separate processes from the packaged weights; the
misbehaving servers are small fakes, because a real server will not misbehave
on cue.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.event import Event
from wyoming.tts import Synthesize

from tests.fakes import WyomingServers, silent_tcp_server
from tests.helpers import closed_port_url
from tests.integration.conftest import TalkTo, assert_nothing_left
from voice_agent.ari.asterisk_ari import AriClient
from voice_agent.calls.record import CallState
from voice_agent.dev.model_servers import wyoming_speech_servers
from voice_agent.dev.sim.conversation import Step, words_heard
from voice_agent.dialog.llm_dialog import APOLOGY
from voice_agent.providers.chain import TtsChain
from voice_agent.providers.tts import PiperTts
from voice_agent.providers.wyoming import WyomingStt, WyomingTts

ORDER_QUESTION = "Where is my order one two three four five?"
RETURNS_QUESTION = "What is your return policy?"
STOCK_QUESTION = "Do you have a laptop in stock?"


@pytest.fixture(scope="module")
def speech_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    with wyoming_speech_servers(tmp_path_factory.mktemp("wyoming")) as urls:
        yield urls


def agent_of(talk: object) -> object:
    return talk.manager.agent  # type: ignore[attr-defined]


async def test_a_call_heard_and_answered_by_wyoming_speech_servers(
    talk_to: TalkTo, inspector: AriClient, speech_servers: tuple[str, str],
) -> None:
    stt_url, tts_url = speech_servers
    async with talk_to("18005551234", stt_url=stt_url, tts_url=tts_url,
                       embedded_fallback=False) as talk:
        default = agent_of(talk)._default  # type: ignore[attr-defined]
        assert isinstance(default.stt, WyomingStt) and isinstance(default.tts, WyomingTts)
        greeting = await talk.caller.greeting()  # spoken by wyoming-piper
        assert words_heard(talk.session.tenant.greeting, greeting.heard) >= 0.5, greeting
        await talk.caller.step(Step(ORDER_QUESTION))  # transcribed by wyoming-faster-whisper
        [_, answer] = await talk.caller.finish()
        turn = talk.session.record.turns[-1]
        assert "shipped" in turn["reply"], turn
        assert words_heard(turn["reply"], answer.heard) >= 0.5, answer
        assert not talk.session.record.errors
        await talk.call.hangup()
        await assert_nothing_left(inspector, talk.manager)


async def test_dead_servers_hand_every_stage_to_the_embedded_models(
    talk_to: TalkTo, inspector: AriClient, caplog: pytest.LogCaptureFixture,
) -> None:
    dead_http = closed_port_url()
    dead_tcp = dead_http.replace("http://", "tcp://").removesuffix("/v1")
    async with talk_to("18005551234", stt_url=dead_tcp, tts_url=dead_http) as talk:
        assert any("does not answer at start" in r.message and dead_tcp in r.message
                   for r in caplog.records)
        greeting = await talk.caller.greeting()
        assert words_heard(talk.session.tenant.greeting, greeting.heard) >= 0.5, greeting
        await talk.caller.step(Step(STOCK_QUESTION))
        [_, answer] = await talk.caller.finish()
        assert "in stock" in talk.session.record.turns[-1]["reply"], talk.session.record.turns
        errors = talk.session.record.errors
        assert {(e["stage"], e["handled_by"]) for e in errors} == {
            ("stt", "whisper"), ("tts", "piper")}, errors
        port = dead_tcp.rsplit(":", 1)[1]
        assert all(f"127.0.0.1:{port}" in e["provider"] for e in errors), errors
        await talk.call.hangup()
        await assert_nothing_left(inspector, talk.manager)


async def test_a_hanging_tts_server_times_out_before_the_caller_waits_long(
    talk_to: TalkTo, inspector: AriClient, caplog: pytest.LogCaptureFixture,
) -> None:
    url, server = await silent_tcp_server()
    try:
        async with talk_to("18005551234", tts_url=url, tts_first_audio_timeout=1.0) as talk:
            tts = agent_of(talk)._default.tts  # type: ignore[attr-defined]
            assert isinstance(tts, TtsChain)
            await talk.caller.step(Step(STOCK_QUESTION))
            [*_, answer] = await talk.caller.finish()
            assert answer.latency_s is not None and answer.latency_s < 5, answer
            assert "in stock" in talk.session.record.turns[-1]["reply"]
            # It timed out once (pre-synthesizing the apology at start), then cooled down:
            # the greeting and the reply did not wait for it again.
            timeouts = [r for r in caplog.records if "sent no audio within 1.0 s" in r.message]
            assert len(timeouts) == 1, [r.message for r in caplog.records]
            await talk.call.hangup()
            await assert_nothing_left(inspector, talk.manager)
    finally:
        server.close()


@pytest.fixture
async def breaking_tts() -> AsyncIterator[str]:
    """A Wyoming TTS that speaks with Piper, but breaks off the return policy after its
    first chunk (a server that dies mid-reply)."""
    piper = PiperTts()
    await piper.load()
    form = {"rate": 16000, "width": 2, "channels": 1}

    async def script(event: Event) -> list[Event] | None:
        if not Synthesize.is_type(event.type):
            return None
        text = Synthesize.from_event(event).text
        events = [AudioStart(**form).event()] + [
            AudioChunk(audio=c.astype("<i2").tobytes(), **form).event()
            async for c in piper.stream(text)]
        if "within 30 days" in text:
            return events[:2]  # then the connection closes: no AudioStop
        return [*events, AudioStop().event()]

    servers = WyomingServers()
    yield await servers.start(script)
    await servers.stop()


async def test_a_tts_server_dying_mid_reply_ends_it_with_an_apology(
    talk_to: TalkTo, inspector: AriClient, breaking_tts: str,
) -> None:
    async with talk_to("18005551234", tts_url=breaking_tts) as talk:
        await talk.caller.greeting()
        await talk.caller.step(Step(RETURNS_QUESTION))
        [*_, answer] = await talk.caller.finish()
        assert "sorry" in answer.heard.lower(), answer  # the apology, heard at the phone
        assert words_heard(APOLOGY, answer.heard) >= 0.4, answer
        (error,) = talk.session.record.errors
        assert error["stage"] == "tts" and error["handled_by"] == "apology", error
        assert talk.session.state is CallState.LISTENING
        await talk.caller.step(Step(STOCK_QUESTION))  # and the call goes on
        [*_, next_answer] = await talk.caller.finish()
        assert "in stock" in talk.session.record.turns[-1]["reply"]
        assert words_heard(talk.session.record.turns[-1]["reply"], next_answer.heard) >= 0.5
        await talk.call.hangup()
        await assert_nothing_left(inspector, talk.manager)


async def test_the_watchdog_frees_a_call_whose_stt_server_hangs(
    talk_to: TalkTo, inspector: AriClient,
) -> None:
    url, server = await silent_tcp_server()
    try:
        # The STT deadline is set beyond the watchdog, so the watchdog is what fires.
        async with talk_to("18005551234", stt_url=url, stt_timeout=60.0,
                           embedded_fallback=False, turn_watchdog_seconds=3.0) as talk:
            assert isinstance(agent_of(talk)._default.stt, WyomingStt)  # type: ignore[attr-defined]
            await talk.caller.greeting()
            await talk.caller.step(Step(STOCK_QUESTION))
            [*_, answer] = await talk.caller.finish()
            assert "sorry" in answer.heard.lower(), answer
            (error,) = talk.session.record.errors
            assert error["error"].startswith("watchdog: no progress for 3 s"), error
            assert talk.session.state is CallState.LISTENING
            await talk.call.hangup()
            await assert_nothing_left(inspector, talk.manager)
    finally:
        server.close()

