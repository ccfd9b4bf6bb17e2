"""The agent's HTTP side: ``/metrics`` for Prometheus and the dashboard, on loopback
by default.

aiohttp rather than prometheus-client's own server thread: the dashboard
(:mod:`voice_agent.dashboard`) shares this port and this event loop, and a
server in the loop reads the live call state without locks. ``/metrics``
carries no caller data (tenants, states and counts only), so it needs no token;
everything else does. Keep ``VOICE_AGENT_WEB_HOST`` on loopback, or put a proxy
with access control in front, before exposing it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from voice_agent.config import Settings
from voice_agent.dashboard.views import Dashboard

log = logging.getLogger(__name__)


async def _metrics(request: web.Request) -> web.Response:
    body = generate_latest(REGISTRY)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


class WebError(RuntimeError):
    """The web server could not start (the port is taken, the address is wrong)."""


@contextlib.asynccontextmanager
async def running_web(settings: Settings, dashboard: Dashboard | None = None
                      ) -> AsyncIterator[int | None]:
    """Serve ``/metrics`` (and the ``dashboard``) for the block; yields the bound port
    (``None``: port 0, off)."""
    if settings.web_port == 0:
        yield None
        return
    app = web.Application()
    app.router.add_get("/metrics", _metrics)
    if dashboard is not None:
        dashboard.install(app)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, settings.web_host, settings.web_port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise WebError(f"cannot serve metrics on {settings.web_host}:{settings.web_port}: "
                       f"{exc}; set VOICE_AGENT_WEB_PORT (0 turns the web server off)") from exc
    port = runner.addresses[0][1]
    log.info("metrics on http://%s:%d/metrics%s", settings.web_host, port,
             f", dashboard on http://{settings.web_host}:{port}/" if dashboard else "")
    try:
        yield port
    finally:
        await runner.cleanup()
