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
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

from voice_agent.ari.asterisk_ari import AriClient, AriError
from voice_agent.dev.sim.phone import CallNotAnswered, Recording, SimPhone, read_tenant

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
  {media}
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


PLAY_PCAP = '<nop><action><exec play_pcap_audio="{pcap}"/></action></nop>'


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
    recording: Recording | None = None


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
    async with SimPhone(ari_url, user, password) as phone:
        try:
            call = await phone.dial(number, context=context, answer_timeout=answer_timeout)
        except CallNotAnswered as exc:
            return CallResult(number, "local", False, None, None, 0.0, "failed", str(exc))
        if dtmf:
            with contextlib.suppress(AriError):
                await call.send_dtmf(dtmf)
        remaining = hold_seconds - (time.monotonic() - call.answered_at)
        by_agent = await call.wait_ended(max(0.0, remaining))
        await call.hangup()
        return CallResult(number, "local", True, call.tenant, call.setup_seconds,
                          time.monotonic() - call.answered_at,
                          "agent" if by_agent else "caller", caller_channel=call.channel_id)


def free_udp_port() -> int:
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
    pcap: Path | None = None,
    recorder: SimPhone | None = None,
) -> CallResult:
    """Call ``number`` over real SIP with sipp; the tenant is read back through ARI.

    With ``pcap``, sipp plays that RTP capture into the call once answered; with
    ``recorder``, what the caller is sent is recorded (snoop) and returned.
    """
    token = f"va{uuid.uuid4().int % 10**10:010d}"
    async with AsyncExitStack() as resources:
        tmp = resources.enter_context(tempfile.TemporaryDirectory(prefix="va-sipp-"))
        scenario = Path(tmp) / "caller.xml"
        media = PLAY_PCAP.format(pcap=pcap) if pcap is not None else ""
        scenario.write_text(SIPP_SCENARIO.replace("{media}", media))
        cmd = [
            "sipp", sip_target, "-sf", str(scenario), "-s", number, "-m", "1", "-l", "1",
            "-i", "127.0.0.1", "-p", str(free_udp_port()), "-mp", str(free_udp_port()),
            "-set", "caller", token, "-d", str(int(hold_seconds * 1000)),
            "-timeout", f"{int(hold_seconds + 20)}s", "-timeout_error", "-nostdin",
            "-trace_err", "-error_file", str(Path(tmp) / "errors.log"),
        ]
        started = time.monotonic()
        process = await asyncio.create_subprocess_exec(
            *cmd, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, cwd=tmp
        )
        tenant, channel_name, setup, recording = None, "", None, None
        async with AriClient(ari_url, user, password, "va-sip-observer") as ari:
            deadline = time.monotonic() + hold_seconds + 5
            while process.returncode is None and time.monotonic() < deadline and not tenant:
                with contextlib.suppress(AriError):
                    for channel in await ari.list_channels():
                        if (channel.get("caller") or {}).get("number") == token:
                            channel_name = channel["name"]
                            if channel.get("state") == "Up":
                                setup = setup or time.monotonic() - started
                                if recorder is not None:
                                    recording = await recorder.record(channel["id"], resources)
                                tenant = await read_tenant(ari, channel["id"], wait=1.0)
                await asyncio.sleep(0.05)
        _, stderr = await process.communicate()
        heard = await recorder.stop_recording(recording) if recorder and recording else None
        errors = (Path(tmp) / "errors.log")
        detail = errors.read_text(errors="replace")[-1500:] if errors.exists() else ""
    ok = process.returncode == 0
    return CallResult(
        number, "sip", ok, tenant, setup, time.monotonic() - started - (setup or 0.0),
        "caller" if ok else "failed",
        "" if ok else f"sipp exit {process.returncode}: {detail or stderr.decode()[-800:]}",
        channel_name, heard,
    )
