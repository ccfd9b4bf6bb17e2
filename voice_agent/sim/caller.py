"""Simulated callers: real calls into the real dialplan, two ways.

* ``local``: an ARI originate of ``Local/NUMBER@CONTEXT`` from a separate,
  throw-away Stasis app (the "caller app"). The ``;2`` leg runs the dialplan
  exactly as a trunk call would; the ``;1`` leg is our phone: we see it answer,
  can send DTMF on it and hang it up.
* ``sip``: ``sipp`` places a genuine SIP/RTP call to the dev Asterisk's PJSIP
  endpoint, so PJSIP, SDP negotiation and RTP are on the path too.

Either way the result says which tenant answered (the agent sets the
``VOICE_AGENT_TENANT`` channel variable on the call), whether and when the call
was answered, and who hung up.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from voice_agent.telephony.asterisk_ari import AriClient, AriError, AriNotFoundError, Event
from voice_agent.telephony.call_session import TENANT_VARIABLE

SIPP_SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="voice-agent caller">
  <Global variables="caller" />
  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "va-sim" <sip:[$caller]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: sip:[$caller]@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rtd="true"/>
  <send>
    <![CDATA[
      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "va-sim" <sip:[$caller]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Contact: sip:[$caller]@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <pause/>
  <send retrans="500">
    <![CDATA[
      BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "va-sim" <sip:[$caller]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Contact: sip:[$caller]@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="200" crlf="true"/>
</scenario>
"""


@dataclass
class CallResult:
    """What a simulated caller observed."""

    number: str
    via: str
    answered: bool
    tenant: str | None
    setup_seconds: float | None
    duration_seconds: float
    hung_up_by: str
    detail: str = ""
    caller_channel: str = ""


class _CallerApp:
    """A throw-away Stasis app that owns the caller's half of Local calls."""

    def __init__(self, ari: AriClient) -> None:
        self.ari = ari
        self._queues: dict[str, asyncio.Queue[Event]] = {}
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> _CallerApp:
        self._task = asyncio.create_task(self._pump())
        async with asyncio.timeout(10):
            await self.ari.connected.wait()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _pump(self) -> None:
        async for event in self.ari.events():
            channel_id = (event.get("channel") or {}).get("id", "")
            queue = self._queues.get(channel_id)
            if queue is not None:
                queue.put_nowait(event)

    def watch(self, channel_id: str) -> asyncio.Queue[Event]:
        return self._queues.setdefault(channel_id, asyncio.Queue())


async def _next_of(queue: asyncio.Queue[Event], types: set[str], timeout: float) -> Event | None:
    """The next event of one of ``types``, or None on timeout."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                event = await queue.get()
                if event["type"] in types:
                    return event
    except TimeoutError:
        return None


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


async def place_local_call(
    ari_url: str,
    user: str,
    password: str,
    number: str,
    *,
    context: str = "voice-agent-ari",
    hold_seconds: float = 3.0,
    dtmf: str = "",
    answer_timeout: float = 10.0,
) -> CallResult:
    """Call ``number`` through a Local channel, hold the line, hang up, report."""
    app = f"va-caller-{uuid.uuid4().hex[:8]}"
    async with AriClient(ari_url, user, password, app) as ari, _CallerApp(ari) as caller_app:
        phone = f"va-sim-{uuid.uuid4().hex[:12]}"
        far_end = f"{phone}-2"
        queue = caller_app.watch(phone)
        started = time.monotonic()
        try:
            await ari.originate(f"Local/{number}@{context}", app=app, channel_id=phone,
                                other_channel_id=far_end, timeout=int(answer_timeout))
        except AriError as exc:
            return CallResult(number, "local", False, None, None, 0.0, "failed", str(exc))
        event = await _next_of(queue, {"StasisStart", "ChannelDestroyed"}, answer_timeout + 2)
        if event is None or event["type"] != "StasisStart":
            cause = (event or {}).get("cause_txt", "no answer")
            return CallResult(number, "local", False, None, None, 0.0, "failed",
                              f"not answered: {cause}", phone)
        answered = time.monotonic()
        tenant = await read_tenant(ari, far_end)
        for digit in dtmf:
            with contextlib.suppress(AriError):
                await ari.send_dtmf(phone, digit)
            await asyncio.sleep(0.15)
        remaining = hold_seconds - (time.monotonic() - answered)
        ended = await _next_of(queue, {"StasisEnd", "ChannelDestroyed"}, max(0.0, remaining))
        hung_up_by = "agent" if ended is not None else "caller"
        if ended is None:
            with contextlib.suppress(AriError):
                await ari.hangup(phone)
        return CallResult(number, "local", True, tenant, answered - started,
                          time.monotonic() - answered, hung_up_by, caller_channel=phone)


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def place_sip_call(
    ari_url: str,
    user: str,
    password: str,
    number: str,
    *,
    sip_target: str = "127.0.0.1:5060",
    hold_seconds: float = 3.0,
) -> CallResult:
    """Call ``number`` over real SIP with sipp; the tenant is read back through ARI."""
    token = f"va{uuid.uuid4().int % 10**10:010d}"
    with tempfile.TemporaryDirectory(prefix="va-sipp-") as tmp:
        scenario = Path(tmp) / "caller.xml"
        scenario.write_text(SIPP_SCENARIO)
        cmd = [
            "sipp", sip_target, "-sf", str(scenario), "-s", number, "-m", "1", "-l", "1",
            "-i", "127.0.0.1", "-p", str(_free_udp_port()), "-mp", str(_free_udp_port()),
            "-set", "caller", token, "-d", str(int(hold_seconds * 1000)),
            "-timeout", f"{int(hold_seconds + 20)}s", "-timeout_error", "-nostdin",
            "-trace_err", "-error_file", str(Path(tmp) / "errors.log"),
        ]
        started = time.monotonic()
        process = await asyncio.create_subprocess_exec(
            *cmd, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, cwd=tmp
        )
        tenant, channel_name, setup = None, "", None
        async with AriClient(ari_url, user, password, "va-sip-observer") as ari:
            deadline = time.monotonic() + hold_seconds + 5
            while process.returncode is None and time.monotonic() < deadline and not tenant:
                with contextlib.suppress(AriError):
                    for channel in await ari.list_channels():
                        if (channel.get("caller") or {}).get("number") == token:
                            channel_name = channel["name"]
                            if channel.get("state") == "Up":
                                setup = setup or time.monotonic() - started
                                tenant = await read_tenant(ari, channel["id"], wait=1.0)
                await asyncio.sleep(0.05)
        _, stderr = await process.communicate()
        errors = (Path(tmp) / "errors.log")
        detail = errors.read_text(errors="replace")[-1500:] if errors.exists() else ""
    ok = process.returncode == 0
    return CallResult(
        number, "sip", ok, tenant, setup, time.monotonic() - started - (setup or 0.0),
        "caller" if ok else "failed",
        "" if ok else f"sipp exit {process.returncode}: {detail or stderr.decode()[-800:]}",
        channel_name,
    )
