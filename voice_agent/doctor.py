"""``voice-agent doctor``: is this Asterisk (ours or an existing PBX) ready for the agent?

Each check talks to the live system the way the agent will, and says how to
fix what fails:

* ARI answers at ``ARI_URL`` with these credentials; Asterisk is 20 or newer;
* the modules the agent needs are running (``res_ari``, ``res_stasis``,
  ``chan_rtp`` for externalMedia RTP, ``chan_websocket`` for WebSocket media);
* ARI listens on loopback (or the operator knows it does not);
* the agent's Stasis app is connected, and then each number reaches its tenant:
  a Local channel dials ``NUMBER@CONTEXT`` and the call's session must set
  ``VOICE_AGENT_TENANT`` to the expected tenant;
* externalMedia can reach the agent: an RTP externalMedia channel aimed at a
  socket on ``RTP_BIND_HOST`` (advertised as ``RTP_ADVERTISE_HOST``) must
  receive a tone played into its bridge;
* the models are there: the embedded runtimes importable, every model server
  answering its health probe;
* the ports the agent listens on (metrics, FastAGI) are free or held by it.

Doctor registers its own short-lived Stasis app (``voice-agent-doctor-…``),
so it never disturbs a running agent; what it creates it removes.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from voice_agent.ari.asterisk_ari import (
    AriAuthError,
    AriClient,
    AriConnectionError,
    AriError,
    AriNotFoundError,
)
from voice_agent.calls.record import TENANT_VARIABLE
from voice_agent.config import Settings
from voice_agent.providers.factory import Providers, embedded_installed
from voice_agent.tenants import TenantRegistry

MIN_ASTERISK = 20
#: Module → why the agent needs it.
MODULES = {
    "res_ari.so": "the REST interface",
    "res_stasis.so": "Stasis applications",
    "res_ari_channels.so": "channel control over ARI",
    "chan_rtp.so": "externalMedia over RTP",
    "chan_websocket.so": "externalMedia over WebSocket (VOICE_AGENT_MEDIA_TRANSPORT=websocket)",
}
ROUTE_TIMEOUT = 8.0
RTP_TIMEOUT = 3.0


@dataclass(frozen=True)
class Check:
    """One line of the report: ``ok``; else ``fix`` says what to do (``warn``: not fatal)."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    warn: bool = False

    @property
    def failed(self) -> bool:
        return not self.ok and not self.warn


async def run_checks(settings: Settings, numbers: dict[str, str], context: str,
                     report: Callable[[Check], None] = lambda check: None) -> list[Check]:
    """Every check, in order; ``report`` sees each as it completes."""
    checks: list[Check] = []

    def add(check: Check) -> None:
        checks.append(check)
        report(check)

    doctor_app = f"voice-agent-doctor-{uuid.uuid4().hex[:8]}"
    async with AriClient(settings.ari_url, settings.ari_user, settings.ari_secret(),
                         doctor_app, timeout=settings.request_timeout) as ari:
        add(await _check_ari(ari, settings))
        if checks[-1].failed:
            return checks
        for check in await _check_modules(ari, settings):
            add(check)
        add(_check_bind(settings))
        async with _stasis_app(ari, settings.request_timeout):
            agent = await _check_app(ari, settings)
            add(agent)
            for number, tenant in numbers.items():
                add(await _check_route(ari, doctor_app, number, tenant, context)
                    if agent.ok else Check(f"route {number}", False, "not checked",
                                           "start `voice-agent serve`, then run doctor again",
                                           warn=True))
            add(await _check_external_media(ari, doctor_app, settings))
    for check in await _check_models(settings):
        add(check)
    for check in _check_ports(settings):
        add(check)
    return checks


async def _check_ari(ari: AriClient, settings: Settings) -> Check:
    try:
        info = await ari.asterisk_info()
    except AriAuthError:
        return Check("ARI", False, f"{settings.ari_url} refused user {settings.ari_user!r}",
                     "set VOICE_AGENT_ARI_USER/ARI_PASSWORD to a user of ari.conf")
    except AriConnectionError as exc:
        return Check("ARI", False, str(exc).split(";")[0],
                     "start Asterisk; in http.conf: enabled=yes and bindaddr/bindport "
                     "matching VOICE_AGENT_ARI_URL")
    except AriError as exc:
        return Check("ARI", False, str(exc), "check VOICE_AGENT_ARI_URL (without /ari)")
    version = str(info.get("system", {}).get("version", "?"))
    major = int(match.group(1)) if (match := re.match(r"(\d+)\.", version)) else 0
    if major < MIN_ASTERISK:
        return Check("ARI", False, f"Asterisk {version}",
                     f"upgrade to Asterisk {MIN_ASTERISK} or newer (externalMedia, ARI 8)")
    return Check("ARI", True, f"Asterisk {version} at {settings.ari_url}, user "
                 f"{settings.ari_user!r}")


async def _check_modules(ari: AriClient, settings: Settings) -> list[Check]:
    checks = []
    for module, why in MODULES.items():
        optional = module == "chan_websocket.so" and settings.media_transport != "websocket"
        try:
            status = (await ari.request("GET", f"/asterisk/modules/{module}")).get("status")
        except AriNotFoundError:
            status = "not loaded"
        ok = status == "Running"
        checks.append(Check(f"module {module}", ok, f"{status} ({why})",
                            "" if ok else f"load it: `asterisk -rx 'module load {module}'` "
                            "and add it to modules.conf", warn=optional))
    return checks


def _check_bind(settings: Settings) -> Check:
    host = urlsplit(settings.ari_url).hostname or ""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if loopback:
        return Check("ARI exposure", True, f"ARI on loopback ({host})")
    return Check("ARI exposure", False, f"ARI reached at {host}: it can control every call",
                 "bind http.conf to 127.0.0.1 (or a private interface behind a firewall) "
                 "and use TLS (https) across hosts", warn=True)


@contextlib.asynccontextmanager
async def _stasis_app(ari: AriClient, timeout: float) -> AsyncIterator[None]:
    """Doctor's own Stasis app, registered for the block (its events are not needed)."""
    async def drain() -> None:
        async for _ in ari.events():
            pass

    task = asyncio.create_task(drain())
    try:
        await asyncio.wait_for(ari.connected.wait(), timeout)
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _check_app(ari: AriClient, settings: Settings) -> Check:
    apps = [app["name"] for app in await ari.request("GET", "/applications")]
    if settings.app_name in apps:
        return Check("agent", True, f"Stasis app {settings.app_name!r} connected")
    return Check("agent", False, f"Stasis app {settings.app_name!r} not connected: calls go to "
                 "the dialplan's fallback (AGI)", "start `voice-agent serve`", warn=True)


async def _check_route(ari: AriClient, app: str, number: str, tenant: str,
                       context: str) -> Check:
    """Dial NUMBER@CONTEXT on a Local channel; the agent's session names the tenant."""
    ours, theirs = f"{app}-{number}-1", f"{app}-{number}-2"
    name = f"route {number}"
    try:
        await ari.originate(f"Local/{number}@{context}", app=app, channel_id=ours,
                            other_channel_id=theirs, caller_id="doctor <0>")
    except AriError as exc:
        return Check(name, False, f"cannot dial {number}@{context}: {exc}",
                     f"add {number} to [{context}] (`voice-agent tenants dialplan` "
                     "prints the routes)")
    try:
        found = ""
        deadline = asyncio.get_running_loop().time() + ROUTE_TIMEOUT
        while asyncio.get_running_loop().time() < deadline and not found:
            with contextlib.suppress(AriError):
                found = await ari.get_variable(theirs, TENANT_VARIABLE)
            if not found:
                await asyncio.sleep(0.2)
    finally:
        with contextlib.suppress(AriError):
            await ari.hangup(ours)
    if found == tenant:
        return Check(name, True, f"{number}@{context} → {tenant}")
    detail = f"{number}@{context} reached tenant {found!r}" if found else \
        f"{number}@{context} never reached the agent within {ROUTE_TIMEOUT:.0f} s"
    return Check(name, False, f"{detail}, expected {tenant!r}",
                 f"in [{context}]: exten => {number},1,Stasis(voice_agent,{tenant})")


async def _check_external_media(ari: AriClient, app: str, settings: Settings) -> Check:
    """An RTP externalMedia channel aimed at a socket of ours must deliver a tone."""
    name = "externalMedia"
    advertise = settings.rtp_advertise_host or settings.rtp_bind_host
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((settings.rtp_bind_host, 0))
        sock.setblocking(False)
        port = sock.getsockname()[1]
        channel, bridge = f"{app}-media", f"{app}-bridge"
        try:
            await ari.request("POST", "/channels/externalMedia", params={
                "app": app, "channelId": channel, "external_host": f"{advertise}:{port}",
                "format": "ulaw", "encapsulation": "rtp", "transport": "udp",
                "connection_type": "client", "direction": "both"})
            await ari.create_bridge(bridge)
            await _retry(lambda: ari.add_to_bridge(bridge, channel))
            await ari.request("POST", f"/bridges/{bridge}/play",
                              params={"media": "tone:1000", "playbackId": f"{app}-tone"})
            async with asyncio.timeout(RTP_TIMEOUT):
                data = await loop.sock_recv(sock, 2048)
        except TimeoutError:
            return Check(name, False, f"no RTP from Asterisk at {advertise}:{port} within "
                         f"{RTP_TIMEOUT:.0f} s", "set VOICE_AGENT_RTP_ADVERTISE_HOST to an "
                         "address Asterisk can reach and allow UDP from it to "
                         "VOICE_AGENT_RTP_BIND_HOST")
        except AriError as exc:
            return Check(name, False, f"cannot create an externalMedia channel: {exc}",
                         "load chan_rtp.so; check the ARI user may originate")
        finally:
            for cleanup in (ari.hangup(channel), ari.destroy_bridge(bridge)):
                with contextlib.suppress(AriError):
                    await cleanup
    return Check(name, True, f"Asterisk sends RTP to {advertise}:{port} ({len(data)} bytes "
                 "per packet)")


async def _retry(action: Callable[[], Awaitable[None]], attempts: int = 20) -> None:
    """A new channel is in Stasis a moment after the REST call returns (422 until then)."""
    for attempt in range(attempts):
        try:
            await action()
            return
        except AriError:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.1)


async def _check_models(settings: Settings) -> list[Check]:
    providers = Providers(settings, TenantRegistry.load())
    checks = []
    embedded = [stage for stage, url in (("STT", settings.stt_url), ("TTS", settings.tts_url))
                if not url]
    if embedded or settings.embedded_fallback:
        ok = embedded_installed()
        checks.append(Check("embedded models", ok,
                            "faster-whisper and piper importable" if ok else "not installed",
                            "" if ok else "install the full package (bash scripts/install.sh)",
                            warn=not embedded))
    problems = await providers.probe()
    servers = [remote.name for remote in providers.remotes]
    if servers:
        checks.append(Check("model servers", not problems,
                            "; ".join(problems) if problems else ", ".join(servers) + " answer",
                            "" if not problems else "start the server or fix its URL/key "
                            "(VOICE_AGENT_STT_URL, TTS_URL, LLM_URL and their _API_KEY)"))
    return checks


def _check_ports(settings: Settings) -> list[Check]:
    checks = []
    for what, host, port in (("metrics", settings.web_host, settings.web_port),
                             ("FastAGI", settings.agi_host, settings.agi_port)):
        if port == 0:
            continue
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
                checks.append(Check(f"port {port}", True, f"{host}:{port} free for {what}"))
            except OSError as exc:
                checks.append(Check(f"port {port}", False, f"{host}:{port} ({what}): "
                                    f"{exc.strerror}", "fine if the agent holds it; else "
                                    "stop what does, or change the port setting", warn=True))
    return checks
