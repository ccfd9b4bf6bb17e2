"""Call control against the real Asterisk: routing, prompts, DTMF, limits, cleanup."""

from __future__ import annotations

import asyncio

import pytest

from tests.helpers import ari_credentials, eventually
from tests.integration.conftest import AgentFactory, assert_nothing_left
from voice_agent.ari.ari_session_manager import SessionManager
from voice_agent.ari.asterisk_ari import AriClient
from voice_agent.calls.record import CallState
from voice_agent.config import Settings
from voice_agent.dev.sim.caller import place_local_call, place_sip_call

NUMBERS = {
    "100": "techstore",
    "18005551234": "techstore",
    "18005555678": "healthplus",
    "18005559999": "edulearn",
}
GREETING_SECONDS = 2.0  # hello-world is 1.4 s: hold the line past it


def _assert_served(manager: SessionManager, tenant: str, channel_prefix: str) -> None:
    record = manager.completed[-1]
    assert record.tenant == tenant
    assert record.channel_name.startswith(channel_prefix)
    assert record.states == [CallState.STARTING, CallState.GREETING, CallState.LISTENING,
                             CallState.CLOSED]
    assert record.prompts == [("hello-world", "done")], "greeting was not played to the end"
    assert "hung up" in record.end_reason
    assert record.bridges, "session should have created its bridge"


@pytest.mark.parametrize("number", NUMBERS)
async def test_local_call_reaches_its_tenant(
    number: str, agent: SessionManager, settings: Settings, inspector: AriClient
) -> None:
    result = await place_local_call(*ari_credentials(settings), number,
                                    hold_seconds=GREETING_SECONDS)
    assert result.answered, result.detail
    assert result.tenant == NUMBERS[number]
    assert result.hung_up_by == "caller"
    await assert_nothing_left(inspector, agent)
    _assert_served(agent, NUMBERS[number], f"Local/{number}@voice-agent-ari")


@pytest.mark.parametrize("number", NUMBERS)
async def test_sip_call_reaches_its_tenant(
    number: str, agent: SessionManager, settings: Settings, inspector: AriClient
) -> None:
    result = await place_sip_call(*ari_credentials(settings), number,
                                  sip_target=f"127.0.0.1:{settings.sip_port}",
                                  hold_seconds=GREETING_SECONDS)
    assert result.answered, result.detail
    assert result.tenant == NUMBERS[number]
    await assert_nothing_left(inspector, agent)
    _assert_served(agent, NUMBERS[number], "PJSIP/test-caller-")


@pytest.mark.parametrize(("number", "why"), [("990", "unknown tenant 'nosuchtenant'"),
                                             ("991", "without a tenant argument")])
async def test_unknown_or_missing_tenant_hears_prompt_and_is_hung_up(
    number: str, why: str, agent: SessionManager, settings: Settings, inspector: AriClient
) -> None:
    result = await place_local_call(*ari_credentials(settings), number,
                                    context="voice-agent-test", hold_seconds=10)
    assert result.answered
    assert result.hung_up_by == "agent"
    assert result.tenant is None
    assert agent.calls_total == 0
    rejected = agent.rejected[-1]
    assert why in rejected.reason
    assert rejected.prompt == settings.unknown_tenant_prompt
    assert rejected.prompt_state == "done"
    await assert_nothing_left(inspector, agent)


async def test_unknown_extension_is_a_clear_failure(
    agent: SessionManager, settings: Settings, inspector: AriClient
) -> None:
    local = await place_local_call(*ari_credentials(settings), "5550000", hold_seconds=1)
    assert not local.answered
    assert local.detail
    sip = await place_sip_call(*ari_credentials(settings), "5550000",
                               sip_target=f"127.0.0.1:{settings.sip_port}", hold_seconds=1)
    assert not sip.answered
    assert "404" in sip.detail or "Not Found" in sip.detail, sip.detail
    assert agent.calls_total == 0
    await assert_nothing_left(inspector, agent)


async def test_dtmf_reaches_the_session(
    agent: SessionManager, settings: Settings, inspector: AriClient
) -> None:
    result = await place_local_call(*ari_credentials(settings), "18005555678",
                                    hold_seconds=GREETING_SECONDS + 1, dtmf="42#*0")
    assert result.answered
    await assert_nothing_left(inspector, agent)
    record = agent.completed[-1]
    assert "".join(digit for _, digit in record.dtmf) == "42#*0"


async def test_admission_limit_turns_extra_callers_away(
    start_agent: AgentFactory, settings: Settings, inspector: AriClient
) -> None:
    async with start_agent(max_calls=1) as manager:
        first = asyncio.create_task(
            place_local_call(*ari_credentials(settings), "100", hold_seconds=5))
        await eventually(lambda: len(manager.sessions) == 1, what="first call admitted")
        second = await place_local_call(*ari_credentials(settings), "18005559999",
                                        hold_seconds=10)
        assert second.answered and second.hung_up_by == "agent"
        assert second.tenant is None
        rejected = manager.rejected[-1]
        assert rejected.reason == "admission limit reached"
        assert rejected.prompt == settings.busy_prompt
        assert rejected.prompt_state == "done"
        assert len(manager.sessions) == 1, "the admitted call must be unaffected"
        first_result = await first
        assert first_result.answered and first_result.tenant == "techstore"
        assert first_result.hung_up_by == "caller"
        await assert_nothing_left(inspector, manager)
        assert manager.calls_total == 1
