"""The call history on real calls, in SQLite and in a real PostgreSQL server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers import eventually
from tests.integration.conftest import AgentFactory
from tests.integration.postgres import postgres_server
from voice_agent.ari.asterisk_ari import AriClient
from voice_agent.config import Settings
from voice_agent.dev.sim.caller import place_local_call
from voice_agent.history import CallHistory
from voice_agent.tenants import TenantRegistry


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    with postgres_server() as url:
        yield url


async def test_a_call_is_stored_in_postgresql_and_survives_a_restart(
    start_agent: AgentFactory, settings: Settings, postgres: str, inspector: AriClient,
) -> None:
    async with start_agent(history_url=postgres) as manager:
        result = await place_local_call(settings.ari_url, settings.ari_user,
                                        settings.ari_secret(), "18005555678", hold_seconds=1.0)
        assert result.tenant == "healthplus"
        await eventually(lambda: bool(manager.completed), what="the call to end")
    # the agent is gone (a restart): a new reader sees the call
    reader = CallHistory(postgres, TenantRegistry.load())
    try:
        assert reader._engine.dialect.name == "postgresql"
        (call,) = reader.recent(tenant="healthplus")
    finally:
        reader.close()
    assert call["caller"] == "[redacted]" and call["entry"] == "ari"
    assert call["outcome"] in ("completed", "caller_hung_up")
    assert call["ended_at"] > call["started_at"]
    assert [state for _, state in call["detail"]["transitions"]][:2] == ["starting",
                                                                        "greeting"]

