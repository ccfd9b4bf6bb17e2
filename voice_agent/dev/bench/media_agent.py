"""The agent's media plane alone: N echo calls fed by a fake RTP peer, no Asterisk.

``voice-agent bench media`` measures the whole box (Asterisk, the SIP phones and
the agent share 2 cores), so when it saturates it cannot say whose limit that
is. This benchmark runs the agent's real RTP path (shared socket, jitter buffer,
codec and resampling, echo consumer, media clock and pacer) in this process
under uvloop, and :mod:`voice_agent.dev.bench.fake_rtp_peer` in a child process
plays N UnicastRTP channels. Its figures are labelled ``fake RTP peer, no
Asterisk`` in the results: they bound what the agent can do, nothing more.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import sys
import time
from types import SimpleNamespace
from typing import Any

import numpy as np
import psutil

from voice_agent.conversation.echo import echo
from voice_agent.dev.bench.media import (
    RESULTS,
    _cpu_seconds,
    _git_commit,
    machine,
    measure_call,
    write_result,
)
from voice_agent.media.media_clock import LATE_THRESHOLD, MediaClock
from voice_agent.media.rtp_transport import RtpMediaServer


async def run(calls: int, seconds: float) -> dict[str, Any]:
    """One run of ``calls`` echo calls for ``seconds``; returns the result record."""
    clock = MediaClock()
    server = RtpMediaServer(clock)
    await server.start("127.0.0.1", 0)
    peer = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voice_agent.dev.bench.fake_rtp_peer", str(calls),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=2**28)
    assert peer.stdin is not None and peer.stdout is not None
    try:
        ports = json.loads(await peer.stdout.readline())["ports"]
        audios = [server.attach(("127.0.0.1", port), "ulaw") for port in ports]
        echoes = [asyncio.create_task(echo(audio)) for audio in audios]
        peer.stdin.write(json.dumps({"target": server.local_address,
                                     "seconds": seconds}).encode() + b"\n")
        await peer.stdin.drain()
        await asyncio.sleep(1.0)  # let the streams start, then measure a clean window
        clock.stats.lateness.clear()
        peer_cpu = psutil.Process(peer.pid)
        cpu0, peer0, t0 = time.process_time(), _cpu_seconds(peer_cpu), time.monotonic()
        await asyncio.sleep(seconds - 2.0)
        cpu1, peer1, t1 = time.process_time(), _cpu_seconds(peer_cpu), time.monotonic()
        lateness = np.asarray(clock.stats.lateness)
        queued = [audio.queued_frames for audio in audios]
        report = json.loads(await peer.stdout.readline())
    finally:
        if peer.returncode is None:
            peer.kill()
        await peer.wait()
    for audio in audios:
        await audio.aclose()
    await asyncio.gather(*echoes, return_exceptions=True)
    await clock.aclose()
    server.close()
    measures = [measure_call(SimpleNamespace(**c), t0, t1) for c in report["calls"]]
    rtd = np.concatenate([m.rtd for m in measures])
    jitter = np.concatenate([m.jitter for m in measures])
    sent, received = sum(m.sent for m in measures), sum(m.received for m in measures)
    wall = t1 - t0
    return {
        "setup": "agent media plane alone, fake RTP peer (no Asterisk)",
        "calls": calls, "seconds": seconds, "transport": "rtp",
        "agent_cpu_pct": (cpu1 - cpu0) / wall * 100,
        "agent_us_per_call_frame": (cpu1 - cpu0) / wall / calls / 50 * 1e6,
        "peer_cpu_pct": (peer1 - peer0) / wall * 100,
        "queued_frames_max": max(queued),
        "late_frames_pct": float((lateness > LATE_THRESHOLD).mean() * 100),
        "lateness_ms_p50": float(np.percentile(lateness, 50) * 1000),
        "lateness_ms_p99": float(np.percentile(lateness, 99) * 1000),
        "lost_pct": (1 - received / sent) * 100 if sent else None,
        "rtd_ms_p50": float(np.percentile(rtd, 50) * 1000) if len(rtd) else None,
        "rtd_ms_p95": float(np.percentile(rtd, 95) * 1000) if len(rtd) else None,
        "jitter_ms_p99": float(np.percentile(jitter, 99) * 1000) if len(jitter) else None,
        "rtp_stats": vars(server.stats),
        "commit": _git_commit(), "machine": machine(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "_lateness": lateness.tolist(),
    }


def save(result: dict[str, Any]) -> str:
    """``media-agent-<N>.json`` and a PNG of the media clock's tick lateness."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    RESULTS.mkdir(parents=True, exist_ok=True)
    lateness = np.array(result.pop("_lateness")) * 1000
    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.hist(lateness, bins=60, log=True)
    axis.axvline(LATE_THRESHOLD * 1000, color="red", linestyle="--", label="late (5 ms)")
    axis.set(title=f"media clock lateness, {result['calls']} calls (agent alone)",
             xlabel="ms past deadline")
    axis.legend()
    figure.suptitle(f"fake RTP peer, no Asterisk — commit {result['commit']}")
    return str(write_result(figure, result, RESULTS, f"media-agent-{result['calls']}"))
