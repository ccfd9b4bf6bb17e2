"""FastAGI fallback: the old sequential loop, for when the Stasis app is not there.

The dialplan sends a call here with ``AGI(agi://127.0.0.1:4573/<tenant>)``
(``[voice-agent-ari]`` does so when ``Stasis()`` fails because the ARI agent is
not connected; ``[voice-agent-agi]`` does so directly). Asterisk opens one TCP
connection per call; :class:`FastAgiServer` accepts it, checks the tenant and
the admission limit like the Stasis app does, and runs an :class:`AgiSession`.

Built on our own small protocol module rather than panoramisk: panoramisk's
FastAGI server reads a ``HANGUP`` line that arrives before a response as that
response (and then pairs every later response with the wrong command), has no
shutdown or drain, and routes by exact script path only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator

from voice_agent.agi.audio_files import AudioDirectory
from voice_agent.agi.channel import AgiChannel
from voice_agent.agi.protocol import AgiError, AgiHangup
from voice_agent.agi.sequential import AgiConversation, SpeechServices, TurnLimits
from voice_agent.calls import metrics
from voice_agent.calls.admission import Admission
from voice_agent.calls.log_context import in_call
from voice_agent.calls.record import TENANT_VARIABLE, CallRecord, CallState, RejectedCall
from voice_agent.config import Settings
from voice_agent.tenants import Tenant, TenantRegistry, UnknownTenantError

log = logging.getLogger(__name__)

#: Bound on cleanup commands (hang-up) to a channel that may be going away.
CLEANUP_TIMEOUT = 2.0


class AgiSession:
    """One AGI call from environment to closed socket, with everything it owns."""

    def __init__(self, channel: AgiChannel, tenant: Tenant, services: SpeechServices,
                 directory: AudioDirectory, limits: TurnLimits, max_seconds: float) -> None:
        self.id = uuid.uuid4().hex[:12]
        self.channel = channel
        self.tenant = tenant
        request = channel.request
        self.record = CallRecord(
            session_id=self.id,
            channel_id=request.get("uniqueid"),
            channel_name=request.get("channel"),
            caller=request.caller,
            tenant=tenant.name,
            number=request.get("extension") or "",
        )
        self.files = directory.for_call(self.id)
        self.conversation = AgiConversation(services, tenant, channel, self.record,
                                            self.files, limits, on_state=self._transition)
        self._max_seconds = max_seconds
        self._transition(CallState.STARTING)

    def _transition(self, state: CallState) -> None:
        self.record.transitions.append((time.time(), state))
        log.info("agi call %s [%s] -> %s", self.id, self.tenant.name, state.value)

    async def run(self) -> None:
        """Serve the call until it ends; always removes its files and closes the socket."""
        in_call(self.id, self.tenant.name)
        try:
            await self._work_until_end()
        finally:
            removed = self.files.remove_all()
            await self.channel.aclose()
            self.record.ended_at = time.time()
            self._transition(CallState.CLOSED)
            log.info("agi call %s closed after %.1f s: %s (%d file(s) removed)", self.id,
                     self.record.ended_at - self.record.started_at, self.record.end_reason,
                     removed)

    async def _work_until_end(self) -> None:
        """Run the call as a task the caller's hang-up cancels; map how it ended."""
        work = asyncio.create_task(self._converse(), name=f"agi-call-{self.id}")
        gone = asyncio.create_task(self.channel.hung_up.wait())
        try:
            await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            if not work.done():
                work.cancel()
            try:
                await work
                self.record.end_reason = self.record.end_reason or "completed"
            except AgiHangup as exc:
                log.debug("agi call %s: %s", self.id, exc)
                self.record.end_reason = self.record.end_reason or "caller hung up"
            except asyncio.CancelledError:
                gone_by = "caller hung up" if self.channel.hung_up.is_set() else "service shutdown"
                self.record.end_reason = self.record.end_reason or gone_by
            except (AgiError, TimeoutError) as exc:
                self.record.end_reason = f"error: {exc}"
                log.error("agi call %s failed: %s", self.id, exc)
            except Exception as exc:  # a bug must end one call, not the server
                self.record.end_reason = f"internal error: {exc!r}"
                log.exception("agi call %s crashed", self.id)
            await self._hang_up_unless_gone()

    async def _converse(self) -> None:
        await self.channel.answer()
        await self.channel.set_variable(TENANT_VARIABLE, self.tenant.name)
        try:
            async with asyncio.timeout(self._max_seconds) as cap:
                await self.conversation.run()
        except TimeoutError:
            if not cap.expired():
                raise
            self.record.end_reason = f"max call length {self._max_seconds:.0f} s reached"

    async def _hang_up_unless_gone(self) -> None:
        """End the call in Asterisk too, unless the caller left or was handed to a person."""
        if self.channel.hung_up.is_set() or self.conversation.transferred_to is not None:
            return
        with contextlib.suppress(AgiError, TimeoutError):
            async with asyncio.timeout(CLEANUP_TIMEOUT):
                await self.channel.hangup()


class FastAgiServer:
    """Accepts Asterisk's FastAGI connections and runs one :class:`AgiSession` per call."""

    def __init__(self, settings: Settings, tenants: TenantRegistry,
                 services: SpeechServices) -> None:
        self._settings = settings
        self._tenants = tenants
        self._services = services
        self.directory = AudioDirectory(settings.agi_audio_dir, settings.agi_audio_host_path())
        self._limits = TurnLimits(settings.agi_silence_seconds, settings.agi_max_record_seconds)
        self._server: asyncio.Server | None = None
        self.sessions: dict[str, AgiSession] = {}
        #: Limit, drain, and finished calls and rejections: the same rules as the ARI agent.
        self.admission = Admission(settings.call_limit(), settings.busy_prompt, what="AGI call",
                                   entry="agi")
        self.completed = self.admission.completed
        self.rejected = self.admission.rejected

    @property
    def accepting(self) -> bool:
        return self.admission.accepting

    @property
    def port(self) -> int:
        """The port actually bound (useful with port 0)."""
        assert self._server is not None, "start() first"
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self, host: str, port: int) -> None:
        """Prepare the audio directory and listen for Asterisk."""
        self.directory.prepare()
        self._server = await asyncio.start_server(self._handle, host, port)
        log.info("FastAGI on %s:%d, tenants %s, audio in %s (host: %s)", host, self.port,
                 ", ".join(self._tenants.names), self.directory.asterisk_dir,
                 self.directory.host_dir)

    async def shutdown(self, drain_seconds: float = 0.0) -> None:
        """Refuse new calls (busy prompt), let live ones run ``drain_seconds``, end the rest."""
        await self.admission.drain(drain_seconds)  # callers meanwhile hear the busy prompt
        if self._server is not None:
            self._server.close()
        await self.admission.end_all()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.admission.track(task)
        await self._serve(reader, writer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            channel = await AgiChannel.accept(reader, writer)
        except (AgiError, TimeoutError, OSError) as exc:
            log.warning("FastAGI connection from %s dropped: %s",
                        writer.get_extra_info("peername"), exc)
            writer.close()
            return
        request = channel.request
        try:
            tenant = self._tenants.resolve([request.tenant_name])
        except UnknownTenantError:
            reason = (f"unknown tenant {request.tenant_name!r} in AGI URL "
                      f"agi://host:port/<tenant> (script {request.script!r}); "
                      f"configured tenants: {', '.join(self._tenants.names)}")
            log.error("rejecting %s: %s", request.get("channel"), reason)
            await self._reject(channel, reason, self._settings.unknown_tenant_prompt)
            return
        if (refused := self.admission.refusal(len(self.sessions))) is not None:
            log.warning("rejecting %s: %s", request.get("channel"), refused)
            await self._reject(channel, refused, self._settings.busy_prompt)
            return
        session = AgiSession(channel, tenant, self._services, self.directory, self._limits,
                             self._settings.max_call_seconds)
        self.sessions[session.id] = session
        self.admission.admitted()
        log.info("agi call %s from %s (%s) -> tenant %s [%d live]", session.id,
                 session.record.caller or "unknown", session.record.channel_name, tenant.name,
                 len(self.sessions))
        try:
            await session.run()
        finally:
            self.sessions.pop(session.id, None)
            self.admission.finished(session.record)

    async def _reject(self, channel: AgiChannel, reason: str, prompt: str) -> None:
        """Tell the caller why (a short prompt), then hang up; tolerate early hang-ups."""
        rejected = self.admission.reject(RejectedCall(
            channel.request.get("uniqueid"), channel.request.get("channel"), reason, prompt))
        async with channel:
            try:
                await channel.answer()
                await channel.stream_file(prompt)
                rejected.prompt_state = "done"
                await channel.hangup()
            except AgiError as exc:
                rejected.prompt_state = rejected.prompt_state or f"not played: {exc}"


async def default_services(settings: Settings, tenants: TenantRegistry) -> SpeechServices:
    """The configured providers (the same factory as the ARI agent) and tenant data,
    probed, loaded and warmed up once."""
    from voice_agent.providers.factory import Providers
    from voice_agent.tenants.data import TenantDatabases

    providers = Providers(settings, tenants)
    default = providers.default
    per_tenant = {name: (p.stt, p.tts) for name, p in providers.overrides.items()}
    services = SpeechServices(TenantDatabases(settings.data_dir), default.stt, default.tts,
                              per_tenant=per_tenant)
    await providers.probe()
    log.info("loading speech models (once per process)")
    await services.warm_up()
    return services


@contextlib.asynccontextmanager
async def running_agi_server(
    settings: Settings, *, drain_seconds: float = 0.0, services: SpeechServices | None = None,
    host: str | None = None, port: int | None = None, tenants: TenantRegistry | None = None,
) -> AsyncIterator[FastAgiServer]:
    """Run the FastAGI server for the ``async with`` block (tests pass their own services;
    ``voice-agent agi`` passes its checked, reloadable tenants).

    Raises :class:`AgiError` when it cannot listen or its audio directory is not usable.
    """
    tenants = tenants or TenantRegistry.load()
    owned = services is None
    services = services or await default_services(settings, tenants)
    server = FastAgiServer(settings, tenants, services)
    host = host or settings.agi_host
    port = settings.agi_port if port is None else port
    try:
        await server.start(host, port)
    except OSError as exc:
        raise AgiError(f"cannot serve FastAGI on {host}:{port}: {exc}") from exc
    source = f"agi-live-{id(server)}"
    metrics.add_source(source, metrics.live_calls(
        "agi", lambda: [session.record for session in server.sessions.values()]))
    try:
        yield server
    finally:
        metrics.remove_source(source)
        await server.shutdown(drain_seconds)
        if owned:
            await services.aclose()
