"""Integration fixtures: the real Asterisk 22 (started by our own code) and the agent.

Nothing here is mocked: `local_asterisk` runs the same `LocalAsterisk.up()` as
`voice-agent asterisk up`, and `start_agent` runs the same service as
`voice-agent serve`, in the test's event loop so tests can inspect its state.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import eventually
from voice_agent.ari.ari_session_manager import SessionManager
from voice_agent.ari.asterisk_ari import AriClient
from voice_agent.ari.call_session import CallSession
from voice_agent.calls.protocol import CallAgent
from voice_agent.config import Settings
from voice_agent.dev.local_asterisk import LocalAsterisk
from voice_agent.dev.sim.conversation import ScriptedCaller
from voice_agent.dev.sim.phone import PhoneCall, SimPhone
from voice_agent.providers.stt import WhisperStt
from voice_agent.service import running_agent
from voice_agent.tenants.data import tenant_db_path


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.path):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def settings() -> Settings:
    # The call-control tests need no speech models: they run the greeting agent unless a
    # test asks for another (start_agent(agent=...)).
    return Settings(_env_file=None, reconnect_initial=0.2, reconnect_max=2.0, agent="greeting")


@pytest.fixture(scope="session")
def local_asterisk(settings: Settings) -> LocalAsterisk:
    asterisk = LocalAsterisk(
        settings.asterisk_root,
        ari_url=settings.ari_url,
        ari_user=settings.ari_user,
        ari_password=settings.ari_secret(),
        progress=lambda msg: print(f"asterisk: {msg}"),
    )
    asterisk.up()
    return asterisk


AgentFactory = Callable[..., contextlib.AbstractAsyncContextManager[SessionManager]]


@pytest.fixture
def start_agent(local_asterisk: LocalAsterisk, settings: Settings) -> AgentFactory:
    """`async with start_agent(max_calls=1) as manager:` runs the agent with overrides."""

    @contextlib.asynccontextmanager
    async def factory(call_agent: CallAgent | None = None, **overrides: Any
                      ) -> AsyncIterator[SessionManager]:
        agent_settings = settings.model_copy(update=overrides)
        async with running_agent(agent_settings, agent=call_agent) as manager:
            await manager.wait_connected(10)
            yield manager

    return factory


@pytest.fixture
async def agent(start_agent: AgentFactory) -> AsyncIterator[SessionManager]:
    async with start_agent() as manager:
        yield manager


@pytest.fixture(scope="module")
def whisper() -> WhisperStt:
    """Whisper, to check what a caller heard (the model loads on first use, once per process)."""
    return WhisperStt()


@pytest.fixture
async def inspector(local_asterisk: LocalAsterisk, settings: Settings) -> AsyncIterator[AriClient]:
    """A plain ARI client for asking Asterisk what exists (channels, bridges)."""
    async with AriClient(settings.ari_url, settings.ari_user, settings.ari_secret(),
                         "va-test-inspector") as ari:
        yield ari


async def assert_nothing_left(inspector: AriClient, manager: SessionManager) -> None:
    """No live session, and Asterisk holds no channel and no bridge."""
    async def clean() -> bool:
        return (not manager.sessions and not await inspector.list_channels()
                and not await inspector.list_bridges())
    try:
        await eventually(clean, what="all sessions, channels and bridges gone")
    except AssertionError:
        channels = [c["name"] for c in await inspector.list_channels()]
        bridges = [b["id"] for b in await inspector.list_bridges()]
        raise AssertionError(f"left behind: sessions={list(manager.sessions)} "
                             f"channels={channels} bridges={bridges}") from None


# ------------------------------------------------------------ conversations


@dataclass
class Conversation:
    manager: SessionManager
    call: PhoneCall
    caller: ScriptedCaller
    data_dir: Path

    @property
    def session(self) -> CallSession:
        return next(iter(self.manager.sessions.values()))

    def rows(self, query: str) -> list[tuple[object, ...]]:
        """``query`` on the database of the tenant this call reached."""
        path = tenant_db_path(self.session.record.tenant, self.data_dir)
        with contextlib.closing(sqlite3.connect(path)) as db:
            return db.execute(query).fetchall()


TalkTo = Callable[..., contextlib.AbstractAsyncContextManager[Conversation]]


@pytest.fixture
def talk_to(start_agent: AgentFactory, settings: Settings, whisper: WhisperStt,
            tmp_path_factory: pytest.TempPathFactory) -> TalkTo:
    """``async with talk_to(number, via=, gain_db=, **settings) as conversation``: a call
    (SIP unless ``via="local"``) to the conversation agent (fresh tenant data) with a
    scripted caller on the line, speaking ``gain_db`` off the test voice's level."""

    @contextlib.asynccontextmanager
    async def connect(number: str, *, via: str = "sip", gain_db: float = 0.0,
                      **overrides: object) -> AsyncIterator[Conversation]:
        data_dir = tmp_path_factory.mktemp("tenants")
        async with start_agent(agent="conversation", data_dir=data_dir, **overrides) as manager, \
                SimPhone(settings.ari_url, settings.ari_user, settings.ari_secret()) as phone:
            call = await phone.dial(number, audio=True, via=via)
            async with ScriptedCaller(call, whisper, gain_db=gain_db) as caller:
                yield Conversation(manager, call, caller, data_dir)

    return connect
