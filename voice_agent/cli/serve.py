"""The production commands: ``serve`` (the ARI agent) and ``agi`` (the FastAGI fallback).

They import nothing from :mod:`voice_agent.dev`, so a production install runs
them without the benchmark and simulator dependencies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer
import uvloop

from voice_agent import sd_notify
from voice_agent.ari import media_stats
from voice_agent.ari.ari_session_manager import SessionManager
from voice_agent.ari.asterisk_ari import AriError
from voice_agent.cli.common import app, console, fail, settings_from_env
from voice_agent.dashboard.views import for_service, token_path
from voice_agent.history import call_history
from voice_agent.service import checked_tenants, reload_tenants, running_agent
from voice_agent.tenants import TenantFileError, TenantRegistry
from voice_agent.web import WebError, running_web


@app.command()
def serve(
    max_calls: Annotated[int | None, typer.Option(help="Admission limit (VOICE_AGENT_MAX_CALLS).")]
    = None,
    drain_seconds: Annotated[float, typer.Option(help="On SIGTERM, let live calls run this "
                                                 "long before hanging them up.")] = 10.0,
    agent: Annotated[str | None, typer.Option(
        help="greeting | echo | conversation (VOICE_AGENT_AGENT).")]
    = None,
    echo_delay_ms: Annotated[int | None, typer.Option(help="Echo agent delay, ms.")] = None,
    transport: Annotated[str | None, typer.Option(
        help="Media transport: websocket | rtp (VOICE_AGENT_MEDIA_TRANSPORT).")] = None,
    stats_file: Annotated[Path | None, typer.Option(
        help="Write media timing, task and fd stats (JSON) here every 5 s and on exit "
        "(used by benchmarks).")] = None,
) -> None:
    """Answer calls in the Stasis app until SIGINT/SIGTERM (graceful drain on stop).
    SIGHUP re-reads the tenant files; a set that fails its checks is not taken."""
    settings = settings_from_env(max_calls=max_calls, agent=agent, echo_delay_ms=echo_delay_ms,
                         media_transport=transport)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        # Refuse to start on any problem `voice-agent tenants check` would report.
        tenants = checked_tenants()
        _reload_on_sighup(loop, tenants)
        managers: list[SessionManager] = []  # the dashboard's live calls, once the agent runs
        dashboard = None
        if settings.web_port:  # port 0: no web server, so no dashboard and no token
            dashboard, made = for_service(settings, tenants, lambda: [
                session.record for manager in managers for session in manager.sessions.values()])
            if made:
                _show_new_token(dashboard.token, token_path(settings))
        async with running_web(settings, dashboard), \
                running_agent(settings, drain_seconds=drain_seconds, tenants=tenants) as manager:
            managers.append(manager)
            with contextlib.suppress(AriError):
                await manager.wait_connected(settings.request_timeout)
            if manager.ari.connected.is_set():
                logging.info("ready: waiting for calls (Ctrl-C to stop)")
            # systemd Type=notify: ready once ARI is connected, however late that is.
            ready = asyncio.create_task(_notify_when_connected(manager))
            writer = (asyncio.create_task(media_stats.keep_writing(manager, stats_file))
                      if stats_file is not None else None)
            await stop.wait()
            ready.cancel()
            if writer is not None:
                writer.cancel()
            sd_notify.notify("STOPPING=1")
            logging.info("stopping: %d live call(s)", len(manager.sessions))
        if stats_file is not None:
            media_stats.write(manager, stats_file)

    try:
        # uvloop: the media path is thousands of small datagrams and timer
        # wake-ups a second, where its event loop costs far less than asyncio's.
        uvloop.run(main())
    except (AriError, WebError, TenantFileError) as exc:
        raise fail(str(exc), 2) from exc


_reloads: set[asyncio.Task[bool]] = set()


def _reload_on_sighup(loop: asyncio.AbstractEventLoop, tenants: TenantRegistry) -> None:
    """SIGHUP re-reads the tenant files into ``tenants`` (see :func:`reload_tenants`)."""
    def reload() -> None:
        task = loop.create_task(reload_tenants(tenants))
        _reloads.add(task)
        task.add_done_callback(_reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, reload)


def _show_new_token(token: str, path: Path) -> None:
    """A token made at this start: on a terminal, shown once; in a log, never (only
    where it is kept)."""
    if sys.stdout.isatty():
        console.print(f"dashboard token (new, kept in {path}): {token}", markup=False)
    else:
        logging.info("made a dashboard token; it is in %s", path)


async def _notify_when_connected(manager: SessionManager) -> None:
    await manager.ari.connected.wait()
    sd_notify.notify("READY=1\nSTATUS=waiting for calls")


@app.command()
def agi(
    host: Annotated[str | None, typer.Option(
        help="Listen address (VOICE_AGENT_AGI_HOST, default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(
        help="Listen port (VOICE_AGENT_AGI_PORT, default 4573).")] = None,
    drain_seconds: Annotated[float, typer.Option(help="On SIGTERM, let live calls run this "
                                                 "long before hanging them up.")] = 10.0,
) -> None:
    """Run the FastAGI fallback: record, transcribe, answer, play, in turns (SIGHUP
    re-reads the tenant files).

    The same tenants, speech models and dialog engine as `serve --agent
    conversation`, without streaming or barge-in. Asterisk reaches it with
    AGI(agi://HOST:PORT/<tenant>); the shipped voice-agent-ari context falls
    back to it when the Stasis app is not connected, and the voice-agent-agi
    context uses it directly. Recordings and replies go to VOICE_AGENT_AGI_AUDIO_DIR (as
    Asterisk sees it; the agent finds it under VOICE_AGENT_ASTERISK_ROOT unless
    VOICE_AGENT_AGI_AUDIO_HOST_DIR says otherwise). Stops on SIGINT/SIGTERM.
    """
    from voice_agent.agi.asterisk_agi import running_agi_server
    from voice_agent.agi.protocol import AgiError

    settings = settings_from_env(agi_host=host, agi_port=port)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        tenants = checked_tenants()
        _reload_on_sighup(loop, tenants)
        web = settings.model_copy(update={"web_port": settings.agi_web_port})
        with call_history(settings, tenants) as history:
            async with running_web(web), \
                    running_agi_server(settings, drain_seconds=drain_seconds,
                                       tenants=tenants) as server:
                if history is not None:
                    server.admission.listeners.append(history.submit)
                logging.info("ready: FastAGI on %s:%d (Ctrl-C to stop)", settings.agi_host,
                             server.port)
                await stop.wait()
                logging.info("stopping: %d live AGI call(s)", len(server.sessions))

    try:
        uvloop.run(main())
    except (AgiError, WebError, TenantFileError) as exc:
        raise fail(str(exc), 2) from exc


@app.command()
def doctor(
    ari_url: Annotated[str | None, typer.Option(
        help="Asterisk HTTP base URL (VOICE_AGENT_ARI_URL).")] = None,
    context: Annotated[str, typer.Option(help="Dialplan context the numbers are in.")]
    = "voice-agent-ari",
    number: Annotated[list[str] | None, typer.Option(
        help="NUMBER=TENANT to check (repeatable; default: the numbers in the tenant "
        "files).")] = None,
) -> None:
    """Check a live Asterisk (ours or an existing PBX) for the agent: one line per check,
    with the fix when it fails; exit 1 when one fails. Run it with `serve` up to check
    that each number reaches its tenant."""
    from voice_agent.doctor import Check, run_checks
    settings = settings_from_env(ari_url=ari_url)
    numbers = TenantRegistry.load().numbers()
    if number:
        try:
            numbers = dict(item.split("=", 1) for item in number)
        except ValueError:
            raise fail(f"--number takes NUMBER=TENANT, got {number!r}", 2) from None

    def show(check: Check) -> None:
        mark = ("[green]ok  [/green]" if check.ok else
                "[yellow]warn[/yellow]" if check.warn else "[red]FAIL[/red]")
        console.print(f"{mark} {check.name}: {check.detail}", highlight=False)
        if check.fix and not check.ok:
            console.print(f"     fix: {check.fix}", highlight=False)

    checks = asyncio.run(run_checks(settings, numbers, context, show))
    failed = [check.name for check in checks if check.failed]
    if failed:
        raise fail(f"{len(failed)} check(s) failed: {', '.join(failed)}", 1)
    console.print(f"[green]doctor ok[/green]: {len(checks)} checks")
