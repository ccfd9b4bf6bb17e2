"""`voice-agent doctor` against the real Asterisk, in good and broken configurations."""

from __future__ import annotations

import os
import subprocess
import sys

from pydantic import SecretStr

from tests.integration.conftest import AgentFactory
from voice_agent.ari.asterisk_ari import AriClient
from voice_agent.config import Settings
from voice_agent.dev.local_asterisk import LocalAsterisk
from voice_agent.doctor import Check, run_checks
from voice_agent.tenants import TenantRegistry

CONTEXT = "voice-agent-ari"
SHIPPED_NUMBERS = TenantRegistry.load().numbers()


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {check.name: check for check in checks}


async def test_with_the_agent_up_every_check_passes_and_each_number_reaches_its_tenant(
    start_agent: AgentFactory, settings: Settings, inspector: AriClient,
) -> None:
    async with start_agent():
        checks = await run_checks(settings, SHIPPED_NUMBERS, CONTEXT)
    assert not [check for check in checks if check.failed], checks
    found = by_name(checks)
    assert found["ARI"].ok and "Asterisk 22" in found["ARI"].detail
    for number, tenant in SHIPPED_NUMBERS.items():
        assert found[f"route {number}"].ok and tenant in found[f"route {number}"].detail
    assert found["externalMedia"].ok, found["externalMedia"]
    assert found["module res_ari.so"].ok and found["module chan_rtp.so"].ok
    assert not await inspector.list_bridges()  # doctor removed what it created


async def test_a_number_routed_to_another_tenant_fails_with_the_dialplan_line(
    start_agent: AgentFactory, settings: Settings,
) -> None:
    async with start_agent():
        checks = await run_checks(settings, {"100": "healthplus"}, CONTEXT)
    route = by_name(checks)["route 100"]
    assert route.failed and "reached tenant 'techstore'" in route.detail
    assert "Stasis(voice_agent,healthplus)" in route.fix


async def test_without_the_agent_routes_are_warnings_and_rtp_is_still_checked(
    local_asterisk: LocalAsterisk, settings: Settings,
) -> None:
    checks = await run_checks(settings, SHIPPED_NUMBERS, CONTEXT)
    found = by_name(checks)
    assert found["agent"].warn and "voice-agent serve" in found["agent"].fix
    assert all(found[f"route {n}"].warn for n in SHIPPED_NUMBERS)
    assert found["externalMedia"].ok
    assert not [check for check in checks if check.failed], checks


async def test_an_address_asterisk_cannot_reach_fails_the_media_check(
    local_asterisk: LocalAsterisk, settings: Settings,
) -> None:
    unreachable = settings.model_copy(update={"rtp_advertise_host": "192.0.2.1"})  # TEST-NET-1
    media = by_name(await run_checks(unreachable, {}, CONTEXT))["externalMedia"]
    assert media.failed and "VOICE_AGENT_RTP_ADVERTISE_HOST" in media.fix


async def test_wrong_credentials_stop_at_the_first_check_with_the_fix(
    local_asterisk: LocalAsterisk, settings: Settings,
) -> None:
    wrong = settings.model_copy(update={"ari_password": SecretStr("not-the-password"),
                                        "ari_password_file": None})
    (ari,) = await run_checks(wrong, SHIPPED_NUMBERS, CONTEXT)
    assert ari.failed and "ARI_PASSWORD" in ari.fix


def test_the_command_exits_non_zero_and_prints_the_fix(local_asterisk: LocalAsterisk) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "voice_agent.cli", "doctor", "--number", "100=healthplus"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "VOICE_AGENT_ARI_PASSWORD": "wrong"})
    assert result.returncode == 1, result
    assert "FAIL ARI" in result.stdout and "fix:" in result.stdout
