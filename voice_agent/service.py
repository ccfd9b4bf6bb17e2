"""The running agent: one ARI connection, one session manager, graceful stop.

Kept separate from the CLI so tests and ``voice-agent demo`` run exactly the
same service in-process that ``voice-agent serve`` runs in production.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from voice_agent.config import Settings
from voice_agent.telephony.ari_session_manager import SessionManager
from voice_agent.telephony.asterisk_ari import AriClient
from voice_agent.tenants import TenantRegistry

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def running_agent(
    settings: Settings, *, drain_seconds: float = 0.0
) -> AsyncIterator[SessionManager]:
    """Run the agent for the duration of the ``async with`` block.

    On exit, new calls are refused, live calls get ``drain_seconds`` to end by
    themselves, then the rest are hung up and every task is awaited.
    """
    tenants = TenantRegistry.load()
    async with AriClient(
        settings.ari_url,
        settings.ari_user,
        settings.ari_secret(),
        settings.app_name,
        timeout=settings.request_timeout,
        reconnect_initial=settings.reconnect_initial,
        reconnect_max=settings.reconnect_max,
    ) as ari:
        manager = SessionManager(ari, tenants, settings)
        manager.start()
        log.info("voice agent: app %s on %s, tenants %s, max %d calls", settings.app_name,
                 settings.ari_url, ", ".join(tenants.names), settings.max_calls)
        try:
            yield manager
        finally:
            await manager.shutdown(drain_seconds)
