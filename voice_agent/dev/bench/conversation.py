"""Conversation benchmarks on real calls: voice-to-voice latency and barge-in.

The agent runs in this process (the same service as ``voice-agent serve``, the
embedded stack) so its per-turn timestamps share a clock with the scripted
caller's; calls are real SIP calls through the local Asterisk, one at a time
(a person on the line, not a load test).

* ``latency``: each tenant answers ``turns`` questions. Caller-side
  voice-to-voice latency (caller speech end → first agent audio at the phone)
  and a per-stage breakdown from the agent's turn record: endpointing (speech
  end → the endpointer's decision), STT, dialog reply, TTS first audio, and the
  network/playout rest.
* ``barge_in``: the caller interrupts a long reply ``interruptions`` times at
  varying moments, for every caller level (0, -6, -12, -18 dB) and path (SIP,
  Local channel), in three espeak-ng voices: stop delay at the caller
  (interrupt speech onset → last agent audio heard), agent-side onset → pause
  → decision. Then the false-trigger sets: a 100 ms noise burst (a cough) and
  a backchannel ("uh-huh") during a reply, which must not interrupt it (the
  backchannel must resume it).

* ``compare``: the latency questions through ARI and through the AGI fallback
  with the same models: V2V per path and the agent's CPU per call.
* ``impaired``: the latency questions with the agent's RTP leg impaired in the
  kernel (:mod:`voice_agent.dev.impair`: loss, jitter with reordering, delay,
  a 2 s outage in the middle of replies): V2V, the word error rate of what the
  caller heard against what the agent said, and the agent's jitter counters.

Writes ``bench/results/{latency,barge-in,compare,impaired}.json`` and a PNG for each.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import functools
import itertools
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from voice_agent.agi.asterisk_agi import running_agi_server
from voice_agent.ari.ari_session_manager import SessionManager
from voice_agent.calls.record import CallRecord, CallState
from voice_agent.config import Settings
from voice_agent.dev.bench.media import RESULTS, _git_commit, machine, write_result
from voice_agent.dev.impair import PROFILES, Flood, Impairment
from voice_agent.dev.sim.conversation import (
    Exchange,
    ScriptedCaller,
    Step,
    example,
    examples,
    steps_of,
    word_error_rate,
)
from voice_agent.dev.sim.phone import SimPhone
from voice_agent.dev.sim.signals import speech
from voice_agent.media.rtp_transport import RtpCallAudio
from voice_agent.providers.stt import WhisperStt
from voice_agent.service import running_agent

Progress = Callable[[str], None]



def _by_number(use: str) -> dict[str, list[Step]]:
    """The steps of every example marked ``use``, by the number each dials. ``latency``:
    questions each tenant answers, asked in turn; ``paused``: sentences with a pause
    mid-way, longer than the fixed end-of-turn silence, whose first half alone must not
    be answered (a cut-off caller)."""
    steps: dict[str, list[Step]] = {}
    for number, conversation in examples(use):
        steps.setdefault(number, []).extend(steps_of(conversation))
    return steps


STACK = "embedded: silero VAD, whisper tiny.en, dialog engine, piper joe-medium"
STAGES = ("endpointing", "stt", "reply", "tts_first_audio", "network_playout")
TURNS_PER_CALL = 5


def _percentiles(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "p50": None, "p95": None}
    return {"n": len(values), "p50": float(np.percentile(values, 50)),
            "p95": float(np.percentile(values, 95))}


def _stages(exchange: Exchange, turn: dict[str, Any], caller_speech_end: float
            ) -> dict[str, float] | None:
    needed = ("speech_end", "stt_final", "reply_ready", "first_audio")
    if exchange.reply_started is None or any(key not in turn for key in needed):
        return None
    return {"endpointing": turn["speech_end"] - caller_speech_end,
            "stt": turn["stt_final"] - turn["speech_end"],
            "reply": turn["reply_ready"] - turn["stt_final"],
            "tts_first_audio": turn["first_audio"] - turn["reply_ready"],
            "network_playout": exchange.reply_started - turn["first_audio"]}


def _session_record(manager: SessionManager) -> CallRecord:
    if manager.sessions:
        return next(iter(manager.sessions.values())).record
    return manager.completed[-1]


RecordOf = Callable[[], CallRecord | None]


async def _one_call(settings: Settings, stt: WhisperStt | None, number: str, steps: list[Step],
                    record_of: RecordOf, trailing_silence: float = 0.0, *, via: str = "sip",
                    gain_db: float = 0.0, voice: str = "en-us",
                    ) -> tuple[list[Exchange], CallRecord | None]:
    async with SimPhone(settings.ari_url, settings.ari_user, settings.ari_secret()) as phone:
        call = await phone.dial(number, audio=True, via=via)
        try:
            async with ScriptedCaller(call, stt, trailing_silence, gain_db=gain_db,
                                      voice=voice) as caller:
                await caller.run(steps)
                exchanges = await caller.finish()
                record = record_of()
        finally:
            await call.hangup()
    return exchanges, record


async def _interview(settings: Settings, turns: int, stt: WhisperStt | None,
                     record_of: RecordOf, progress: Progress,
                     trailing_silence: float = 0.0) -> list[dict[str, Any]]:
    """Every tenant answers ``turns`` questions, ``TURNS_PER_CALL`` to a call."""
    rows: list[dict[str, Any]] = []
    for number, questions in _by_number("latency").items():
        asked = list(itertools.islice(itertools.cycle(questions), turns))
        for start in range(0, turns, TURNS_PER_CALL):
            steps = [Step(q.say) for q in asked[start:start + TURNS_PER_CALL]]
            exchanges, record = await _one_call(settings, stt, number, steps, record_of,
                                                trailing_silence)
            agent_turns = record.turns if record is not None else []
            for i, exchange in enumerate(exchanges[1:]):
                turn = agent_turns[i] if i < len(agent_turns) else {}
                speech_end = (exchange.reply_started or 0) - (exchange.latency_s or 0)
                rows.append({"number": number, "said": exchange.said,
                             "heard": exchange.heard, "agent_heard": turn.get("heard"),
                             "reply": turn.get("reply"),
                             "turn_end": turn.get("turn_end", "-"),
                             "v2v_s": exchange.latency_s,
                             "stages": _stages(exchange, turn, speech_end)})
                progress(f"{number}: {exchange.said!r} → {exchange.latency_s:.2f} s"
                         if exchange.latency_s is not None else f"{number}: no reply")
    return rows


def _conversation_settings(settings: Settings, data: str) -> Settings:
    return settings.model_copy(update={"agent": "conversation", "data_dir": Path(data)})


def _stamp(result: dict[str, Any], settings: Settings, commit: str) -> dict[str, Any]:
    """``commit``: read when the run started (the code that ran, not what HEAD became)."""
    return result | {"transport": settings.media_transport, "commit": commit,
                     "machine": machine(),
                     "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}


async def latency(settings: Settings, turns: int, progress: Progress = print) -> dict[str, Any]:
    """``turns`` questions per tenant; V2V at the caller and the per-stage breakdown."""
    commit = _git_commit()
    stt = WhisperStt()
    probes: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="voice-agent-bench-") as data:
        async with running_agent(_conversation_settings(settings, data)) as manager:
            await manager.wait_connected(30)
            rows = await _interview(settings, turns, stt, lambda: _session_record(manager),
                                    progress)
            for number, steps in _by_number("paused").items():
                for step in steps:
                    _, record = await _one_call(settings, stt, number, [step],
                                                lambda: _session_record(manager))
                    heard = record.turns[0].get("heard", "") if record and record.turns else ""
                    cut = record is None or len(record.turns) != 1
                    probes.append({"number": number, "said": step.label,
                                   "agent_heard": heard, "cut_off": cut})
                    progress(f"{number}: {step.label!r} → "
                             f"{'CUT OFF' if cut else 'waited'} ({heard!r})")
    v2v = [r["v2v_s"] for r in rows if r["v2v_s"] is not None]
    staged = [r["stages"] for r in rows if r["stages"]]
    ends = [r["turn_end"] for r in rows]
    return _stamp({"kind": "latency", "turns": rows, "v2v_s": _percentiles(v2v),
                   "stages_s": {s: _percentiles([st[s] for st in staged]) for s in STAGES},
                   "turn_end": {verdict: ends.count(verdict) for verdict in sorted(set(ends))},
                   "pause_probes": probes,
                   "cut_off_callers": sum(p["cut_off"] for p in probes),
                   "stack": STACK}, settings, commit)


async def compare(settings: Settings, turns: int, progress: Progress = print) -> dict[str, Any]:
    """The same questions through ARI (streamed, full duplex) and AGI (the sequential fallback).

    Same models, tenants and caller; the caller does not transcribe the replies,
    so this process's CPU is the agent's (plus the simulated phone's RTP). AGI's
    turn ends on ``RECORD FILE``'s silence detection, which counts silent audio
    frames, so its caller sends 3 s of silence after each question.
    """
    commit = _git_commit()
    paths: dict[str, Any] = {}
    process = psutil.Process()
    with tempfile.TemporaryDirectory(prefix="voice-agent-bench-") as data:
        agent_settings = _conversation_settings(settings, data)
        for path in ("ari", "agi"):
            progress(f"--- {path}")
            async with contextlib.AsyncExitStack() as stack:
                record_of: RecordOf = lambda: None  # noqa: E731
                silence = 3.0
                if path == "ari":
                    manager = await stack.enter_async_context(running_agent(agent_settings))
                    await manager.wait_connected(30)
                    record_of, silence = functools.partial(_session_record, manager), 0.0
                else:
                    await stack.enter_async_context(running_agi_server(agent_settings))
                cpu, wall = sum(process.cpu_times()[:2]), time.monotonic()
                rows = await _interview(settings, turns, None, record_of, progress, silence)
                cpu_pct = (sum(process.cpu_times()[:2]) - cpu) / (time.monotonic() - wall) * 100
            v2v = [r["v2v_s"] for r in rows if r["v2v_s"] is not None]
            paths[path] = {"v2v_s": _percentiles(v2v), "turns": rows,
                           "agent_cpu_pct_of_a_core_per_call": cpu_pct,
                           "barge_in": "yes" if path == "ari" else
                           "none: AGI plays whole files and records only afterwards"}
    return _stamp({"kind": "compare", "paths": paths, "stack": STACK,
                   "targets": {"plan_agi_s": [4, 10], "plan_ari_s": [1, 3],
                               "issue_v2v_p50_s": 0.9, "issue_v2v_p95_s": 1.5}}, settings, commit)


class _Seen:
    """Each call's record and its jitter-buffer counters, taken as the call ends."""

    def __init__(self, manager: SessionManager) -> None:
        self.manager = manager
        self.records: list[CallRecord] = []
        self.jitter: dict[str, int] = {}

    def record(self) -> CallRecord:
        record = _session_record(self.manager)
        session = next(iter(self.manager.sessions.values()), None)
        if session is not None and isinstance(session.audio, RtpCallAudio):
            for key, value in vars(session.audio.jitter.stats).items():
                self.jitter[key] = self.jitter.get(key, 0) + value
        self.records.append(record)
        return record


def _speaking(manager: SessionManager) -> bool:
    return any(s.state == CallState.SPEAKING for s in manager.sessions.values())


async def _outages_mid_reply(manager: SessionManager, line: Impairment) -> None:
    """Start the profile's outage 0.5 s into every reply (until cancelled).

    Polls the sessions' state: the agent has no event for "a reply started".
    """
    while True:
        await asyncio.sleep(0.05)
        if _speaking(manager):
            await asyncio.sleep(0.5)
            line.outage()
            while _speaking(manager):  # noqa: ASYNC110 - polling, see the docstring
                await asyncio.sleep(0.05)


async def impaired(settings: Settings, turns: int, profiles: list[str],
                   progress: Progress = print) -> dict[str, Any]:
    """The latency questions over each impaired-line profile (RTP transport)."""
    commit = _git_commit()
    stt = WhisperStt()
    cells: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="voice-agent-bench-") as data:
        agent_settings = _conversation_settings(settings, data).model_copy(
            update={"media_transport": "rtp"})
        async with running_agent(agent_settings) as manager:
            await manager.wait_connected(30)
            assert manager.media is not None and manager.media.rtp_server is not None
            rtp = manager.media.rtp_server
            port = rtp.local_address[1]
            for name in profiles:
                profile = PROFILES[name]
                progress(f"--- {name}: {profile.describe()}")
                seen = _Seen(manager)
                clock, before = rtp.clock.stats, vars(rtp.stats).copy()
                ticks, late = clock.ticks, clock.late
                with contextlib.ExitStack() as stack:
                    # a flood profile leaves the line alone (its junk would queue in nfqueue)
                    line = (None if profile.flood_per_s
                            else stack.enter_context(Impairment(port, profile, seed=7)))
                    if profile.flood_per_s:
                        stack.enter_context(Flood(rtp.local_address, profile.flood_per_s))
                    outages = (asyncio.create_task(_outages_mid_reply(manager, line))
                               if line is not None and profile.outage_s else None)
                    try:
                        rows = await _interview(settings, turns, stt, seen.record, progress)
                    finally:
                        if outages is not None:
                            outages.cancel()
                for row in rows:
                    row["wer"] = (word_error_rate(row["reply"], row["heard"])
                                  if row["reply"] else None)
                v2v = [r["v2v_s"] for r in rows if r["v2v_s"] is not None]
                wer = [r["wer"] for r in rows if r["wer"] is not None]
                cells[name] = {
                    "profile": profile.describe(), "v2v_s": _percentiles(v2v),
                    "wer_mean": float(np.mean(wer)) if wer else None,
                    "answered": sum(r["v2v_s"] is not None for r in rows), "turns": rows,
                    "errors": [e for r in seen.records for e in r.errors],
                    "line": None if line is None else {
                        "packets": line.stats.packets, "dropped": line.stats.dropped,
                        "reordered": line.stats.reordered},
                    "agent_jitter_buffer": seen.jitter,
                    # the shared media clock over the whole profile: the 1 % bound
                    "agent_clock": {
                        "ticks": clock.ticks - ticks, "late": clock.late - late,
                        "late_share": (clock.late - late) / max(1, clock.ticks - ticks)},
                    "rtp_server": {key: value - before[key]
                                   for key, value in vars(rtp.stats).items()}}
                progress(f"{name}: V2V p50 {cells[name]['v2v_s']['p50']}, WER "
                         f"{cells[name]['wer_mean']}, jitter buffer {seen.jitter}, "
                         f"late ticks {cells[name]['agent_clock']['late_share']:.2%}")
    return _stamp({"kind": "impaired", "cells": cells, "stack": STACK,
                   "impairment": "iptables NFQUEUE on the agent's RTP port, both ways, "
                                 "seeded; flood: junk datagrams from a separate process "
                                 "(voice_agent.dev.impair)"}, agent_settings, commit)


#: Caller levels (dB relative to the espeak-ng voice) and paths ``bench barge-in`` sweeps.
LEVELS_DB = (0.0, -6.0, -12.0, -18.0)
PATHS = ("sip", "local")
#: espeak-ng voices the interrupting callers take turns with.
VOICES = ("en-us", "en-gb-x-rp", "en-029")
BACKCHANNEL = "Uh-huh."


def _barge_in_script() -> tuple[str, Step, Step, str]:
    """The example marked ``use: barge_in``: the number, a question with a long answer,
    the question that interrupts it, and words of the answer to that (its ``expect``)."""
    number, conversation = example("barge_in")
    long_answer, interruption = steps_of(conversation)[:2]
    return number, long_answer, interruption, conversation.steps[1].expect.lower()


async def _interruptions(settings: Settings, stt: WhisperStt, manager: SessionManager,
                         count: int, path: str, level: float,
                         progress: Progress) -> list[dict[str, Any]]:
    rows = []
    number, long_answer, interruption, answer = _barge_in_script()
    for i in range(count):
        after, voice = 1.0 + (i % 4) * 0.5, VOICES[i % len(VOICES)]
        exchanges, record = await _one_call(
            settings, stt, number, [long_answer,
                                    dataclasses.replace(interruption, barge_in_after=after)],
            lambda: _session_record(manager), via=path, gain_db=level, voice=voice)
        assert record is not None
        cut = record.barge_ins[0] if record.barge_ins else {}
        rows.append({
            "path": path, "level_db": level, "voice": voice, "after_s": after,
            "stop_at_caller_s": exchanges[-1].barge_in_stop_s,
            "pause_s": cut["paused"] - cut["onset"] if cut else None,
            "decide_s": cut["detected"] - cut["onset"] if cut else None,
            "answered_new_question": answer in (record.turns[-1].get("reply") or "").lower(),
            "heard_answer": exchanges[-1].heard})
        stop = rows[-1]["stop_at_caller_s"]
        progress(f"{path} {level:+.0f} dB {voice}: stop at caller "
                 f"{'-' if stop is None else f'{stop * 1000:.0f} ms'}, "
                 f"answered: {rows[-1]['answered_new_question']}")
    return rows


async def _over_the_reply(settings: Settings, stt: WhisperStt, manager: SessionManager,
                          sound: np.ndarray, after: float) -> CallRecord:
    """Ask for the long reply, play ``sound`` ``after`` s into it; the call's record."""
    number, long_answer, *_ = _barge_in_script()
    async with SimPhone(settings.ari_url, settings.ari_user, settings.ari_secret()) as phone:
        call = await phone.dial(number, audio=True, via="sip")
        async with ScriptedCaller(call, stt) as caller:
            await caller.run([long_answer])
            await asyncio.sleep(after)
            await call.say(sound)
            await caller.finish()
            record = _session_record(manager)
        await call.hangup()
    return record


async def barge_in(settings: Settings, interruptions: int, coughs: int, backchannels: int,
                   levels: tuple[float, ...] = LEVELS_DB, paths: tuple[str, ...] = PATHS,
                   progress: Progress = print) -> dict[str, Any]:
    """Interrupt the long return-policy reply at every level and path; then cough and
    backchannel over it (neither may interrupt)."""
    commit = _git_commit()
    stt = WhisperStt()
    rows: list[dict[str, Any]] = []
    false_on_coughs = paused_on_coughs = false_on_backchannels = resumed = 0
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory(prefix="voice-agent-bench-") as data:
        async with running_agent(_conversation_settings(settings, data)) as manager:
            await manager.wait_connected(30)
            for path in paths:
                for level in levels:
                    rows += await _interruptions(settings, stt, manager, interruptions,
                                                 path, level, progress)
            for i in range(coughs):
                burst = (rng.standard_normal(1600) * 6000).astype(np.int16)  # 100 ms
                record = await _over_the_reply(settings, stt, manager, burst, 1.0 + i % 3)
                false_on_coughs += bool(record.barge_ins)
                paused_on_coughs += bool(record.turns and record.turns[0].get("pauses"))
                progress(f"cough {i + 1}: {'INTERRUPTED' if record.barge_ins else 'ignored'}")
            for i in range(backchannels):
                uh_huh = speech(BACKCHANNEL, voice=VOICES[i % len(VOICES)])
                record = await _over_the_reply(settings, stt, manager, uh_huh, 1.0 + i % 3)
                pauses = record.turns[0].get("pauses", []) if record.turns else []
                false_on_backchannels += bool(record.barge_ins)
                resumed += any(p["reason"] == "backchannel" for p in pauses)
                progress(f"backchannel {i + 1}: "
                         f"{'INTERRUPTED' if record.barge_ins else 'resumed'}")
    cells = {}
    for path, level in itertools.product(paths, levels):
        stops = [r["stop_at_caller_s"] for r in rows if r["path"] == path
                 and r["level_db"] == level and r["stop_at_caller_s"] is not None]
        cells[f"{path} {level:+.0f} dB"] = {
            "path": path, "level_db": level, "stop_at_caller_s": _percentiles(stops),
            "answered": sum(r["answered_new_question"] for r in rows
                            if r["path"] == path and r["level_db"] == level)}
    stops = [r["stop_at_caller_s"] for r in rows if r["stop_at_caller_s"] is not None]
    pauses = [r["pause_s"] for r in rows if r["pause_s"] is not None]
    return _stamp({"kind": "barge-in", "interruptions": rows, "cells": cells,
                   "voices": list(VOICES),
                   "stop_at_caller_s": _percentiles(stops),
                   "onset_to_pause_s": _percentiles(pauses),
                   "answered_new_question": sum(r["answered_new_question"] for r in rows),
                   "coughs": coughs, "false_barge_ins": false_on_coughs,
                   "false_barge_in_rate": false_on_coughs / coughs if coughs else None,
                   "coughs_paused": paused_on_coughs,
                   "backchannels": backchannels,
                   "backchannels_resumed": resumed,
                   "backchannel_resumed_rate": resumed / backchannels if backchannels else None,
                   "false_barge_ins_on_backchannels": false_on_backchannels},
                  settings, commit)


def _v2v_bars(axes: Any, cells: dict[str, Any]) -> None:
    """V2V p50 and p95 bars, one pair per cell (an ARI/AGI path, an impairment profile)."""
    for q in ("p50", "p95"):
        axes.bar([f"{n}\n{q}" for n in cells], [cells[n]["v2v_s"][q] or 0 for n in cells])
    axes.set(title="voice-to-voice at the caller", ylabel="s")


def save(result: dict[str, Any], results: Path = RESULTS) -> Path:
    """JSON + a PNG (latency histogram and stage medians, or barge-in stop delays)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results.mkdir(parents=True, exist_ok=True)
    name = result["kind"]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    if name == "compare":
        paths = result["paths"]
        names = list(paths)
        _v2v_bars(left, paths)
        right.bar(names, [paths[n]["agent_cpu_pct_of_a_core_per_call"] for n in names])
        right.set(title="agent CPU per call", ylabel="% of one core")
    elif name == "latency":
        left.hist([r["v2v_s"] for r in result["turns"] if r["v2v_s"] is not None], bins=15)
        left.set(title="voice-to-voice at the caller", xlabel="s", ylabel="turns")
        medians = [result["stages_s"][s]["p50"] or 0 for s in STAGES]
        right.barh(STAGES, medians)
        right.set(title="median per stage", xlabel="s")
    elif name == "impaired":
        cells = result["cells"]
        names = list(cells)
        _v2v_bars(left, cells)
        left.tick_params(axis="x", labelsize=6)
        right.bar(names, [cells[n]["wer_mean"] or 0 for n in names])
        right.set(title="word error rate at the phone (vs the reply)", ylabel="WER")
        right.tick_params(axis="x", labelsize=7)
    else:
        cells = result["cells"]
        names = list(cells)
        left.barh(names, [(cells[n]["stop_at_caller_s"]["p95"] or 0) * 1000 for n in names])
        left.axvline(120, color="grey", linestyle="--")
        left.set(title="barge-in stop at the caller, p95", xlabel="ms")
        right.bar(["interruptions", "coughs ignored", "backchannels resumed"],
                  [len(result["interruptions"]), result["coughs"] - result["false_barge_ins"],
                   result["backchannels_resumed"]])
        right.set(title="counts")
    figure.suptitle(f"{name} — commit {result['commit']}, {result['transport']}")
    return write_result(figure, result, results, name)
