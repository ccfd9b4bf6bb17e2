"""A simulated telephone for Local-channel calls: dial, talk, listen, record, hang up.

The phone is a throw-away Stasis app that owns the ``;1`` half of
``Local/NUMBER@CONTEXT`` calls (the ``;2`` half runs the real dialplan into the
agent, exactly like a trunk call). With ``audio=True`` the phone gets a mouth
and ears: its ``;1`` channel is bridged with an RTP externalMedia channel of
its own (µ-law, like a real phone line), built with the same
:class:`~voice_agent.ari.ari_audio_bridge.MediaFactory` the agent uses, so
the simulator can speak known signals into the call and timestamp what comes
back at the caller side.

For an independent view of what the caller hears, :meth:`PhoneCall.record_heard`
snoops the agent-side caller channel (``spy=out``: audio sent towards the
caller) and records it in Asterisk; :meth:`PhoneCall.stop_recording` downloads
the WAV through ARI.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
import uuid
import wave
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

import numpy as np

from voice_agent.ari.ari_audio_bridge import HelperChannels, MediaFactory
from voice_agent.ari.asterisk_ari import AriClient, AriError, AriNotFoundError, Event
from voice_agent.audio.frames import Pcm16
from voice_agent.calls.record import TENANT_VARIABLE
from voice_agent.media.call_audio import CallAudio
from voice_agent.media.media_clock import MediaClock
from voice_agent.media.rtp_transport import RtpCallAudio, RtpMediaServer


class CallNotAnswered(RuntimeError):
    """The dialled call failed or was not answered in time (message says why)."""


@dataclass
class Recording:
    """Audio recorded in Asterisk: PCM16 samples and their rate."""

    samples: Pcm16
    rate: int


@dataclass
class PhoneCall:
    """One call placed by :class:`SimPhone`."""

    phone: SimPhone
    number: str
    channel_id: str
    far_end_id: str
    dialled_at: float
    answered_at: float = 0.0
    tenant: str | None = None
    audio: CallAudio | None = None
    resources: AsyncExitStack = field(default_factory=AsyncExitStack)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    end_cause: str = ""
    _recording: str | None = None

    @property
    def setup_seconds(self) -> float:
        return self.answered_at - self.dialled_at

    async def send_dtmf(self, digits: str, gap: float = 0.15) -> None:
        for digit in digits:
            await self.phone.ari.send_dtmf(self.channel_id, digit)
            await asyncio.sleep(gap)

    async def say(self, pcm: Pcm16, rate: int = 16000) -> float:
        """Speak ``pcm`` into the call; returns when its last frame has been sent."""
        assert self.audio is not None, "dial(..., audio=True) to talk"
        self.audio.write(pcm, rate)
        self.audio.finish()
        await self.audio.wait_played()
        return time.monotonic()

    async def record_heard(self) -> None:
        """Start recording what the caller hears (snoop spy=out on the agent-side leg)."""
        self._recording = await self.phone.record(self.far_end_id, self.resources)

    async def stop_recording(self) -> Recording:
        """Stop the recording and download it (removed from Asterisk afterwards)."""
        assert self._recording is not None, "record_heard() first"
        name, self._recording = self._recording, None
        return await self.phone.stop_recording(name)

    async def hangup(self) -> None:
        await self.phone.hangup_quietly(self.channel_id)
        await self.resources.aclose()

    async def wait_ended(self, timeout: float) -> bool:
        """True if the far end hung up within ``timeout``."""
        try:
            async with asyncio.timeout(timeout):
                await self.ended.wait()
        except TimeoutError:
            return False
        return True


class SimPhone:
    """A Stasis app that places Local-channel calls and optionally talks on them."""

    def __init__(self, ari_url: str, user: str, password: str,
                 audio_factory: type[RtpCallAudio] = RtpCallAudio) -> None:
        self.ari = AriClient(ari_url, user, password, f"va-phone-{uuid.uuid4().hex[:8]}")
        self.helpers = HelperChannels()
        self._clock = MediaClock()
        self._rtp = RtpMediaServer(self._clock, audio_factory)
        self._media = MediaFactory(self.ari, self.helpers, app=self.ari.app, transport="rtp",
                                   rtp_server=self._rtp, rtp_format="ulaw")
        self._calls: dict[str, PhoneCall] = {}
        self._answers: dict[str, asyncio.Future[Event]] = {}
        self._pump: asyncio.Task[None] | None = None

    async def __aenter__(self) -> SimPhone:
        await self.ari.__aenter__()
        await self._rtp.start("127.0.0.1", 0)
        self._pump = asyncio.create_task(self._events())
        async with asyncio.timeout(10):
            await self.ari.connected.wait()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for call in list(self._calls.values()):
            await call.hangup()
        if self._pump is not None:
            self._pump.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)
        await self._clock.aclose()
        self._rtp.close()
        await self.ari.__aexit__(*exc)

    async def _events(self) -> None:
        async for event in self.ari.events():
            channel_id = (event.get("channel") or {}).get("id", "")
            if event["type"] == "StasisStart" and self.helpers.started(channel_id):
                continue
            answer = self._answers.get(channel_id)
            if answer is not None and not answer.done() and event["type"] in (
                    "StasisStart", "ChannelDestroyed"):
                answer.set_result(event)
            call = self._calls.get(channel_id)
            if call is not None and event["type"] in ("StasisEnd", "ChannelDestroyed"):
                call.end_cause = call.end_cause or event.get("cause_txt", event["type"])
                call.ended.set()

    async def dial(self, number: str, *, context: str = "voice-agent-ari", via: str = "local",
                   audio: bool = False, identify: bool = True,
                   answer_timeout: float = 10.0) -> PhoneCall:
        """Call ``number``; returns once answered (raises :class:`CallNotAnswered`).

        ``via="local"``: ``Local/NUMBER@CONTEXT/n``. ``via="sip"``: a real SIP call
        from the ``sim-phone`` endpoint into this Asterisk's own PJSIP port, which
        enters ``[voice-agent-ari]`` as the ``test-caller`` endpoint. Use SIP for
        audio: Asterisk 22 drops RTP-originated frames crossing a Local channel
        when their RTP sequence numbers start at or above 32768 (measured; see
        NOTES in the README), which would silence the agent at random.
        ``identify=False`` skips finding the agent-side leg and reading the tenant
        (load benchmarks: nothing to record, and it saves ARI round trips).
        """
        channel_id = f"va-sim-{uuid.uuid4().hex[:12]}"
        token = f"{uuid.uuid4().int % 10**10:010d}"
        far_end = f"{channel_id}-2" if via == "local" else ""
        call = PhoneCall(self, number, channel_id, far_end, time.monotonic())
        if via == "local":
            endpoint, extra = f"Local/{number}@{context}/n", {"other_channel_id": far_end}
        elif via == "sip":
            endpoint, extra = f"PJSIP/{number}@sim-phone", {}
        else:
            raise ValueError(f"via must be 'local' or 'sip', not {via!r}")
        answered: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
        self._answers[channel_id] = answered
        try:
            try:
                await self.ari.originate(endpoint, app=self.ari.app, channel_id=channel_id,
                                         caller_id=token, timeout=int(answer_timeout), **extra)
            except AriError as exc:
                raise CallNotAnswered(f"dialling {number}@{context} failed: {exc}") from exc
            try:
                async with asyncio.timeout(answer_timeout + 2):
                    event = await answered
            except TimeoutError:
                raise CallNotAnswered(f"{number}: no answer in {answer_timeout:.0f} s") from None
        finally:
            del self._answers[channel_id]
        if event["type"] != "StasisStart":
            raise CallNotAnswered(f"{number}: {event.get('cause_txt', 'not answered')}")
        call.answered_at = time.monotonic()
        if identify and not call.far_end_id:
            call.far_end_id = await self._find_caller_leg(token)
        self._calls[channel_id] = call
        call.resources.callback(self._calls.pop, channel_id, None)
        if audio:
            bridge_id = f"va-phone-bridge-{uuid.uuid4().hex[:12]}"
            await self.ari.create_bridge(bridge_id)
            call.resources.push_async_callback(self._destroy_bridge, bridge_id)
            await self.ari.add_to_bridge(bridge_id, channel_id)
            call.audio = await self._media.attach(bridge_id, call.resources)
        if identify:
            call.tenant = await read_tenant(self.ari, call.far_end_id)
        return call

    async def _find_caller_leg(self, token: str) -> str:
        """The agent-side channel of a SIP call: the inbound one with our caller id."""
        for _ in range(40):
            for channel in await self.ari.list_channels():
                if ((channel.get("caller") or {}).get("number") == token
                        and channel["name"].startswith("PJSIP/test-caller")):
                    return str(channel["id"])
            await asyncio.sleep(0.05)
        raise CallNotAnswered(f"answered, but no inbound PJSIP channel with caller id {token}")

    async def record(self, channel_id: str, resources: AsyncExitStack) -> str:
        """Record what ``channel_id`` is sent (snoop spy=out); returns the recording name."""
        snoop_id = f"va-snoop-{uuid.uuid4().hex[:12]}"
        name = f"va-heard-{uuid.uuid4().hex[:12]}"
        in_stasis = self.helpers.expect(snoop_id)
        await self.ari.request("POST", f"/channels/{channel_id}/snoop", params={
            "spy": "out", "app": self.ari.app, "snoopId": snoop_id})
        resources.push_async_callback(self.hangup_quietly, snoop_id)
        async with asyncio.timeout(5):
            await in_stasis
        await self.ari.request("POST", f"/channels/{snoop_id}/record", params={
            "name": name, "format": "wav", "ifExists": "overwrite"})
        return name

    async def stop_recording(self, name: str) -> Recording:
        """Stop recording ``name`` and download it (removed from Asterisk afterwards)."""
        with contextlib.suppress(AriNotFoundError):  # already stopped by a hang-up
            await self.ari.request("POST", f"/recordings/live/{name}/stop")
        for _ in range(50):  # the file is finalised just after the stop
            try:
                content = await self.ari.download(f"/recordings/stored/{name}/file")
                break
            except AriNotFoundError:
                await asyncio.sleep(0.05)
        else:
            raise AriError(f"recording {name} not found after stop")
        with contextlib.suppress(AriError):
            await self.ari.request("DELETE", f"/recordings/stored/{name}")
        with wave.open(io.BytesIO(content)) as wav:
            samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
            return Recording(samples.copy(), wav.getframerate())

    async def hangup_quietly(self, channel_id: str) -> None:
        with contextlib.suppress(AriError):
            await self.ari.hangup(channel_id)

    async def _destroy_bridge(self, bridge_id: str) -> None:
        with contextlib.suppress(AriError):
            await self.ari.destroy_bridge(bridge_id)


async def read_tenant(ari: AriClient, channel_id: str, wait: float = 3.0) -> str | None:
    """The tenant the agent assigned to ``channel_id`` (it sets it right after answering)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            value = await ari.get_variable(channel_id, TENANT_VARIABLE)
        except AriNotFoundError:
            value = ""  # not set yet (or the channel just went away: the deadline ends it)
        except AriError:
            return None
        if value:
            return value
        await asyncio.sleep(0.05)
    return None
