"""Conversations at load: N scripted callers at once, through real Asterisk, to the
conversation agent running as its own process (``voice-agent bench load``).

Every caller is a SIP call from the bench's simulated phone (one process for
all of them) that: waits for the greeting to end; asks a question
(pre-rendered espeak-ng speech, encoded to µ-law once and queued straight into
the RTP pacer, so a caller costs no synthesis and no resampling); detects the
agent's speech onset in the received packets' levels (no decoding either); and
repeats. One turn per call is a barge-in: the caller talks over the reply
1 s after it started and measures how long the agent's audio still arrives.

Figures (all at the phone): voice-to-voice = first loud agent packet minus
the moment the caller's last voiced frame was sent; barge-in stop = last loud
agent packet minus the caller's first voiced frame over the reply. With
``--models fake`` the agent talks to the FAKE servers of
:mod:`~voice_agent.dev.bench.fake_models` (labelled so in the result), and
``overhead`` = V2V minus their fixed latencies: the agent's own cost, endpointing included.

With the embedded models every caller asks for a different order, by number
(:func:`questions`): the replies differ, so each is synthesized by Piper
rather than served from the prompt cache, as a business's real callers would
make it. The fake models ignore the words and always hear the same question.

``--soak`` keeps N calls up for ``--seconds`` (default 30 min): a call that
finishes its script is replaced; the agent's RSS, tasks, fds and live calls
and Asterisk's channels are sampled over time, and what is left at the end is
counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import os
import random
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from voice_agent.audio.g711 import ULAW_DECODE, ulaw_encode
from voice_agent.audio.resample import Resampler
from voice_agent.config import Settings
from voice_agent.dev.bench import fake_models
from voice_agent.dev.bench.media import (
    RESULTS,
    AgentProcess,
    _cpu_seconds,
    _git_commit,
    machine,
    write_result,
)
from voice_agent.dev.model_servers import free_tcp_port
from voice_agent.dev.sim.conversation import example
from voice_agent.dev.sim.phone import SimPhone
from voice_agent.dev.sim.signals import speech
from voice_agent.media.rtp import RtpParseError, parse_rtp
from voice_agent.media.rtp_transport import RtpCallAudio

log = logging.getLogger(__name__)

Progress = Callable[[str], None]

LOUD = 400.0  # mean |sample| of a µ-law frame that counts as agent speech
AGENT_DONE_S = 0.6  # this much quiet after loud packets: the agent finished speaking
BARGE_AFTER_S = 1.0  # the interrupting caller starts this long into the reply
TURN_TIMEOUT_S = 20.0
MIN_TURNS = 3
SOAK_SECONDS = 30 * 60.0
SOAK_TURNS = 4  # a soak call hangs up after this many turns and another takes its place
ARRIVALS_S = 5.0  # the run's callers arrive spread over this long


# ------------------------------------------------------------------ caller audio


@dataclass(frozen=True)
class Utterance:
    """Pre-encoded caller speech: µ-law frames and where its voice starts and ends."""

    frames: list[bytes]
    first_voiced: int
    last_voiced: int

    @classmethod
    def render(cls, text: str) -> Utterance:
        pcm16k = speech(text)
        down = Resampler(16000, 8000)
        pcm8k = np.concatenate([down.process(pcm16k), down.flush()])
        pcm8k = np.concatenate([pcm8k, np.zeros(-len(pcm8k) % 160, np.int16)])
        frames = [ulaw_encode(pcm8k[i:i + 160]) for i in range(0, len(pcm8k), 160)]
        levels = [np.abs(pcm8k[i:i + 160].astype(np.int32)).mean()
                  for i in range(0, len(pcm8k), 160)]
        voiced = [i for i, level in enumerate(levels) if level > LOUD / 2]
        return cls(frames, voiced[0], voiced[-1])


class LoadAudio(RtpCallAudio):
    """A load caller's media: pre-encoded speech out; levels and onsets in, no decoding.

    The media clock ticks every call every 20 ms anyway, so the end of agent
    speech is decided there, without a timer per call.
    """

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.speaking = False
        self.loud_at = 0.0
        self.onsets: list[float] = []
        self.offsets: list[float] = []
        self.changed = asyncio.Event()
        self.packets = 0
        self.first_seq: int | None = None
        self.last_seq = 0
        self._sent = 0
        self._marks: dict[int, float] = {}  # packet number -> when it was sent
        self._wanted: dict[int, asyncio.Future[float]] = {}

    def on_datagram(self, data: bytes, arrival: float) -> None:
        try:
            packet = parse_rtp(data)
        except RtpParseError:
            self.malformed += 1
            return
        self.packets += 1
        if self.first_seq is None:
            self.first_seq = packet.sequence
        self.last_seq = packet.sequence
        if float(np.abs(ULAW_DECODE[np.frombuffer(packet.payload, np.uint8)]).mean()) > LOUD:
            if not self.speaking:
                self.speaking = True
                self.onsets.append(arrival)
                self.changed.set()
            self.loud_at = arrival

    def tick(self, now: float) -> None:
        for packet in self.pacer.poll(now):
            self._server.sendto(packet, self.remote)
            self._sent += 1
            waiter = self._wanted.pop(self._sent, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(time.monotonic())
        if self.speaking and now - self.loud_at > AGENT_DONE_S:
            self.speaking = False
            self.offsets.append(self.loud_at)
            self.changed.set()

    def say(self, utterance: Utterance) -> tuple[asyncio.Future[float], asyncio.Future[float]]:
        """Queue ``utterance``; futures for when its first and last voiced frames leave."""
        loop = asyncio.get_running_loop()
        base = self._sent + self.pacer.queued
        first, last = loop.create_future(), loop.create_future()
        self._wanted[base + utterance.first_voiced + 1] = first
        self._wanted[base + utterance.last_voiced + 1] = last
        for frame in utterance.frames:
            self.pacer.enqueue(frame)
        return first, last

    async def next_change(self, timeout: float) -> None:
        self.changed.clear()
        async with asyncio.timeout(timeout):
            await self.changed.wait()

    async def onset_after(self, t: float, timeout: float = TURN_TIMEOUT_S) -> float:
        """The first agent speech onset after ``t``."""
        return await self._first_after(self.onsets, t, timeout)

    async def offset_after(self, t: float, timeout: float = TURN_TIMEOUT_S) -> float:
        """The end (last loud packet) of agent speech that was still going after ``t``."""
        return await self._first_after(self.offsets, t, timeout)

    async def _first_after(self, times: list[float], t: float, timeout: float) -> float:
        async with asyncio.timeout(timeout):
            while True:
                later = [x for x in times if x > t]
                if later:
                    return later[0]
                await self.next_change(timeout)

    @property
    def lost(self) -> int:
        if self.first_seq is None:
            return 0
        expected = (self.last_seq - self.first_seq) % 65536 + 1
        return max(0, expected - self.packets)


# ------------------------------------------------------------------ one caller


@dataclass
class CallerFigures:
    v2v: list[float] = field(default_factory=list)
    barge_in_stop: list[float] = field(default_factory=list)
    turns: int = 0
    completed: bool = False
    error: str = ""
    packets: int = 0
    lost: int = 0


def questions(models: str, count: int = 24) -> list[Utterance]:
    """What the callers ask, in turn: one question for the fake models; for the embedded
    ones, ``count`` order-status questions with seeded random five-digit numbers."""
    if models == "fake":  # the first question of the example marked ``use: load``
        return [Utterance.render(example("load")[1].steps[0].say)]
    digits = "zero one two three four five six seven eight nine".split()
    draw = random.Random(5)
    return [Utterance.render("Where is my order "
                             + " ".join(digits[draw.randrange(10)] for _ in range(5)) + "?")
            for _ in range(count)]


async def converse(phone: SimPhone, question: Utterance | list[Utterance], until: float,
                   figures: CallerFigures, gate: asyncio.Semaphore,
                   turns: int | None = None, number: str | None = None, first: int = 0
                   ) -> None:
    """One scripted conversation: ``turns`` turns, or (None) turns until ``until``
    (at least :data:`MIN_TURNS`); the second of them is a barge-in. ``gate``
    bounds how many calls are being set up at once (the ramp). With several questions,
    the call asks them in turn from the ``first``."""
    async with gate:
        call = await phone.dial(number or example("load")[0], via="sip", audio=True,
                                identify=False,
                                answer_timeout=30)
    audio = call.audio
    assert isinstance(audio, LoadAudio)
    try:
        greeting = await audio.onset_after(0.0)
        await audio.offset_after(greeting)
        while (figures.turns < turns if turns is not None
               else figures.turns < MIN_TURNS or time.monotonic() < until):
            asked = (question if isinstance(question, Utterance)
                     else question[(first + figures.turns) % len(question)])
            _, voice_end = audio.say(asked)
            end = await voice_end
            onset = await audio.onset_after(end)
            figures.v2v.append(onset - end)
            figures.turns += 1
            if figures.turns == 2:  # talk over this reply
                await asyncio.sleep(BARGE_AFTER_S)
                over, _ = audio.say(asked)
                started = await over
                if audio.speaking:
                    stop = await audio.offset_after(started)
                    figures.barge_in_stop.append(max(0.0, stop - started))
                # the interruption is a turn of its own: wait for its answer to end
                answer = await audio.onset_after(started)
                await audio.offset_after(answer)
            else:
                await audio.offset_after(onset)
            await asyncio.sleep(0.3)
        figures.completed = True
    except TimeoutError:
        figures.error = f"agent silent for {TURN_TIMEOUT_S:.0f} s at turn {figures.turns + 1}"
    finally:
        figures.packets, figures.lost = audio.packets, audio.lost
        await call.hangup()


# ------------------------------------------------------------------ the run


@dataclass
class Sampler:
    """RSS, tasks, fds, live calls (agent) and channels (Asterisk) over time."""

    agent: psutil.Process
    stats_file: Path
    phone: SimPhone
    samples: list[dict[str, Any]] = field(default_factory=list)

    async def run(self, interval: float, t0: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.sample(t0)

    async def sample(self, t0: float) -> dict[str, Any]:
        stats = _read_stats(self.stats_file)
        channels = await self.phone.ari.list_channels()
        sample = {"t": time.monotonic() - t0, "rss_mb": self.agent.memory_info().rss / 2**20,
                  "tasks": stats.get("tasks"), "fds": stats.get("fds"),
                  "live_calls": stats.get("live_calls"), "asterisk_channels": len(channels),
                  "py_blocks": stats.get("py_blocks"), "records_kept": stats.get("records_kept")}
        self.samples.append(sample)
        return sample


def _records_full(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The samples taken once the agent's in-memory record history stopped growing."""
    kept = [s.get("records_kept") or 0 for s in samples]
    full = max(kept, default=0)
    return [s for s, k in zip(samples, kept, strict=True) if full and k == full]


def trend(samples: list[dict[str, Any]], key: str, after: float = 60.0
          ) -> dict[str, float] | None:
    """Whether ``key`` keeps growing: medians of the first and last thirds, and the slope.

    Samples before ``after`` seconds (calls ramping up) are left out. A soak passes on memory when
    the last third is no higher than the first and the slope is near zero; the
    medians resist the allocator's noise, which a single last sample does not.
    """
    points = [(s["t"], s[key]) for s in samples if s.get(key) is not None and s["t"] >= after]
    if len(points) < 6:
        return None
    t, v = (np.asarray(x, dtype=float) for x in zip(*points, strict=True))
    third = len(v) // 3
    return {"first_third_median": float(np.median(v[:third])),
            "last_third_median": float(np.median(v[-third:])),
            "slope_per_min": float(np.polyfit(t / 60, v, 1)[0])}


def _read_stats(path: Path) -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError):
        return json.loads(path.read_text())
    return {}


def model_env(models: str, port: int) -> dict[str, str]:
    """The agent's settings for the model mode."""
    if models == "embedded":
        return {}
    base = f"http://127.0.0.1:{port}/v1"
    return {"VOICE_AGENT_STT_URL": base, "VOICE_AGENT_TTS_URL": base,
            "VOICE_AGENT_LLM_URL": base, "VOICE_AGENT_LLM_MODEL": "fake",
            "VOICE_AGENT_TTS_SAMPLE_RATE": str(fake_models.TTS_RATE),
            "VOICE_AGENT_EMBEDDED_FALLBACK": "false"}


@contextlib.asynccontextmanager
async def fake_model_server(port: int) -> AsyncIterator[psutil.Process]:
    """The FAKE model servers as a child process, once they accept connections."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voice_agent.dev.bench.fake_models", "--port", str(port))
    try:
        for _ in range(100):
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            await asyncio.sleep(0.1)
        yield psutil.Process(process.pid)
    finally:
        process.terminate()
        await process.wait()


async def run(settings: Settings, calls: int, seconds: float, models: str,
              asterisk_pid: int | None, *, soak: bool = False, transport: str = "rtp",
              progress: Progress = print) -> dict[str, Any]:
    """One load run; returns the result record (see :func:`save`)."""
    if models not in ("embedded", "fake"):
        raise ValueError(f"models must be 'embedded' or 'fake', not {models!r}")
    commit = _git_commit()  # the code that runs, not what HEAD became meanwhile
    question = questions(models)
    port = free_tcp_port()
    with tempfile.TemporaryDirectory(prefix="va-load-") as tmp:
        stats_file = Path(tmp) / "agent.json"
        env = {**model_env(models, port), "VOICE_AGENT_DATA_DIR": tmp}
        async with contextlib.AsyncExitStack() as stack:
            fake = (await stack.enter_async_context(fake_model_server(port))
                    if models == "fake" else None)
            agent = await stack.enter_async_context(AgentProcess(
                settings, transport, calls, stats_file, agent="conversation", env=env,
                ready_timeout=180))
            phone = await stack.enter_async_context(SimPhone(
                settings.ari_url, settings.ari_user, settings.ari_secret(),
                audio_factory=LoadAudio))
            await asyncio.sleep(1.0)
            rss_idle = agent.memory_info().rss
            result = await _drive(phone, agent, asterisk_pid, fake, stats_file, question,
                                  calls, seconds, soak, progress)
            result["rss_mb_per_call"] = (result.pop("_rss_loaded") - rss_idle) / 2**20 / max(
                1, calls)
            result["agent_rss_idle_mb"] = rss_idle / 2**20
        result["leaks_at_end"] = await _leftovers(settings, stats_file)
    if profile := os.environ.get("VOICE_AGENT_BENCH_PROFILE"):  # written as the agent exited
        result["profiled"] = True  # slowed by cProfile: timing figures are not comparable
        result["profile_share_pct"] = profile_shares(Path(profile))
    result.update(
        models=fake_models.LABEL if models == "fake" else
        "embedded (silero VAD, whisper tiny.en, rule engine, piper joe-medium)",
        models_mode=models, transport=transport, soak=soak, commit=commit,
        date=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        machine=machine())
    return result


async def _drive(phone: SimPhone, agent: psutil.Process, asterisk_pid: int | None,
                 fake: psutil.Process | None, stats_file: Path, question: list[Utterance],
                 calls: int, seconds: float, soak: bool, progress: Progress) -> dict[str, Any]:
    asterisk = psutil.Process(asterisk_pid) if asterisk_pid else None
    me = psutil.Process()
    processes = (agent, asterisk, me, fake)
    cpu0 = [_cpu_seconds(p) for p in processes]
    t0 = time.monotonic()
    until = t0 + seconds
    sampler = Sampler(agent, stats_file, phone)
    sampling = asyncio.create_task(sampler.run(10.0 if soak else 2.0, t0))
    figures: list[CallerFigures] = []
    gate = asyncio.Semaphore(10)  # ramp: at most 10 calls in setup at once

    arrivals = random.Random(calls)  # seeded: the same arrival pattern run after run

    async def caller(index: int) -> None:
        # Callers arrive over ARRIVALS_S, not in the same 20 ms: in lockstep every one
        # ends its first turn at the same moment and queues for the embedded STT,
        # a burst no real line produces (the first turn's V2V is reported apart).
        await asyncio.sleep(arrivals.uniform(0.0, ARRIVALS_S))
        while True:
            mine = CallerFigures()
            figures.append(mine)
            try:
                await converse(phone, question, until, mine, gate,
                               turns=SOAK_TURNS if soak else None, first=index * 5)
            except Exception as exc:  # a failed call is counted, not fatal
                mine.error = mine.error or f"{type(exc).__name__}: {exc}"
            if not soak or time.monotonic() >= until:
                return

    tasks = [asyncio.create_task(caller(i)) for i in range(calls)]
    progress(f"{calls} callers started; running for {seconds:.0f} s")
    rss_peak = 0
    while not all(t.done() for t in tasks):
        await asyncio.wait(tasks, timeout=5)
        rss_peak = max(rss_peak, agent.memory_info().rss)
    t1 = time.monotonic()
    cpu1 = [_cpu_seconds(p) for p in processes]
    sampling.cancel()
    wall = t1 - t0
    stats = _read_stats(stats_file)
    v2v = np.array([x for f in figures for x in f.v2v])
    stops = np.array([x for f in figures for x in f.barge_in_stop])
    packets = sum(f.packets for f in figures)
    lost = sum(f.lost for f in figures)

    def pct(values: np.ndarray, q: float) -> float | None:
        return float(np.percentile(values, q)) if len(values) else None

    clock = stats.get("clock") or {}
    return {
        "calls": calls, "seconds": seconds, "conversations": len(figures),
        "completed": sum(f.completed for f in figures),
        "dropped": sum(not f.completed for f in figures),
        "errors": sorted({f.error for f in figures if f.error})[:10],
        "turns": int(sum(f.turns for f in figures)),
        "v2v_p50_s": pct(v2v, 50), "v2v_p95_s": pct(v2v, 95),
        "overhead_p50_s": (pct(v2v, 50) or 0) - fake_models.FIXED_SECONDS
        if fake and len(v2v) else None,
        "overhead_p95_s": (pct(v2v, 95) or 0) - fake_models.FIXED_SECONDS
        if fake and len(v2v) else None,
        # turn 2 is the one talked over; its answer comes before turn 3's question
        "v2v_by_turn_s": [{"turn": k + 1, "n": len(at), "p50": pct(at, 50), "p95": pct(at, 95)}
                          for k in range(max((len(f.v2v) for f in figures), default=0))
                          if len(at := np.array([f.v2v[k] for f in figures if len(f.v2v) > k]))],
        "barge_in_stop_p50_s": pct(stops, 50), "barge_in_stop_p95_s": pct(stops, 95),
        "barge_ins": len(stops),
        "late_pct": clock.get("late_tick_pct"),
        "lost_pct": lost / (packets + lost) * 100 if packets else None,
        "agent_cpu_pct": (cpu1[0] - cpu0[0]) / wall * 100,
        "asterisk_cpu_pct": (cpu1[1] - cpu0[1]) / wall * 100 if asterisk else None,
        "caller_cpu_pct": (cpu1[2] - cpu0[2]) / wall * 100,
        "fake_models_cpu_pct": (cpu1[3] - cpu0[3]) / wall * 100 if fake else None,
        "agent_provider_errors": stats.get("errors"),
        "_rss_loaded": rss_peak,
        "samples": sampler.samples,
        "trend": {key: trend(sampler.samples, key) for key in ("rss_mb", "py_blocks")},
        # the agent keeps its last HISTORY call records in memory by design: once that
        # deque is full, anything still growing is a leak
        "trend_once_records_full": {key: trend(_records_full(sampler.samples), key, after=0)
                                    for key in ("rss_mb", "py_blocks")},
        "_v2v": v2v.tolist(), "_stops": stops.tolist(),
    }


async def _leftovers(settings: Settings, stats_file: Path) -> dict[str, Any]:
    """What the run left: Asterisk channels and bridges now, the agent's last stats."""
    from voice_agent.ari.asterisk_ari import AriClient

    async with AriClient(settings.ari_url, settings.ari_user, settings.ari_secret(),
                         "va-load-inspector") as ari:
        channels = await ari.list_channels()
        bridges = await ari.list_bridges()
    last = _read_stats(stats_file)
    return {"asterisk_channels": len(channels), "asterisk_bridges": len(bridges),
            "agent_live_calls": last.get("live_calls"), "agent_tasks": last.get("tasks"),
            "agent_fds": last.get("fds")}


#: Where the agent's time goes, by the files it is spent in (issue 16: metrics and
#: records must cost < 1 % of a core at 50 calls).
PROFILE_GROUPS = {
    "metrics": ("voice_agent/calls/metrics.py", "prometheus_client/"),
    "records_and_history": ("voice_agent/history.py", "sqlalchemy/", "voice_agent/calls/record.py",
                            "voice_agent/calls/log_context.py"),
    "web_server": ("aiohttp/web",),
}


def profile_shares(path: Path) -> dict[str, float]:
    """Each group's share of the agent's own time (cProfile tottime, its main thread)."""
    import pstats

    stats = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in stats.values()) or 1.0
    return {group: 100 * sum(entry[2] for (file, _, _), entry in stats.items()
                             if any(part in file for part in parts)) / total
            for group, parts in PROFILE_GROUPS.items()}


def save(result: dict[str, Any], results: Path = RESULTS) -> Path:
    """``load-<models>-<N>[-soak].json`` and a PNG: V2V distribution and the soak series."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stem = (f"load-{result['models_mode']}-{result['calls']}" + ("-soak" if result["soak"] else "")
            + ("-profiled" if result.get("profiled") else ""))
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    v2v = result.pop("_v2v")
    stops = result.pop("_stops")
    if v2v:
        left.hist(v2v, bins=40, color="tab:blue", alpha=0.8, label="voice-to-voice")
    if stops:
        left.hist(stops, bins=20, color="tab:red", alpha=0.6, label="barge-in stop")
    left.set_xlabel("seconds, at the phone")
    left.set_title(f"{result['calls']} conversations, models: {result['models_mode']}")
    left.legend()
    samples = result["samples"]
    if samples:
        t = [s["t"] / 60 for s in samples]
        right.plot(t, [s["rss_mb"] for s in samples], label="agent RSS, MB")
        right.plot(t, [s["tasks"] or 0 for s in samples], label="agent asyncio tasks")
        right.plot(t, [s["fds"] or 0 for s in samples], label="agent fds")
        right.plot(t, [s["asterisk_channels"] for s in samples], label="Asterisk channels")
        if any(s.get("py_blocks") for s in samples):
            right.plot(t, [(s.get("py_blocks") or 0) / 10_000 for s in samples],
                       label="Python heap, 10k blocks")
        right.set_xlabel("minutes")
        right.legend()
    right.set_title("over time")
    figure.tight_layout()
    return write_result(figure, result, results, stem)


SUMMARY_COLUMNS = [
    ("models", "models_mode", "{}"), ("calls", "calls", "{}"),
    ("completed/conversations", None, "{}"), ("turns", "turns", "{}"),
    ("V2V p50", "v2v_p50_s", "{:.2f} s"), ("V2V p95", "v2v_p95_s", "{:.2f} s"),
    ("overhead p50", "overhead_p50_s", "{:.2f} s"), ("overhead p95", "overhead_p95_s", "{:.2f} s"),
    ("barge-in stop p95", "barge_in_stop_p95_s", "{:.2f} s"), ("late", "late_pct", "{:.2f} %"),
    ("lost", "lost_pct", "{:.2f} %"), ("agent CPU", "agent_cpu_pct", "{:.0f} %"),
    ("Asterisk CPU", "asterisk_cpu_pct", "{:.0f} %"), ("callers CPU", "caller_cpu_pct", "{:.0f} %"),
    ("RSS/call", "rss_mb_per_call", "{:.1f} MB"), ("commit", "commit", "{}"),
]


def summary(results: Path = RESULTS) -> str:
    """A markdown table of every non-soak ``load-*.json``, models then calls."""
    rows = []
    for path in sorted(results.glob("load-*.json")):
        result = json.loads(path.read_text())
        if result.get("soak") or result.get("profiled"):
            continue
        cells = []
        for _, key, fmt in SUMMARY_COLUMNS:
            value = (f"{result['completed']}/{result['conversations']}" if key is None
                     else result.get(key))
            cells.append("–" if value is None else fmt.format(value))
        rows.append((result["models_mode"], result["calls"], cells))
    header = "| " + " | ".join(name for name, _, _ in SUMMARY_COLUMNS) + " |"
    rule = "|" + "---|" * len(SUMMARY_COLUMNS)
    lines = [header, rule] + ["| " + " | ".join(cells) + " |" for *_, cells in sorted(rows)]
    return "\n".join(lines)
