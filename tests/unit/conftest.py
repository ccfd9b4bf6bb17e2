"""Fixtures shared by several unit-test modules."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import CannedHttpServer, ScriptedLlmServer, WyomingServers
from voice_agent.tenants import TenantRegistry
from voice_agent.tenants.data import TenantDatabases


@pytest.fixture
def db(tmp_path: Path) -> TenantDatabases:
    """Fresh tenant databases under ``tmp_path``."""
    return TenantDatabases(tmp_path)


@pytest.fixture
def registry() -> TenantRegistry:
    """The shipped tenants."""
    return TenantRegistry.load()


@pytest.fixture
def http_server() -> Iterator[CannedHttpServer]:
    """A :class:`CannedHttpServer` (200, ``{}``) until the test ends."""
    canned = CannedHttpServer()
    yield canned
    canned.close()


@pytest.fixture
async def llm_server() -> AsyncIterator[ScriptedLlmServer]:
    """A started :class:`ScriptedLlmServer` with no replies scripted yet."""
    scripted = ScriptedLlmServer()
    await scripted.start()
    yield scripted
    await scripted.close()


@pytest.fixture
async def wyoming() -> AsyncIterator[Callable[..., Any]]:
    """``await wyoming(script) -> url``: a scripted Wyoming server, stopped after the test."""
    servers = WyomingServers()
    yield servers.start
    await servers.stop()
