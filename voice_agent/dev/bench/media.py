"""Media load benchmark: N concurrent echo calls through the real Asterisk.

Setup per run: the agent runs as its own process (``voice-agent serve --agent
echo``) so its CPU and memory are its own; N simulated phones in this process
place real SIP calls (``sim-phone`` endpoint → this Asterisk's PJSIP → the
agent's Stasis app), each with an RTP µ-law media leg of its own. Once every
call is past its greeting, each phone sends a probe for ``seconds``: every
second a 60 ms 1 kHz burst, silence otherwise; the echo agent returns every
frame. Measured:

* agent / Asterisk / phones CPU (% of one core) and agent RSS per call;
* caller-side inter-arrival jitter of the returned packets (p50/p99, ms);
* lost frames: burst frames heard back / burst frames sent over the window;
* agent-side late frames: media-clock ticks > 5 ms past their deadline (rtp);
* caller-side round-trip delay: burst sent → burst heard (p50/p95, ms).

Note the phones' SIP leg doubles Asterisk's work compared with external SIP
phones (two PJSIP channels per call), and the phones share the 2 cores.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import math
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

from voice_agent.ari.asterisk_ari import AriClient
from voice_agent.audio.g711 import ULAW_DECODE, ulaw_encode
from voice_agent.config import Settings
from voice_agent.dev.bench.sipp_load import CALLS_PER_SECOND, SippLoad
from voice_agent.dev.sim.phone import PhoneCall, SimPhone
from voice_agent.dev.sim.signals import tone
from voice_agent.media.rtp import RtpParseError, parse_rtp
from voice_agent.media.rtp_transport import RtpCallAudio

log = logging.getLogger(__name__)

RESULTS = Path("bench/results")
FRAME = 0.02
BURST_FRAMES = 3
MEASURED_WITH_SIPP = 10  # measured phones in a --phones sipp run; sipp places the rest
LOUD = 1500.0  # mean |sample| separating the burst (≈6000) from silence (≈0)


class ProbeAudio(RtpCallAudio):
    """A bench phone's media: pre-encoded probe out, arrival time + level in; no decoding."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.arrivals: list[tuple[float, float]] = []
        self.sent: list[float] = []

    def on_datagram(self, data: bytes, arrival: float) -> None:
        try:
            payload = parse_rtp(data).payload
        except RtpParseError:
            return
        level = payload_level(payload)
        self.arrivals.append((arrival, level))

    def tick(self, now: float) -> None:
        packets = self.pacer.poll(now)
        if packets:
            sent_at = time.monotonic()
            for packet in packets:
                self._server.sendto(packet, self.remote)
                self.sent.append(sent_at)


def payload_level(payload: bytes) -> float:
    """Mean |sample| of a µ-law payload: above :data:`LOUD` it is a probe burst."""
    return float(np.abs(ULAW_DECODE[np.frombuffer(payload, np.uint8)]).mean())


def probe_payloads(seconds: float) -> list[bytes]:
    """One second = a 60 ms 1 kHz burst then silence, repeated, as µ-law frames."""
    burst = tone(1000, BURST_FRAMES * FRAME, rate=8000, level=0.3)
    silence = b"\xff" * 160
    frames: list[bytes] = []
    for _ in range(int(seconds)):
        frames += [ulaw_encode(burst[i * 160:(i + 1) * 160]) for i in range(BURST_FRAMES)]
        frames += [silence] * (int(1 / FRAME) - BURST_FRAMES)
    return frames


@dataclass
class CallMeasure:
    rtd: list[float]
    jitter: list[float]
    sent: int
    received: int


def measure_call(audio: ProbeAudio, start: float, end: float) -> CallMeasure:
    """Round trips of each burst, inter-arrival jitter and counts inside [start, end)."""
    arrivals = [(t, level) for t, level in audio.arrivals if start <= t < end + 0.5]
    times = np.array([t for t, _ in arrivals])
    jitter = list(np.abs(np.diff(times) - FRAME)) if len(times) > 1 else []
    per_second = int(1 / FRAME)
    rtd = []
    for k in range(0, len(audio.sent), per_second):
        burst_sent = audio.sent[k]
        heard = [t for t, level in arrivals if t >= burst_sent and level > LOUD]
        if heard and heard[0] - burst_sent < 1.0:
            rtd.append(heard[0] - burst_sent)
    # Loss is counted on the bursts: the silence between them is not a fair
    # count (chan_websocket fills idle time with silence frames of its own).
    sent = BURST_FRAMES * sum(1 for k in range(0, len(audio.sent), per_second)
                              if start <= audio.sent[k] < end)
    received = min(sent, sum(1 for t, level in arrivals if t < end + 0.5 and level > LOUD))
    return CallMeasure(rtd, jitter, sent, received)


def _cpu_seconds(process: psutil.Process | None) -> float:
    """CPU time used so far; NaN once the process has exited (its figure is then unknown)."""
    if process is None:
        return 0.0
    try:
        times = process.cpu_times()
    except psutil.NoSuchProcess:
        return math.nan
    return times.user + times.system + times.children_user + times.children_system


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpu": model, "cores": os.cpu_count(), "kernel": platform.release(),
            "python": platform.python_version(), "memory_gb": round(
                psutil.virtual_memory().total / 2**30, 1)}


class AgentProcess:
    """``voice-agent serve`` as a child process (the echo agent unless ``agent`` says).

    ``env`` adds settings (``VOICE_AGENT_*``) for the child only; ``ready_timeout``
    covers loading models.
    """

    def __init__(self, settings: Settings, transport: str, calls: int, stats: Path, *,
                 agent: str = "echo", env: dict[str, str] | None = None,
                 ready_timeout: float = 60.0) -> None:
        # VOICE_AGENT_BENCH_PROFILE=FILE runs the agent under cProfile (hot-path hunting).
        profile = os.environ.get("VOICE_AGENT_BENCH_PROFILE")
        profiler = ["-m", "cProfile", "-o", profile] if profile else []
        self.cmd = [sys.executable, *profiler, "-m", "voice_agent.cli", "serve", "--agent", agent,
                    "--transport", transport, "--max-calls", str(calls + 20),
                    "--drain-seconds", "0", "--stats-file", str(stats)]
        self.settings = settings
        self.env = dict(env or {})
        self.ready_timeout = ready_timeout
        self.process: asyncio.subprocess.Process | None = None
        self._tmp = tempfile.TemporaryDirectory(prefix="va-agent-")

    async def __aenter__(self) -> psutil.Process:
        await self._settle()
        # Ready = the agent says so (systemd's READY=1 on NOTIFY_SOCKET): an app
        # an earlier agent left registered answers Asterisk-side probes while
        # inactive, and calls to it are rejected ("Stasis app not active").
        notify_path = Path(self._tmp.name) / "notify"
        ready = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        ready.bind(str(notify_path))
        ready.setblocking(False)
        env = {**os.environ, "VOICE_AGENT_LOG_LEVEL": "WARNING", **self.env,
               "NOTIFY_SOCKET": str(notify_path)}
        self.process = await asyncio.create_subprocess_exec(*self.cmd, env=env)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.ready_timeout):
                while b"READY=1" not in await loop.sock_recv(ready, 256):
                    pass
        except BaseException as exc:
            self.process.kill()
            await self.process.wait()
            if isinstance(exc, TimeoutError):
                raise RuntimeError(f"the agent did not report ready within "
                                   f"{self.ready_timeout:.0f} s (see its log above)") from None
            raise
        finally:
            ready.close()
        return psutil.Process(self.process.pid)

    async def __aexit__(self, *exc: object) -> None:
        assert self.process is not None
        self.process.terminate()
        async with asyncio.timeout(30):
            await self.process.wait()
        self._tmp.cleanup()
        await self._settle()

    async def _release_app(self) -> None:
        """Connect as the app and leave cleanly, so Asterisk unregisters it.

        Measured on Asterisk 22.10: an app whose last bridge was destroyed
        after its websocket closed stays registered, inactive, until someone
        connects as it again; other tools (the AGI tests) then see it as a
        connected agent.
        """
        async with AriClient(self.settings.ari_url, self.settings.ari_user,
                             self.settings.ari_secret(), self.settings.app_name) as ari:
            listening = asyncio.create_task(anext(ari.events(), None))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ari.connected.wait(), 5)
            listening.cancel()
            await asyncio.gather(listening, return_exceptions=True)

    async def _settle(self, timeout: float = 30.0) -> None:
        """Wait until Asterisk has no channels and the app no bridges.

        After a 200-call run Asterisk needs many seconds to tear the calls
        down, and a next run started earlier competes with that teardown for
        CPU. So each run starts and ends on an idle Asterisk.
        Channels still up and bridges still in the app after ``timeout``
        (left by a crashed or overloaded run; either keeps the old app
        registered) are removed: this is the dev Asterisk.
        """
        base = f"{self.settings.ari_url}/ari"
        auth = (self.settings.ari_user, self.settings.ari_secret())
        async with httpx.AsyncClient(auth=auth, timeout=5) as http:
            for attempt in range(2):
                deadline = time.monotonic() + timeout
                channels: list[dict[str, Any]] = []
                bridges: list[str] = []
                while time.monotonic() < deadline:
                    with contextlib.suppress(httpx.HTTPError):
                        app = await http.get(f"{base}/applications/{self.settings.app_name}")
                        channels = (await http.get(f"{base}/channels")).json()
                        bridges = app.json().get("bridge_ids", []) if app.is_success else []
                        if not channels and not bridges:
                            if app.is_success:
                                await self._release_app()
                            return
                    await asyncio.sleep(0.5)
                if attempt == 0:
                    # A bridge the dead agent failed to destroy keeps its app registered too.
                    log.warning("Asterisk still has %d channel(s) and %d bridge(s) of the app "
                                "%.0f s after a run; removing them", len(channels), len(bridges),
                                timeout)
                    for channel in channels:
                        with contextlib.suppress(httpx.HTTPError):
                            await http.delete(f"{base}/channels/{channel['id']}")
                    for bridge_id in bridges:
                        with contextlib.suppress(httpx.HTTPError):
                            await http.delete(f"{base}/bridges/{bridge_id}")
        raise RuntimeError("Asterisk did not become idle (channels or bridges left); see "
                           "`voice-agent asterisk cli 'core show channels'`")


async def run(settings: Settings, transport: str, calls: int, seconds: float,
              asterisk_pid: int | None, progress: Any = print,
              phones: str = "sim") -> dict[str, Any]:
    """One benchmark run; returns the result record (also written as JSON + PNG).

    ``phones="sim"``: every call is a measured simulated phone. ``"sipp"``:
    :data:`MEASURED_WITH_SIPP` measured phones, the rest sipp calls
    (:mod:`voice_agent.dev.bench.sipp_load`), so Asterisk carries real-call load.
    """
    if phones not in ("sim", "sipp"):
        raise ValueError(f"phones must be 'sim' or 'sipp', not {phones!r}")
    measured = calls if phones == "sim" else min(calls, MEASURED_WITH_SIPP)
    with tempfile.TemporaryDirectory(prefix="va-bench-") as tmp:
        stats_file = Path(tmp) / "agent.json"
        async with AgentProcess(settings, transport, calls, stats_file) as agent, \
                contextlib.AsyncExitStack() as stack:
            await asyncio.sleep(0.5)
            rss_idle = agent.memory_info().rss
            background: list[psutil.Process] = []
            sipp_up = 0
            if calls > measured:
                hold = (calls - measured) / CALLS_PER_SECOND + measured + seconds + 15
                sipp = SippLoad(settings, calls - measured, probe_payloads(hold + 5), hold)
                background.append(await stack.enter_async_context(sipp))
                sipp_up = await sipp.wait_answered(timeout=sipp.ramp_seconds + 30)
                progress(f"{sipp_up}/{calls - measured} sipp calls up")
            result = await _drive(settings, measured, seconds, agent, asterisk_pid, progress,
                                  background)
            result["agent_rss_idle_mb"] = rss_idle / 2**20
            result["agent_rss_per_call_mb"] = (result.pop("_rss_loaded") - rss_idle) / 2**20 / (
                max(1, result["answered"] + sipp_up))
        agent_stats = json.loads(stats_file.read_text()) if stats_file.exists() else {}
    result.update(calls=calls, measured_calls=measured, answered=result["answered"] + sipp_up,
                  phones=phones)
    result.update(transport=transport, agent=agent_stats, commit=_git_commit(),
                  date=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                  machine=machine())
    clock = agent_stats.get("clock")
    result["late_frames_pct"] = clock["late_tick_pct"] if clock else None
    return result


async def _drive(settings: Settings, calls: int, seconds: float, agent: psutil.Process,
                 asterisk_pid: int | None, progress: Any,
                 background: list[psutil.Process]) -> dict[str, Any]:
    """Place ``calls`` measured phones, probe for ``seconds``, measure.

    ``background`` callers' processes (sipp) count in the phones' CPU.
    """
    asterisk = psutil.Process(asterisk_pid) if asterisk_pid else None
    me = psutil.Process()
    payloads = probe_payloads(seconds)
    async with SimPhone(settings.ari_url, settings.ari_user, settings.ari_secret(),
                        audio_factory=ProbeAudio) as phone:
        gate = asyncio.Semaphore(10)  # ramp: at most 10 calls in setup at once

        async def dial() -> PhoneCall | None:
            async with gate:
                try:
                    return await phone.dial("100", via="sip", audio=True, identify=False,
                                            answer_timeout=20)
                except Exception as exc:  # a failed call is counted, not fatal
                    log.warning("bench call failed: %s", exc)
                    return None

        started = time.monotonic()
        placed = await asyncio.gather(*(dial() for _ in range(calls)))
        live = [c for c in placed if c is not None and c.audio is not None]
        setup = [c.setup_seconds for c in live]
        progress(f"{len(live)}/{calls} calls up in {time.monotonic() - started:.1f} s; "
                 "waiting for greetings")
        await asyncio.sleep(2.5)
        cpu0 = [_cpu_seconds(p) for p in (agent, asterisk, me, *background)]
        t0 = time.monotonic()
        for call in live:
            for payload in payloads:
                call.audio.pacer.enqueue(payload)
        await asyncio.sleep(seconds)
        t1 = time.monotonic()
        cpu1 = [_cpu_seconds(p) for p in (agent, asterisk, me, *background)]
        rss_loaded = agent.memory_info().rss
        await asyncio.sleep(0.6)  # the last echoes
        measures = [measure_call(c.audio, t0, t1) for c in live]  # type: ignore[arg-type]
        for call in live:
            await call.hangup()
    wall = t1 - t0
    rtd = np.concatenate([m.rtd for m in measures]) if measures else np.zeros(0)
    jitter = np.concatenate([m.jitter for m in measures]) if measures else np.zeros(0)
    sent = sum(m.sent for m in measures)
    received = sum(m.received for m in measures)

    def pct(values: np.ndarray, q: float) -> float | None:
        return float(np.percentile(values, q) * 1000) if len(values) else None

    return {
        "calls": calls, "answered": len(live), "seconds": seconds,
        "setup_ms_p50": pct(np.array(setup), 50), "setup_ms_p95": pct(np.array(setup), 95),
        "agent_cpu_pct": (cpu1[0] - cpu0[0]) / wall * 100,
        "asterisk_cpu_pct": (cpu1[1] - cpu0[1]) / wall * 100 if asterisk else None,
        "phones_cpu_pct": _finite((sum(cpu1[2:]) - sum(cpu0[2:])) / wall * 100),
        "jitter_ms_p50": pct(jitter, 50), "jitter_ms_p99": pct(jitter, 99),
        "lost_pct": (1 - received / sent) * 100 if sent else None,
        "rtd_ms_p50": pct(rtd, 50), "rtd_ms_p95": pct(rtd, 95), "rtd_samples": len(rtd),
        "_rss_loaded": rss_loaded,
        "_rtd": rtd.tolist(), "_jitter": jitter[:: max(1, len(jitter) // 20000)].tolist(),
    }


def _finite(value: float) -> float | None:
    """``None`` for a figure that could not be measured (e.g. sipp exited: all its calls failed)."""
    return None if math.isnan(value) else value


def write_result(figure: Any, result: dict[str, Any], results: Path, stem: str) -> Path:
    """``<stem>.png`` from ``figure`` (closed afterwards) and ``<stem>.json``; the JSON path.

    Every benchmark writes its results this way, so they all land side by side.
    """
    import matplotlib.pyplot as plt

    figure.tight_layout()
    figure.savefig(results / f"{stem}.png", dpi=90)
    plt.close(figure)
    path = results / f"{stem}.json"
    path.write_text(json.dumps(result, indent=2))
    return path


def save(result: dict[str, Any], results: Path = RESULTS) -> Path:
    """Write ``media-<transport>-<N>.json`` and its PNG; returns the JSON path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results.mkdir(parents=True, exist_ok=True)
    stem = f"media-{result['transport']}-{result['calls']}"
    if result.get("phones") == "sipp":
        stem += "-sipp"
    rtd, jitter = result.pop("_rtd"), result.pop("_jitter")
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    left.hist(np.array(rtd) * 1000, bins=40)
    left.set(title=f"round trip at the caller ({result['calls']} calls)", xlabel="ms")
    right.hist(np.array(jitter) * 1000, bins=40, log=True)
    right.set(title="inter-arrival jitter at the caller", xlabel="|Δt − 20 ms|, ms")
    figure.suptitle(f"{result['transport']} — commit {result['commit']}")
    return write_result(figure, result, results, stem)


COLUMNS = [("transport", "{}"), ("phones", "{}"), ("calls", "{}"), ("answered", "{}"),
           ("agent_cpu_pct", "{:.0f}"), ("asterisk_cpu_pct", "{:.0f}"),
           ("phones_cpu_pct", "{:.0f}"), ("agent_rss_per_call_mb", "{:.2f}"),
           ("jitter_ms_p50", "{:.1f}"), ("jitter_ms_p99", "{:.1f}"), ("late_frames_pct", "{:.2f}"),
           ("lost_pct", "{:.2f}"), ("rtd_ms_p50", "{:.0f}"), ("rtd_ms_p95", "{:.0f}")]


def summary(results: Path = RESULTS) -> str:
    """A markdown table of every media-*.json run, plus a PNG of CPU and delay vs calls."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = [p for t in ("rtp", "websocket") for p in results.glob(f"media-{t}-*.json")]
    runs = sorted(({"phones": "sim", **json.loads(p.read_text())} for p in paths),
                  key=lambda r: (r["transport"], r["phones"], r["calls"]))
    header = "| " + " | ".join(name for name, _ in COLUMNS) + " |"
    lines = [header, "|" + "---|" * len(COLUMNS)]
    for run in runs:
        cells = [fmt.format(run[name]) if run.get(name) is not None else "–"
                 for name, fmt in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    if runs:
        figure, (cpu, delay) = plt.subplots(1, 2, figsize=(10, 3.5))
        for series in sorted({(r["transport"], r["phones"]) for r in runs}):
            mine = [r for r in runs if (r["transport"], r["phones"]) == series]
            n = [r["calls"] for r in mine]
            name = "/".join(series)
            cpu.plot(n, [r["agent_cpu_pct"] for r in mine], "o-", label=f"agent ({name})")
            cpu.plot(n, [r["asterisk_cpu_pct"] or 0 for r in mine], "x--",
                     label=f"Asterisk ({name})")
            delay.plot(n, [r["rtd_ms_p95"] or 0 for r in mine], "o-", label=name)
        cpu.set(xlabel="concurrent calls", ylabel="% of one core", title="CPU")
        delay.set(xlabel="concurrent calls", ylabel="ms", title="caller round trip p95")
        cpu.legend(fontsize=7)
        delay.legend(fontsize=7)
        figure.tight_layout()
        figure.savefig(results / "media-summary.png", dpi=90)
        plt.close(figure)
    table = "\n".join(lines)
    (results / "media-summary.md").write_text(table + "\n")
    return table
