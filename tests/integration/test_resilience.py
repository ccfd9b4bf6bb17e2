"""Network trouble and restarts: the agent must heal by itself."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.helpers import ari_credentials, eventually
from tests.integration.conftest import AgentFactory, TalkTo, assert_nothing_left
from tests.integration.tcp_proxy import TcpProxy
from voice_agent.ari.ari_audio_bridge import media_channel_prefix
from voice_agent.ari.asterisk_ari import AriAuthError, AriClient, AriConnectionError
from voice_agent.ari.call_session import MEDIA_LOST_PROMPTS
from voice_agent.calls.record import CallState
from voice_agent.config import Settings
from voice_agent.dev.local_asterisk import LocalAsterisk
from voice_agent.dev.sim.caller import place_local_call
from voice_agent.dev.sim.conversation import ScriptedCaller, Step, words_heard
from voice_agent.dev.sim.phone import SimPhone
from voice_agent.providers.stt import WhisperStt


@pytest.mark.parametrize(("how", "end_reason"), [
    ("graceful", "caller hung up (StasisEnd)"),
    ("crash", "channel gone after ARI reconnect"),  # only reconcile can tell
])
async def test_agent_survives_asterisk_restart(
    how: str, end_reason: str, agent, settings: Settings, local_asterisk: LocalAsterisk,
    inspector: AriClient
) -> None:
    live_call = asyncio.create_task(
        place_local_call(*ari_credentials(settings), "100", hold_seconds=30))
    # Wait until the call is idle (greeting over): a REST call in flight at the crash
    # would end the session with that error instead, which is also fine but racy.
    await eventually(lambda: any(s.state == CallState.LISTENING for s in agent.sessions.values()),
                     what="call in progress, greeting done")
    before = agent.ari.connections

    # graceful: `core stop now` hangs calls up first; crash: SIGKILL, nothing is said.
    await asyncio.to_thread(local_asterisk.down if how == "graceful" else local_asterisk.kill)
    await asyncio.to_thread(local_asterisk.start)

    await eventually(lambda: agent.ari.connections > before and agent.ari.connected.is_set(),
                     timeout=20, what="agent reconnected by itself")
    # The call died with the old Asterisk; its session must be closed either way.
    await eventually(lambda: not agent.sessions, what="stale session closed")
    assert agent.completed[-1].end_reason == end_reason
    live_call.cancel()
    await asyncio.gather(live_call, return_exceptions=True)

    result = await place_local_call(*ari_credentials(settings), "18005555678", hold_seconds=2)
    assert result.answered and result.tenant == "healthplus"
    await assert_nothing_left(inspector, agent)


async def test_asterisk_killed_mid_reply_then_the_next_caller_completes_a_task(
    start_agent: AgentFactory, settings: Settings, local_asterisk: LocalAsterisk,
    inspector: AriClient, whisper: WhisperStt,
) -> None:
    """SIGKILL while the agent is speaking to a caller (models loaded, audio streaming):
    the agent reconnects by itself, closes the dead call, and the next caller gets an
    answer heard at the phone."""
    async with start_agent(agent="conversation") as manager:
        async with SimPhone(settings.ari_url, settings.ari_user, settings.ari_secret()) as phone:
            call = await phone.dial("18005551234", via="sip", audio=True)
            async with ScriptedCaller(call, whisper) as caller:
                await caller.greeting()
                await caller.step(Step("What is your return policy?"))  # a long reply
                session = next(iter(manager.sessions.values()))
                await eventually(lambda: session.state is CallState.SPEAKING, what="mid-reply")
                before = manager.ari.connections
                await asyncio.to_thread(local_asterisk.kill)
        await asyncio.to_thread(local_asterisk.start)
        await eventually(lambda: manager.ari.connections > before and
                         manager.ari.connected.is_set(), timeout=20, what="agent reconnected")
        await eventually(lambda: not manager.sessions, what="the dead call closed")
        # closed by reconcile after the reconnect, or at once by a REST request of the
        # reply (media, playback) that met the dead Asterisk: both say why
        reason = manager.completed[-1].end_reason
        assert (reason == "channel gone after ARI reconnect"
                or reason.startswith("error: cannot reach Asterisk ARI")), reason

        async with SimPhone(settings.ari_url, settings.ari_user, settings.ari_secret()) as phone:
            call = await phone.dial("18005551234", via="sip", audio=True)
            async with ScriptedCaller(call, whisper) as caller:
                await caller.run([Step("Where is my order one two three four five?")])
                [*_, answer] = await caller.finish()
            turn = manager.sessions[next(iter(manager.sessions))].record.turns[-1]
            assert "shipped" in turn["reply"], turn
            assert words_heard(turn["reply"], answer.heard) >= 0.5, answer
            await call.hangup()
        await assert_nothing_left(inspector, manager)


async def test_agent_survives_a_dropped_events_socket(
    start_agent: AgentFactory, settings: Settings, inspector: AriClient
) -> None:
    host, port = "127.0.0.1", int(settings.ari_url.rsplit(":", 1)[1])
    async with TcpProxy(host, port) as proxy, start_agent(ari_url=proxy.url) as manager:
        # A call that is live while the link flaps must keep going.
        live_call = asyncio.create_task(
            place_local_call(*ari_credentials(settings), "18005559999", hold_seconds=4))
        await eventually(lambda: len(manager.sessions) == 1, what="call in progress")
        session = next(iter(manager.sessions.values()))
        # Set up and greeted: no REST request of the call is in flight when the link drops
        # (one cut mid-request fails that call's setup, a different case).
        await eventually(lambda: session.state is CallState.LISTENING, what="call set up")

        assert proxy.drop_all() >= 1
        await eventually(lambda: manager.ari.connections >= 2 and manager.ari.connected.is_set(),
                         timeout=10, what="events socket reconnected")
        assert session.channel_id in manager.sessions, "a live call must survive reconcile"

        first = await live_call
        assert first.answered and first.tenant == "edulearn" and first.hung_up_by == "caller"
        await eventually(lambda: not manager.sessions, what="session closed after hang-up")
        assert "hung up" in manager.completed[-1].end_reason

        result = await place_local_call(*ari_credentials(settings), "100", hold_seconds=2)
        assert result.answered and result.tenant == "techstore"
        await assert_nothing_left(inspector, manager)


async def test_wrong_password_is_a_clear_auth_error(
    local_asterisk: LocalAsterisk, settings: Settings
) -> None:
    async with AriClient(settings.ari_url, settings.ari_user, "wrong", "va-test") as ari:
        with pytest.raises(AriAuthError, match="ari.conf"):
            await ari.asterisk_info()
        with pytest.raises(AriAuthError, match="credentials"):
            async for _ in ari.events():
                pass


async def test_wrong_port_is_a_clear_connection_error(settings: Settings) -> None:
    async with AriClient("http://127.0.0.1:1", settings.ari_user, "x", "va-test") as ari:
        with pytest.raises(AriConnectionError, match="cannot reach Asterisk ARI"):
            await ari.list_channels()


async def test_agent_with_wrong_password_fails_fast(start_agent: AgentFactory) -> None:
    from pydantic import SecretStr
    with pytest.raises(AriAuthError):
        async with start_agent(ari_password=SecretStr("wrong")):
            pass


async def test_agent_start_removes_what_a_crashed_run_left(
    start_agent: AgentFactory, settings: Settings, inspector: AriClient
) -> None:
    """A bridge named like ours but owned by no session (a killed run's) is removed."""
    await inspector.create_bridge(f"{settings.app_name}-bridge-left-by-a-crash")
    await inspector.create_bridge("someone-elses-bridge")
    try:
        async with start_agent() as manager:
            await eventually(lambda: manager.orphans_removed == 1, what="orphan removed")
            bridges = {b["id"] for b in await inspector.list_bridges()}
            assert f"{settings.app_name}-bridge-left-by-a-crash" not in bridges
            assert "someone-elses-bridge" in bridges
    finally:
        await inspector.destroy_bridge("someone-elses-bridge")


async def test_periodic_check_removes_a_leftover_and_spares_live_calls(
    start_agent: AgentFactory, settings: Settings, inspector: AriClient
) -> None:
    """A bridge of ours that appears while connected (no reconnect) is cleaned up by the janitor."""
    async with start_agent(reconcile_seconds=0.3, agent="echo") as manager:
        live_call = asyncio.create_task(
            place_local_call(*ari_credentials(settings), "100", hold_seconds=4))
        await eventually(lambda: any(s.state == CallState.LISTENING
                                     for s in manager.sessions.values()), what="call up")
        leftover = f"{settings.app_name}-bridge-failed-teardown"
        await inspector.create_bridge(leftover)
        await eventually(lambda: manager.orphans_removed >= 1, what="leftover removed")
        assert leftover not in {b["id"] for b in await inspector.list_bridges()}
        assert len(manager.sessions) == 1, "the live call's own bridge and media stay"
        result = await live_call
        assert result.answered and result.hung_up_by == "caller"
        await eventually(lambda: not manager.sessions, what="session closed")
        await assert_nothing_left(inspector, manager)


async def test_janitor_hangs_up_a_caller_left_by_an_agent_that_died(
    start_agent: AgentFactory, settings: Settings, inspector: AriClient
) -> None:
    """A caller answered by an agent that then vanished is not left in silence for ever."""
    answered = asyncio.Event()
    async with AriClient(*ari_credentials(settings), settings.app_name) as previous:

        async def previous_agent() -> None:  # answers, then dies without hanging up
            async for event in previous.events():
                if event.get("type") == "StasisStart" and not answered.is_set():
                    await previous.answer(event["channel"]["id"])
                    answered.set()

        running = asyncio.create_task(previous_agent())
        await eventually(previous.connected.is_set, what="previous agent connected")
        call = asyncio.create_task(
            place_local_call(*ari_credentials(settings), "100", hold_seconds=60))
        await asyncio.wait_for(answered.wait(), timeout=10)
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    async with start_agent(reconcile_seconds=0.3) as manager:
        await eventually(lambda: manager.stranded_removed == 1, what="stranded caller hung up")
        result = await call
        assert result.answered and result.hung_up_by == "agent"
        assert not manager.sessions
        await assert_nothing_left(inspector, manager)


@pytest.mark.parametrize("transport", ["rtp", "websocket"])
async def test_a_media_channel_ended_mid_call_is_told_to_the_caller_and_the_call_ends(
    talk_to: TalkTo, inspector: AriClient, settings: Settings, transport: str,
) -> None:
    """Asterisk drops the agent's externalMedia channel while ARI stays up: the caller
    hears an apology and is hung up, not left on a line where nobody answers."""
    async with talk_to("18005551234", media_transport=transport) as talk:
        await talk.caller.greeting()
        prefix = media_channel_prefix(settings.app_name)
        (media,) = [c["id"] for c in await inspector.list_channels()
                    if c["id"].startswith(prefix)]
        dropped = time.monotonic()
        await inspector.hangup(media)
        assert await talk.call.wait_ended(30), "the call was left open"
        await talk.call.hangup()  # the phone releases its own side (its media, its bridge)
        await assert_nothing_left(inspector, talk.manager)
        record = talk.manager.completed[-1]
        assert record.end_reason == "media connection lost"
        assert [prompt for prompt, _ in record.prompts][-2:] == list(MEDIA_LOST_PROMPTS)
        assert talk.caller.ear.loud_times(dropped), "the caller heard nothing"
