"""The Stasis application: routes ARI events to live calls.

One :class:`SessionManager` per process consumes the ordered event stream of
the ``voice_agent`` app and owns every :class:`CallSession`:

* ``StasisStart`` of a caller → tenant from the Stasis args → admission check →
  new session (unknown tenant or full house → prompt, then hang up);
* ``ChannelDtmfReceived`` → the session;
* ``StasisEnd`` / ``ChannelDestroyed`` → the session stops and releases
  everything it created;
* after every events-socket (re)connect → reconcile: sessions whose channel no
  longer exists in Asterisk (it restarted, or the call ended while we were
  disconnected) are closed, and media channels and bridges of ours that no
  session owns are removed;
* every ``reconcile_seconds`` while connected → the same check as a janitor,
  for leftovers no event announces (a teardown whose REST call failed under
  load, a lost ``StasisEnd``), plus *stranded callers*: channels sitting in
  this Stasis app with no session, left by an agent process that died
  mid-call (Asterisk replays no ``StasisStart`` to the next one, and a SIP
  caller without an RTP timeout would hear silence for ever); they are hung
  up. It acts only on what it found on two checks in a row: a call being set
  up has a media channel or bridge (or its ``StasisStart`` is still queued)
  for a moment before its session exists, and one check alone cannot tell
  that from a leftover.

Handlers run synchronously in event order and never block; any waiting
(answer, playback) happens in per-call tasks the manager tracks, so a slow
REST call on one call never delays events for another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from voice_agent.ari.ari_audio_bridge import (
    HelperChannels,
    MediaFactory,
    bridge_prefix,
    media_channel_prefix,
)
from voice_agent.ari.asterisk_ari import AriClient, AriConnectionError, AriError, Event
from voice_agent.ari.call_session import CallSession
from voice_agent.ari.playback import PlaybackTracker
from voice_agent.calls.admission import Admission
from voice_agent.calls.protocol import CallAgent
from voice_agent.calls.record import RejectedCall
from voice_agent.config import Settings
from voice_agent.tenants import TenantRegistry, UnknownTenantError

log = logging.getLogger(__name__)

#: Channel technologies the agent itself creates (media, snoop): never callers.
HELPER_CHANNEL_PREFIXES = ("UnicastRTP/", "Snoop/", "WebSocket/", "AudioSocket/")




class SessionManager:
    """Registry of live calls and dispatcher of the app's ARI events."""

    def __init__(
        self,
        ari: AriClient,
        tenants: TenantRegistry,
        settings: Settings,
        *,
        media: Callable[[HelperChannels], MediaFactory] | None = None,
        agent: CallAgent | None = None,
    ) -> None:
        self.ari = ari
        self._tenants = tenants
        self._settings = settings
        self.playbacks = PlaybackTracker(ari)
        #: Live sessions by caller channel id.
        self.sessions: dict[str, CallSession] = {}
        #: Limit, drain, and finished calls and rejections (newest last, bounded).
        self.admission = Admission(settings.call_limit(), settings.busy_prompt)
        self.completed = self.admission.completed
        self.rejected = self.admission.rejected
        #: Channels the agent created itself (externalMedia, snoop): not callers.
        self.helpers = HelperChannels()
        #: Builds each call's audio path; None = no media (greeting-only agent).
        self.media = media(self.helpers) if media is not None else None
        self.agent = agent
        self.orphans_removed = 0
        self.stranded_removed = 0
        self._events_task: asyncio.Task[None] | None = None
        self._janitor_task: asyncio.Task[None] | None = None
        #: Callers hearing a rejection prompt: in our app without a session, on purpose.
        self._rejecting: set[str] = set()
        #: What the last janitor check found out of line (acted on if seen again).
        self._suspects: set[str] = set()
        #: Events of a handled type whose fields were missing or of the wrong type.
        self.malformed_events = 0
        self._handlers: dict[str, Callable[[Event], None]] = {
            "StasisStart": self._on_stasis_start,
            "StasisEnd": self._on_channel_gone,
            "ChannelDestroyed": self._on_channel_gone,
            "ChannelDtmfReceived": self._on_dtmf,
            "PlaybackFinished": self.playbacks.on_event,
        }

    # ------------------------------------------------------------ main loop
    def start(self) -> None:
        """Start consuming events (reconnecting under the hood) in a background task."""
        self._events_task = asyncio.create_task(self._consume(), name="ari-events")
        if self._settings.reconcile_seconds > 0:
            self._janitor_task = asyncio.create_task(
                self._janitor(self._settings.reconcile_seconds), name="ari-janitor")

    async def _janitor(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            if self.ari.connected.is_set():
                try:
                    await self.reconcile(confirm=True)
                except Exception:  # the janitor must outlive any one bad check
                    log.exception("periodic reconcile failed")

    async def _consume(self) -> None:
        async for event in self.ari.events(on_connected=self.reconcile):
            self.dispatch(event)

    async def wait_connected(self, timeout: float) -> None:
        """Wait until the app is registered in Asterisk; fail fast if the loop died."""
        assert self._events_task is not None, "start() first"
        connected = asyncio.create_task(self.ari.connected.wait())
        try:
            done, _ = await asyncio.wait({connected, self._events_task}, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            connected.cancel()
        if self._events_task in done:
            self._events_task.result()  # raises the reason (e.g. AriAuthError)
            raise AriError("ARI event loop stopped unexpectedly")
        if connected not in done:
            raise AriConnectionError(
                f"no ARI events connection to {self.ari.base_url} within {timeout:.0f} s; "
                "is Asterisk running? (voice-agent asterisk status)"
            )

    def dispatch(self, event: Event) -> None:
        """Route one event; a malformed one is dropped with one clear line, and a failing
        handler is logged: neither is ever fatal to the loop or to another call."""
        kind = event.get("type", "")
        handler = self._handlers.get(kind) if isinstance(kind, str) else None
        if handler is None:
            return
        if (problem := event_problem(event)) is not None:
            self.malformed_events += 1
            log.error("dropping malformed ARI %s event: %s", kind, problem)
            return
        try:
            handler(event)
        except Exception:
            log.exception("error handling ARI event %s", event.get("type"))

    async def reconcile(self, *, confirm: bool = False) -> None:
        """Bring our view and Asterisk's back in line (after every (re)connect).

        Sessions whose channel Asterisk no longer has are closed; media
        channels and bridges carrying this app's id prefix that no live
        session owns (left by a crashed run, or by a teardown that failed
        while Asterisk was overloaded) are removed. With ``confirm`` (the
        periodic janitor) only what the previous ``confirm`` check also found
        is acted on, so calls in the middle of setup or teardown are left alone.
        """
        try:
            channels = await self.ari.list_channels()
            bridges = await self.ari.list_bridges()
        except AriError as exc:
            log.warning("reconcile skipped: %s", exc)
            return
        live = {channel["id"] for channel in channels}
        vanished = [channel_id for channel_id in self.sessions if channel_id not in live]
        owned_bridges = {b for s in self.sessions.values() for b in s.record.bridges}
        media_prefix, own_bridges = media_channel_prefix(self.ari.app), bridge_prefix(self.ari.app)
        orphans = [c["id"] for c in channels
                   if c["id"].startswith(media_prefix) and c["id"] not in self.helpers]
        stale = [b["id"] for b in bridges
                 if b["id"].startswith(own_bridges) and b["id"] not in owned_bridges]
        stranded: list[str] = []
        if confirm:
            stranded = [c["id"] for c in channels if self._stranded(c, media_prefix)]
            found = {*vanished, *orphans, *stale, *stranded}
            seen_before, self._suspects = self._suspects, found
            vanished, orphans, stale, stranded = ([i for i in ids if i in seen_before]
                                                  for ids in (vanished, orphans, stale, stranded))
        for channel_id in stranded:
            log.warning("hanging up %s: in Stasis(%s) with no session (left by an agent that "
                        "stopped mid-call)", channel_id, self.ari.app)
            await self._remove(self.ari.hangup, channel_id)
        self.stranded_removed += len(stranded)
        for channel_id in vanished:
            session = self.sessions.get(channel_id)
            if session is not None:
                log.warning("call %s: channel %s no longer exists in Asterisk",
                            session.id, channel_id)
                session.on_caller_gone("channel gone after ARI reconnect" if not confirm
                                       else "channel gone (found by the periodic check)")
        for channel_id in orphans:
            await self._remove(self.ari.hangup, channel_id)
        for bridge_id in stale:
            await self._remove(self.ari.destroy_bridge, bridge_id)
        if orphans or stale:
            log.warning("reconcile removed %d orphaned media channel(s) and %d bridge(s)",
                        len(orphans), len(stale))
        self.orphans_removed += len(orphans) + len(stale)

    def _stranded(self, channel: dict[str, Any], media_prefix: str) -> bool:
        """A caller channel in this app that no session, helper or rejection owns."""
        dialplan = channel.get("dialplan") or {}
        in_app = (dialplan.get("app_name") == "Stasis"
                  and str(dialplan.get("app_data", "")).split(",")[0] == self.ari.app)
        channel_id = channel["id"]
        return (in_app and channel_id not in self.sessions and channel_id not in self.helpers
                and channel_id not in self._rejecting and not channel_id.startswith(media_prefix))

    @staticmethod
    async def _remove(remove: Callable[[str], Awaitable[None]], object_id: str) -> None:
        try:
            await remove(object_id)
        except AriError as exc:  # gone meanwhile, or Asterisk busy: next reconcile retries
            log.debug("could not remove %s: %s", object_id, exc)

    @property
    def accepting(self) -> bool:
        return self.admission.accepting

    @property
    def calls_total(self) -> int:
        return self.admission.calls_total

    async def shutdown(self, drain_seconds: float = 0.0) -> None:
        """Stop admitting calls, let live ones finish for ``drain_seconds``, end the rest."""
        await self.admission.drain(drain_seconds)
        await self.admission.end_all()
        if self._janitor_task is not None:
            self._janitor_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._janitor_task
        if self._events_task is not None:
            self._events_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, AriError):
                await self._events_task

    # ------------------------------------------------------------- handlers
    def _on_stasis_start(self, event: Event) -> None:
        channel: dict[str, Any] = event["channel"]
        channel_id, name = channel["id"], channel.get("name", "")
        args: list[str] = event.get("args") or []
        if self.helpers.started(channel_id) or (
            not args and name.startswith(HELPER_CHANNEL_PREFIXES)
        ):
            return
        if channel_id in self.sessions:
            return  # re-entry into Stasis (e.g. after a bridge move): same call
        try:
            tenant = self._tenants.resolve(args)
        except UnknownTenantError as exc:
            log.error("rejecting %s (%s): %s", name, channel_id, exc)
            self._reject(channel, str(exc), self._settings.unknown_tenant_prompt)
            return
        if (refused := self.admission.refusal(len(self.sessions))) is not None:
            log.warning("rejecting %s (%s): %s", name, channel_id, refused)
            self._reject(channel, refused, self._settings.busy_prompt)
            return
        session = CallSession(
            channel=channel,
            tenant=tenant,
            ari=self.ari,
            playbacks=self.playbacks,
            max_seconds=self._settings.max_call_seconds,
            media=self.media,
            agent=self.agent,
        )
        self.sessions[channel_id] = session
        self.admission.admitted()
        log.info("call %s from %s (%s) -> tenant %s [%d live]", session.id,
                 session.record.caller or "unknown", name, tenant.name, len(self.sessions))
        self.admission.spawn(self._serve(session), f"session-{session.id}")

    async def _serve(self, session: CallSession) -> None:
        try:
            await session.run()
        finally:
            self.sessions.pop(session.channel_id, None)
            self.admission.finished(session.record)

    def _on_channel_gone(self, event: Event) -> None:
        self.helpers.gone(event["channel"]["id"])  # one of our media channels, maybe
        session = self.sessions.get(event["channel"]["id"])
        if session is not None:
            cause = event.get("cause_txt") or event["type"]
            session.on_caller_gone(f"caller hung up ({cause})")

    def _on_dtmf(self, event: Event) -> None:
        session = self.sessions.get(event["channel"]["id"])
        if session is not None:
            session.on_dtmf(str(event.get("digit", "")))

    # ------------------------------------------------------------ rejection
    def _reject(self, channel: dict[str, Any], reason: str, prompt: str) -> None:
        rejected = self.admission.reject(
            RejectedCall(channel["id"], channel.get("name", ""), reason, prompt))
        self._rejecting.add(rejected.channel_id)
        self.admission.spawn(self._play_and_hang_up(rejected), f"reject-{channel['id']}")

    async def _play_and_hang_up(self, rejected: RejectedCall) -> None:
        """Tell the caller why (a short prompt), then hang up; tolerate early hang-ups."""
        try:
            await self.ari.answer(rejected.channel_id)
            rejected.prompt_state = await self.playbacks.play(
                rejected.channel_id, f"sound:{rejected.prompt}", timeout=15
            )
        except (AriError, TimeoutError) as exc:
            rejected.prompt_state = f"not played: {exc}"
        finally:
            self._rejecting.discard(rejected.channel_id)
            try:
                await self.ari.hangup(rejected.channel_id)
            except AriError:
                pass  # already gone



def event_problem(event: Event) -> str | None:
    """What is wrong with a handled event's fields (None: the handlers can read it)."""
    if event.get("type") == "PlaybackFinished":
        playback = event.get("playback")
        if not isinstance(playback, dict) or not isinstance(playback.get("id", ""), str):
            return "playback is not an object with a text id"
        return None
    channel = event.get("channel")
    if not isinstance(channel, dict) or not isinstance(channel.get("id"), str):
        return "channel.id is missing or not text"
    if not isinstance(channel.get("name", ""), str):
        return "channel.name is not text"
    args = event.get("args")
    if args is not None and not (isinstance(args, list)
                                 and all(isinstance(arg, str) for arg in args)):
        return "args is not a list of text"
    return None
