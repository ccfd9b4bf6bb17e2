"""The AGI fallback against the real Asterisk: calls reach it when the Stasis app is absent.

The FastAGI server runs in the test's event loop on the port the shipped dialplan
names (4573), with the real models; the simulated phone places genuine SIP calls
into ``[voice-agent-ari]``. With no ARI agent connected, ``Stasis()`` fails and
the dialplan falls back to ``AGI(agi://127.0.0.1:4573/<tenant>)``.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import eventually
from tests.integration.conftest import AgentFactory, assert_nothing_left
from voice_agent.agi.asterisk_agi import FastAgiServer, running_agi_server
from voice_agent.agi.sequential import SpeechServices
from voice_agent.ari.asterisk_ari import AriClient
from voice_agent.config import Settings
from voice_agent.dev.local_asterisk import LocalAsterisk
from voice_agent.dev.sim.caller import place_local_call
from voice_agent.dev.sim.conversation import Ear, words_heard
from voice_agent.dev.sim.phone import PhoneCall, SimPhone
from voice_agent.dev.sim.signals import speech
from voice_agent.providers.stt import WhisperStt
from voice_agent.providers.tts import PiperTts
from voice_agent.tenants.data import TenantDatabases

#: Number -> (tenant, what the caller asks, a phrase the agent's reply text must contain).
CASES = {
    "100": ("techstore", "Where is my order one two three four five?", "shipped"),
    "18005551234": ("techstore", "Where is my order one two three four five?", "shipped"),
    "18005555678": ("healthplus", "What are your opening hours?", "Downtown"),
    "18005559999": ("edulearn", "I want to enrol in Python Basics.", "Python Basics"),
}


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> SpeechServices:
    """Models loaded once for the module (they are not bound to an event loop)."""
    db = TenantDatabases(tmp_path_factory.mktemp("agi-tenants"))
    return SpeechServices(db, WhisperStt(), PiperTts())


@pytest.fixture
async def agi_server(local_asterisk: LocalAsterisk, settings: Settings,
                     services: SpeechServices) -> AsyncIterator[FastAgiServer]:
    await services.warm_up()
    async with running_agi_server(settings, services=services) as server:
        yield server


@pytest.fixture
async def no_ari_agent(inspector: AriClient, settings: Settings) -> None:
    """The precondition of the fallback: nobody serves the Stasis app on this Asterisk."""
    apps = [app["name"] for app in await inspector.request("GET", "/applications")]
    assert settings.app_name not in apps, (
        f"an ARI agent is connected as {settings.app_name!r}: calls would not fall back to AGI")


def audio_files(settings: Settings) -> list[Path]:
    return sorted(settings.agi_audio_host_path().iterdir())


async def nothing_left(server: FastAgiServer, inspector: AriClient, settings: Settings) -> None:
    """No live AGI session, no per-turn file, and no channel left in Asterisk."""
    async def clean() -> bool:
        return (not server.sessions and not audio_files(settings)
                and not await inspector.list_channels())
    try:
        await eventually(clean, timeout=10, what="AGI sessions, files and channels gone")
    except AssertionError:
        channels = [c["name"] for c in await inspector.list_channels()]
        raise AssertionError(f"left behind: sessions={list(server.sessions)} "
                             f"files={audio_files(settings)} channels={channels}") from None


Dialled = tuple[PhoneCall, Ear]


@pytest.fixture
def dial(settings: Settings) -> Callable[[str], contextlib.AbstractAsyncContextManager[Dialled]]:
    """``async with dial(number) as (call, ear)``: a SIP call with an ear on the caller side."""

    @contextlib.asynccontextmanager
    async def connect(number: str) -> AsyncIterator[Dialled]:
        async with SimPhone(settings.ari_url, settings.ari_user, settings.ari_secret()) as phone:
            call = await phone.dial(number, audio=True, via="sip")
            ear = Ear(call)
            try:
                yield call, ear
            finally:
                ear.close()

    return connect


@pytest.mark.parametrize("number", CASES)
async def test_without_ari_each_number_is_answered_by_agi_and_completes_a_turn(
    number: str, no_ari_agent: None, agi_server: FastAgiServer, dial, inspector: AriClient,
    settings: Settings, whisper: WhisperStt,
) -> None:
    tenant, question, reply_phrase = CASES[number]
    async with dial(number) as (call, ear):
        assert call.tenant == tenant  # set by the AGI session right after ANSWER
        session = next(iter(agi_server.sessions.values()))
        assert session.record.tenant == tenant

        await ear.end_of_speech(time.monotonic())  # the greeting
        asked = time.monotonic()
        # A real phone keeps sending (silent) audio after the words; RECORD FILE's
        # silence detector counts silent frames, not gaps, so the phone sends them too.
        await call.say(np.concatenate([speech(question), np.zeros(3 * 16000, np.int16)]))
        # Sequential loop: 2 s of silence end the turn, then STT, then the whole reply.
        await ear.end_of_speech(asked + 0.5, silence=1.0, timeout=40)
        answer = (await whisper.transcribe(ear.audio(asked))).text.lower()

        turn = session.record.turns[-1]
        assert reply_phrase in turn["reply"], turn
        assert words_heard(turn["reply"], answer) >= 0.5, answer  # the caller heard it
        assert (turn["speech_end"] <= turn["record_end"] <= turn["stt_final"]
                <= turn["reply_ready"] <= turn["first_audio"] <= turn["played"])
        await call.hangup()
    await nothing_left(agi_server, inspector, settings)
    assert agi_server.completed[-1].end_reason == "caller hung up"


async def test_caller_hangs_up_during_record(
    no_ari_agent: None, agi_server: FastAgiServer, dial, inspector: AriClient,
    settings: Settings,
) -> None:
    async with dial("18005551234") as (call, ear):
        await ear.end_of_speech(time.monotonic())  # greeting over: recording
        session = next(iter(agi_server.sessions.values()))
        assert session.record.states[-1].value == "listening" and not session.record.turns
        await call.hangup()
    await nothing_left(agi_server, inspector, settings)
    record = agi_server.completed[-1]
    assert record.end_reason == "caller hung up"
    assert record.states[-1].value == "closed"


async def test_caller_hangs_up_during_playback(
    no_ari_agent: None, agi_server: FastAgiServer, dial, inspector: AriClient,
    settings: Settings,
) -> None:
    async with dial("18005555678") as (call, ear):
        await ear.first_speech(time.monotonic(), timeout=15)  # the greeting is playing
        session = next(iter(agi_server.sessions.values()))
        assert session.record.states[-1].value == "greeting"
        await call.hangup()  # mid-greeting: STREAM FILE returns -1, then HANGUP
    await nothing_left(agi_server, inspector, settings)
    assert agi_server.completed[-1].end_reason == "caller hung up"


async def test_dtmf_zero_hands_an_agi_caller_to_the_operator(
    no_ari_agent: None, agi_server: FastAgiServer, dial, inspector: AriClient,
    settings: Settings,
) -> None:
    async with dial("18005555678") as (call, ear):
        await ear.end_of_speech(time.monotonic())
        caller_leg = call.far_end_id
        await call.send_dtmf("0")
        await eventually(lambda: bool(agi_server.completed), timeout=20,
                         what="AGI session handed over")
        assert agi_server.completed[-1].end_reason == "transferred to 9200@voice-agent-operators"
        channel = await inspector.request("GET", f"/channels/{caller_leg}")
        assert channel["dialplan"]["context"] == "voice-agent-operators"  # alive, with a person
        await call.hangup()
    await nothing_left(agi_server, inspector, settings)


@pytest.fixture
def full_disk(settings: Settings, local_asterisk: LocalAsterisk) -> Iterator[Settings]:
    """Settings whose AGI audio directory is a real, nearly full 4 MiB tmpfs."""
    asterisk_dir = "/var/spool/asterisk/va-full-disk-test"
    host_dir = settings.asterisk_root / asterisk_dir.lstrip("/")
    host_dir.mkdir(exist_ok=True)
    owner = host_dir.parent.stat()
    subprocess.run(["mount", "-t", "tmpfs", "-o",
                    f"size=4m,mode=0770,uid={owner.st_uid},gid={owner.st_gid}", "tmpfs",
                    str(host_dir)], check=True)
    try:
        (host_dir / "filler.bin").write_bytes(bytes(3_500_000))  # not a call file: it stays
        yield settings.model_copy(update={"agi_audio_dir": asterisk_dir})
    finally:
        subprocess.run(["umount", str(host_dir)], check=True)
        host_dir.rmdir()


async def test_a_full_audio_disk_sends_the_agi_caller_to_the_operator_with_an_apology(
    no_ari_agent: None, full_disk: Settings, services: SpeechServices, dial,
    inspector: AriClient, whisper: WhisperStt,
) -> None:
    await services.warm_up()
    async with running_agi_server(full_disk, services=services) as server, \
            dial("18005555678") as (call, ear):
        start = time.monotonic()
        caller_leg = call.far_end_id
        await eventually(lambda: bool(server.completed), timeout=20,
                         what="AGI session handed over")
        record = server.completed[-1]
        assert record.end_reason == ("audio directory full; "
                                     "transferred to 9200@voice-agent-operators")
        assert record.errors[0]["stage"] == "audio" and "is full" in record.errors[0]["error"]
        heard = (await whisper.transcribe(ear.audio(start))).text.lower()
        assert "sorry" in heard, heard  # Asterisk's own im-sorry: it needs no disk space
        channel = await inspector.request("GET", f"/channels/{caller_leg}")
        assert channel["dialplan"]["context"] == "voice-agent-operators"  # a person takes it
        await call.hangup()
    assert [p.name for p in full_disk.agi_audio_host_path().iterdir()] == ["filler.bin"]


async def test_with_the_ari_agent_connected_the_numbers_go_to_ari_not_agi(
    agi_server: FastAgiServer, start_agent: AgentFactory, settings: Settings,
    inspector: AriClient,
) -> None:
    async with start_agent() as manager:
        for number, (tenant, *_) in CASES.items():
            result = await place_local_call(settings.ari_url, settings.ari_user,
                                            settings.ari_secret(), number, hold_seconds=2.0)
            assert result.answered and result.tenant == tenant, result.detail
        # A session completes a moment after its caller hung up.
        await eventually(lambda: len(manager.completed) == len(CASES),
                         what="every ARI session closed")
        assert [record.tenant for record in manager.completed] == [
            tenant for tenant, *_ in CASES.values()]
        await assert_nothing_left(inspector, manager)
    assert not agi_server.completed and not agi_server.rejected and not agi_server.sessions
