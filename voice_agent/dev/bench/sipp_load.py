"""Background callers for ``bench media --phones sipp``: production-shaped SIP calls.

The simulated phones of :mod:`voice_agent.dev.bench.media` are ARI-originated SIP
calls from Asterisk to itself, so each one costs Asterisk *two* PJSIP channels,
two UnicastRTP channels and two bridges: twice a real call, on the same 2
cores. With ``--phones sipp``, all calls but a few measured ones come from
one ``sipp`` process (C, one SIP UA and RTP sender for all calls) straight
into PJSIP, as a trunk or desk phones would: one PJSIP channel per call plus
the agent's own bridge and media channel. Each plays the same probe (60 ms
burst per second) from a pcap, so the echo agent works exactly as hard; their
echoes are not measured (sipp does not record), the few SimPhone calls are.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import time
import uuid
from pathlib import Path

import psutil

from voice_agent.ari.asterisk_ari import AriClient, AriError
from voice_agent.config import Settings
from voice_agent.dev.sim.caller import PLAY_PCAP, SIPP_SCENARIO, free_udp_port
from voice_agent.dev.sim.pcap import write_rtp_pcap

log = logging.getLogger(__name__)

#: sipp's call rate; at 20 calls/s some of the agent's ARI setup requests timed out (5 s).
CALLS_PER_SECOND = 10


class SippLoad:
    """``calls`` sipp calls to ``number``, each streaming ``payloads``, held ``hold_seconds``."""

    def __init__(self, settings: Settings, calls: int, payloads: list[bytes],
                 hold_seconds: float, number: str = "100") -> None:
        self.settings = settings
        self.calls = calls
        self.payloads = payloads
        self.hold_seconds = hold_seconds
        self.number = number
        self.token = f"{uuid.uuid4().int % 10**10:010d}"
        self.answered = 0
        self._process: asyncio.subprocess.Process | None = None
        self._tmp = tempfile.TemporaryDirectory(prefix="va-sipp-load-")

    @property
    def ramp_seconds(self) -> float:
        return self.calls / CALLS_PER_SECOND

    async def __aenter__(self) -> psutil.Process:
        tmp = Path(self._tmp.name)
        pcap = write_rtp_pcap(tmp / "probe.pcap", self.payloads)
        scenario = tmp / "load.xml"
        scenario.write_text(SIPP_SCENARIO.replace("{media}", PLAY_PCAP.format(pcap=pcap)))
        cmd = [
            "sipp", f"127.0.0.1:{self.settings.sip_port}", "-sf", str(scenario),
            "-s", self.number, "-m", str(self.calls), "-l", str(self.calls),
            "-r", str(CALLS_PER_SECOND), "-rp", "1000",
            "-i", "127.0.0.1", "-p", str(free_udp_port()), "-mp", str(free_udp_port()),
            "-set", "caller", self.token, "-d", str(int(self.hold_seconds * 1000)),
            "-nostdin", "-trace_err", "-error_file", str(tmp / "errors.log"),
        ]
        self._process = await asyncio.create_subprocess_exec(
            *cmd, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, cwd=tmp)
        return psutil.Process(self._process.pid)

    async def wait_answered(self, timeout: float) -> int:
        """Until every sipp call is up in Asterisk (or ``timeout``); how many are."""
        deadline = time.monotonic() + timeout
        async with AriClient(self.settings.ari_url, self.settings.ari_user,
                             self.settings.ari_secret(), "va-sipp-observer") as ari:
            while time.monotonic() < deadline:
                with contextlib.suppress(AriError):
                    self.answered = sum(
                        1 for c in await ari.list_channels()
                        if (c.get("caller") or {}).get("number") == self.token
                        and c.get("state") == "Up")
                if self.answered >= self.calls:
                    break
                await asyncio.sleep(0.5)
        return self.answered

    async def __aexit__(self, *exc: object) -> None:
        assert self._process is not None
        if self._process.returncode is None:
            self._process.terminate()
            try:
                async with asyncio.timeout(10):
                    await self._process.wait()
            except TimeoutError:
                self._process.kill()
                await self._process.wait()
        errors = Path(self._tmp.name) / "errors.log"
        if errors.exists() and errors.stat().st_size:
            log.warning("sipp reported errors: %s", errors.read_text(errors="replace")[-600:])
        self._tmp.cleanup()
