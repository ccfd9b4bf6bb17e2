"""The running agent: ARI connection, media plane, session manager, graceful stop.

Kept separate from the CLI so tests, benchmarks and ``voice-agent demo`` run
exactly the same service in-process that ``voice-agent serve`` runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, Metric

from voice_agent.ari.ari_audio_bridge import HelperChannels, MediaFactory
from voice_agent.ari.ari_session_manager import SessionManager
from voice_agent.ari.asterisk_ari import AriClient
from voice_agent.calls import metrics
from voice_agent.calls.protocol import CallAgent
from voice_agent.config import Settings
from voice_agent.conversation.echo import EchoAgent
from voice_agent.history import call_history
from voice_agent.media.media_clock import MediaClock
from voice_agent.media.rtp_transport import RtpMediaServer
from voice_agent.tenants import TenantFileError, TenantRegistry, tenants_directory

log = logging.getLogger(__name__)


async def _agent(settings: Settings, tenants: TenantRegistry) -> CallAgent | None:
    if settings.agent == "echo":
        return EchoAgent(settings.echo_delay_ms / 1000)
    if settings.agent == "conversation":
        from voice_agent.conversation.agent import ConversationAgent
        from voice_agent.providers.factory import Providers
        from voice_agent.tenants.data import TenantDatabases

        providers = Providers(settings, tenants)
        default = providers.default
        per_tenant = providers.overrides
        log.info("models: STT %s, TTS %s, replies %s", default.stt.name, default.tts.name,
                 f"LLM {default.llm.name} (the rule engine stands in)" if default.llm
                 else "rule engine")
        agent = ConversationAgent(tenants, TenantDatabases(settings.data_dir), default.stt,
                                  default.tts, llm=default.llm, per_tenant=per_tenant,
                                  watchdog_seconds=settings.turn_watchdog_seconds)
        await providers.probe()  # before READY: each server answered, or was logged as down
        log.info("loading speech models (once per process)")
        await agent.warm_up()
        return agent
    return None


def checked_tenants(directory: Path | None = None) -> TenantRegistry:
    """The tenants in ``directory`` (default: the configured ones), only if every check of
    ``voice-agent tenants check`` passes; else :class:`TenantFileError` listing them all."""
    from voice_agent.dialog.tenant_check import check_tenants

    root = directory or tenants_directory()
    tenants, problems = check_tenants(root)
    if problems:
        raise TenantFileError("\n".join(f"tenant file {p}" for p in problems))
    if not tenants:  # a mistyped VOICE_AGENT_TENANTS_DIR must not answer every call "unknown"
        raise TenantFileError(f"no tenants in {root}: point VOICE_AGENT_TENANTS_DIR at a "
                              "directory of tenant files (docs/tenants.md)")
    return TenantRegistry(tenants)


async def reload_tenants(tenants: TenantRegistry, directory: Path | None = None) -> bool:
    """Re-read the tenant files into ``tenants`` (SIGHUP). A set that fails its checks is
    not taken: the running one stays, and the log says why. Calls in progress keep the
    tenant they started with."""
    try:
        fresh = await asyncio.to_thread(checked_tenants, directory)
    except TenantFileError as exc:
        log.error("tenants NOT reloaded, the running set stays (%s):\n%s",
                  ", ".join(tenants.names), exc)
        return False
    tenants.replace(fresh)
    log.info("tenants reloaded: %s", ", ".join(tenants.names))
    return True


@contextlib.asynccontextmanager
async def running_agent(
    settings: Settings, *, drain_seconds: float = 0.0, agent: CallAgent | None = None,
    tenants: TenantRegistry | None = None,
) -> AsyncIterator[SessionManager]:
    """Run the agent for the duration of the ``async with`` block.

    ``agent`` overrides ``settings.agent`` (tests and benchmarks plug in their
    own); ``tenants`` is the registry to serve (default: :func:`checked_tenants`;
    ``serve`` passes its own so SIGHUP can reload it). On exit, new calls are
    refused, live calls get ``drain_seconds`` to end by themselves, then the rest
    are hung up and every task is awaited.
    """
    tenants = tenants or checked_tenants()
    agent = agent or await _agent(settings, tenants)
    clock = MediaClock()
    rtp = RtpMediaServer(clock)
    if agent is not None:
        await rtp.start(settings.rtp_bind_host, settings.rtp_port)
    async with AriClient(
        settings.ari_url,
        settings.ari_user,
        settings.ari_secret(),
        settings.app_name,
        timeout=settings.request_timeout,
        reconnect_initial=settings.reconnect_initial,
        reconnect_max=settings.reconnect_max,
    ) as ari:

        def media(helpers: HelperChannels) -> MediaFactory:
            return MediaFactory(
                ari, helpers, app=settings.app_name, transport=settings.media_transport,
                rtp_server=rtp, rtp_format=settings.rtp_format,
                rtp_advertise_host=settings.rtp_advertise_host,
            )

        manager = SessionManager(ari, tenants, settings,
                                 media=media if agent is not None else None, agent=agent)
        with call_history(settings, tenants) as history:
            if history is not None:
                manager.admission.listeners.append(history.submit)
            manager.start()
            sources = {f"ari-live-{id(manager)}": metrics.live_calls(
                           "ari", lambda: [s.record for s in manager.sessions.values()]),
                       f"ari-media-{id(manager)}": _media_metrics(ari, clock, rtp)}
            for name, source in sources.items():
                metrics.add_source(name, source)
            limit = settings.call_limit()
            log.info("voice agent: app %s on %s, agent %s, media %s, tenants %s, max %d calls%s",
                     settings.app_name, settings.ari_url, settings.agent,
                     settings.media_transport if agent else "none", ", ".join(tenants.names),
                     limit, "" if limit == settings.max_calls else
                     " (what the embedded models hold; VOICE_AGENT_MAX_CALLS overrides)")
            try:
                yield manager
            finally:
                for name in sources:
                    metrics.remove_source(name)
                await manager.shutdown(drain_seconds)
                await clock.aclose()
                rtp.close()
                if (close := getattr(agent, "aclose", None)) is not None:
                    await close()


def _media_metrics(ari: AriClient, clock: MediaClock, rtp: RtpMediaServer) -> metrics.Source:
    """Media clock ticks (late, skipped), RTP datagrams and ARI reconnects, read at scrape."""
    def collect() -> Iterable[Metric]:
        counters = {
            "voice_agent_media_ticks": ("20 ms media clock ticks.", clock.stats.ticks),
            "voice_agent_media_ticks_late": ("Ticks that sent their frames more than 5 ms "
                                             "late.", clock.stats.late),
            "voice_agent_media_ticks_skipped": ("Ticks skipped after an event loop stall.",
                                                clock.stats.skipped),
            "voice_agent_rtp_datagrams": ("RTP datagrams received.", rtp.stats.datagrams),
            "voice_agent_rtp_malformed": ("RTP datagrams dropped as malformed.",
                                          rtp.stats.malformed),
            "voice_agent_ari_reconnects": ("ARI event connections after the first.",
                                           max(0, ari.connections - 1)),
        }
        return [CounterMetricFamily(name, text, value=value)
                for name, (text, value) in counters.items()]
    return collect
