"""One call, from answer to hang-up, and everything it owns.

A :class:`CallSession` answers the caller, puts the channel in a mixing bridge
of its own (the place where the media issue attaches the agent's externalMedia
channel), plays the tenant's greeting and then holds the line until the caller
hangs up, the call hits ``max_call_seconds``, or the service shuts down.

Lifecycle rule: every resource the session creates is registered on an
``AsyncExitStack`` the moment it exists, and the stack is unwound in ``run``'s
``finally``. A hang-up cancels the session's work task wherever it is waiting
(playback, model call, ...), so nothing lingers and nothing leaks.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from contextlib import AsyncExitStack
from typing import Any

from voice_agent.ari.ari_audio_bridge import MediaFactory, bridge_prefix
from voice_agent.ari.asterisk_ari import AriClient, AriError, AriNotFoundError
from voice_agent.ari.playback import PlaybackTracker
from voice_agent.calls.log_context import in_call
from voice_agent.calls.protocol import CallAgent
from voice_agent.calls.record import TENANT_VARIABLE, CallRecord, CallState
from voice_agent.media.call_audio import CallAudio
from voice_agent.tenants import Tenant

log = logging.getLogger(__name__)








#: Asterisk's own sounds (they need neither our media path nor our TTS) for a call the
#: agent cannot go on with: the apology, then, unless a person takes over, the goodbye.
SORRY_PROMPT, CALL_LATER_PROMPT = "im-sorry", "please-try-call-later"
#: What a caller hears when the agent's audio path dies mid-call.
MEDIA_LOST_PROMPTS = (SORRY_PROMPT, CALL_LATER_PROMPT)


class CallSession:
    """The agent's side of one answered call."""

    def __init__(
        self,
        *,
        channel: dict[str, Any],
        tenant: Tenant,
        ari: AriClient,
        playbacks: PlaybackTracker,
        max_seconds: float,
        media: MediaFactory | None = None,
        agent: CallAgent | None = None,
    ) -> None:
        self.id = uuid.uuid4().hex[:12]
        self.channel_id: str = channel["id"]
        self.tenant = tenant
        self.record = CallRecord(
            session_id=self.id,
            channel_id=self.channel_id,
            channel_name=channel.get("name", ""),
            caller=(channel.get("caller") or {}).get("number", ""),
            tenant=tenant.name,
            number=_dialled(channel),
        )
        self._ari = ari
        self._playbacks = playbacks
        self._max_seconds = max_seconds
        self._media = media
        self._agent = agent
        #: The call's audio path once attached (None for a greeting-only agent).
        self.audio: CallAudio | None = None
        #: Keys the caller pressed, for the agent (also kept in the record).
        self.dtmf: asyncio.Queue[str] = asyncio.Queue()
        #: Set by the agent to hand the caller to a person: (context, extension).
        self.transfer_to: tuple[str, str] | None = None
        #: Set by the agent when it cannot go on (why): see :meth:`_give_up`.
        self.gave_up: str | None = None
        self._work: asyncio.Task[None] | None = None
        self._caller_gone = False
        self.transition(CallState.STARTING)

    @property
    def state(self) -> CallState:
        return self.record.transitions[-1][1]

    def transition(self, state: CallState) -> None:
        """Enter ``state``, recorded with the wall-clock time; staying in a state is a no-op."""
        if self.record.transitions and self.state is state:
            return
        self.record.transitions.append((time.time(), state))
        log.info("call %s [%s] -> %s", self.id, self.tenant.name, state.value)

    async def run(self) -> None:
        """Serve the call until it ends; always releases what it created."""
        in_call(self.id, self.record.tenant)
        try:
            async with AsyncExitStack() as resources:
                await self._work_until_end(resources)
        finally:
            self.record.ended_at = time.time()
            self.transition(CallState.CLOSED)
            log.info("call %s closed after %.1f s: %s", self.id,
                     self.record.ended_at - self.record.started_at, self.record.end_reason)

    async def _work_until_end(self, resources: AsyncExitStack) -> None:
        """Run the call's work as a task a hang-up can cancel; map how it ended."""
        self._work = asyncio.create_task(self._converse(resources), name=f"call-{self.id}")
        if self._caller_gone:  # hung up before we even started
            self._work.cancel()
        try:
            await self._work
            self.record.end_reason = self.record.end_reason or "completed"
        except asyncio.CancelledError:
            if not self._caller_gone:
                self.record.end_reason = self.record.end_reason or "service shutdown"
                raise
        except AriNotFoundError:
            # The caller's channel vanished between two of our REST calls.
            self._caller_gone = True
            self.record.end_reason = self.record.end_reason or "caller hung up during setup"
        except (AriError, TimeoutError) as exc:
            self.record.end_reason = f"error: {exc}"
            log.error("call %s failed: %s", self.id, exc)
        except Exception as exc:  # a bug in an agent must end one call, not the service
            self.record.end_reason = f"internal error: {exc!r}"
            log.exception("call %s crashed", self.id)
        finally:
            if not self._caller_gone:
                await self._quietly(self._ari.hangup(self.channel_id))

    async def _converse(self, resources: AsyncExitStack) -> None:
        await self._ari.answer(self.channel_id)
        bridge_id = f"{bridge_prefix(self._ari.app)}{self.id}"
        await self._ari.create_bridge(bridge_id)
        self.record.bridges.append(bridge_id)
        resources.push_async_callback(self._quietly, self._ari.destroy_bridge(bridge_id))
        await self._ari.add_to_bridge(bridge_id, self.channel_id)
        await self._ari.set_variable(self.channel_id, TENANT_VARIABLE, self.tenant.name)
        if self._media is not None:
            self.audio = await self._media.attach(bridge_id, resources)

        agent = self._agent if self.audio is not None else None  # no media: nothing to say
        try:
            async with asyncio.timeout(self._max_seconds) as cap:
                self.transition(CallState.GREETING)
                if not getattr(agent, "speaks_greeting", False):
                    await self.play(self.tenant.greeting_prompt)
                    self.transition(CallState.LISTENING)
                if agent is not None:
                    await agent(self)
                    if self.gave_up is not None:
                        await self._give_up(self.gave_up)
                        return
                    if self.transfer_to is not None:
                        await self._transfer(*self.transfer_to)
                        return
                    if self.record.end_reason:  # the agent ended the call (goodbye)
                        return
                    if self.audio is not None and self.audio.connection_lost:
                        await self._give_up("media connection lost")
                        return
                await asyncio.Event().wait()  # hold the line until hang-up or the cap
        except TimeoutError:
            if not cap.expired():
                raise  # some inner step timed out, not the call's cap
            self.record.end_reason = f"max call length {self._max_seconds:.0f} s reached"

    async def _give_up(self, reason: str) -> None:
        """The agent cannot go on (its audio path died, or it cannot speak at all): say
        sorry with Asterisk's own sounds, then hand the caller to the person in
        ``transfer_to`` or end the call, rather than hold a line on which nobody
        will ever answer."""
        self.record.end_reason = reason
        then = "transferring" if self.transfer_to is not None else "ending the call"
        log.error("call %s: %s; telling the caller with Asterisk's prompts and %s",
                  self.id, reason, then)
        await self.play(SORRY_PROMPT)
        if self.transfer_to is not None:
            await self._transfer(*self.transfer_to)
            self.record.end_reason = f"{reason}; {self.record.end_reason}"
        else:
            await self.play(CALL_LATER_PROMPT)

    async def play(self, prompt: str) -> str:
        """Play an Asterisk sound to the caller and wait for it to finish."""
        state = await self._playbacks.play(self.channel_id, f"sound:{prompt}")
        self.record.prompts.append((prompt, state))
        return state

    async def _transfer(self, context: str, extension: str) -> None:
        """Send the caller back into the dialplan (an operator queue); the call is theirs now."""
        # Mark first: the StasisEnd of a channel leaving alive can beat the REST reply,
        # and it is not a hang-up; nor may cleanup hang the transferred caller up.
        self._caller_gone = True
        self.record.end_reason = f"transferred to {extension}@{context}"
        try:
            await self._ari.request("POST", f"/channels/{self.channel_id}/continue", params={
                "context": context, "extension": extension, "priority": 1})
        except AriError as exc:
            self._caller_gone = False  # still ours: the session's cleanup hangs up
            self.record.end_reason = f"transfer to {extension}@{context} failed: {exc}"
            log.error("call %s: %s", self.id, self.record.end_reason)

    def on_dtmf(self, digit: str) -> None:
        """A key the caller pressed: kept in the record and handed to the agent."""
        self.record.dtmf.append((time.time(), digit))
        self.dtmf.put_nowait(digit)
        log.info("call %s DTMF %r", self.id, digit)

    def on_caller_gone(self, reason: str) -> None:
        """The caller's channel left Stasis or was destroyed: stop all work now."""
        if self._caller_gone:
            return
        self._caller_gone = True
        self.record.end_reason = self.record.end_reason or reason
        if self._work is not None:
            self._work.cancel()

    @staticmethod
    async def _quietly(call: Any) -> None:
        """Await a cleanup call; a resource already gone is not an error."""
        try:
            await call
        except AriNotFoundError:
            pass
        except AriError as exc:
            log.warning("cleanup step failed: %s", exc)


def _dialled(channel: dict[str, Any]) -> str:
    """The extension the channel was in when it entered Stasis (the dialled number)."""
    dialplan = channel.get("dialplan")
    exten = dialplan.get("exten") if isinstance(dialplan, dict) else None
    return exten if isinstance(exten, str) else ""
