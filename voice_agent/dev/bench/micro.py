"""Micro-benchmarks of single components: printed reports, not tests, no results file.

``python -m voice_agent.dev.bench.micro codec|batch-codec|vad|stt|tts`` (or
``voice-agent bench micro WHAT``). They used to sit at the bottom of the
production modules they measure; they live here so production code imports no
benchmark helpers (soxr, the caller simulator) and stays small.

* ``codec``: the scalar resampler's cost, delay and filter quality, against soxr
  (why we filter ourselves), and G.711 per frame;
* ``batch-codec``: the batched edge codec against the per-call resampler;
* ``vad``: Silero and webrtcvad µs per 20 ms frame, and the endpointer;
* ``stt``: Whisper load time and latency against utterance length;
* ``tts``: Piper and espeak-ng time to first audio and real-time factor.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
import timeit
from collections.abc import Callable
from typing import Any

import numpy as np

from voice_agent.audio.batch_codec import BatchResampler
from voice_agent.audio.frames import INTERNAL_RATE, Pcm16
from voice_agent.audio.g711 import ulaw_decode, ulaw_encode
from voice_agent.audio.resample import _CUTOFF, _TRANSITION, Resampler
from voice_agent.dev.sim.signals import speech
from voice_agent.dev.sim.wer import word_error_rate
from voice_agent.providers.stt import SpeechToText, WhisperStt
from voice_agent.providers.tts import EspeakTts, PiperTts, TextToSpeech
from voice_agent.providers.vad import Endpointer, SileroVad, WebRtcVad, iter_frames, silero_session


def _per_call_us(fn: Callable[[Any], object], arg: Any, number: int = 1000) -> float:
    """Best of five timing runs: the minimum is the least disturbed by other load."""
    return min(timeit.repeat(lambda: fn(arg), number=number, repeat=5)) / number * 1e6


def _response_db(resampler: Resampler) -> tuple[float, float]:
    """(passband ripple dB, minimum stopband attenuation dB) of the prototype filter."""
    up = resampler._up
    prototype = resampler._bank[:, ::-1].T.reshape(-1)  # back to prototype order
    low_rate = min(resampler.in_rate, resampler.out_rate)
    n_fft = 1 << 20
    gain = np.abs(np.fft.rfft(prototype, n_fft))
    freq = np.fft.rfftfreq(n_fft, 1 / (up * resampler.in_rate))
    passband = gain[freq <= (_CUTOFF - _TRANSITION / 2) * low_rate]
    stopband = gain[freq >= (_CUTOFF + _TRANSITION / 2) * low_rate]
    ripple = 20 * np.log10(passband.max() / passband.min())
    return float(ripple), float(20 * np.log10(passband.mean() / stopband.max()))


def _tone_gain_db(resample: Callable[[Pcm16], Pcm16], in_rate: int, freq: float) -> float:
    """Output/input RMS of a 1 s tone streamed in 20 ms frames (alias leakage shows here)."""
    tone = (10000 * np.sin(2 * np.pi * freq * np.arange(in_rate) / in_rate)).astype(np.int16)
    frame = in_rate // 50
    out = np.concatenate([resample(tone[i : i + frame]) for i in range(0, in_rate, frame)])
    steady = out[len(out) // 4 :].astype(np.float64)
    return float(20 * np.log10(np.sqrt(np.mean(steady**2)) / (10000 / np.sqrt(2))))


def _soxr_comparison(frame: Pcm16) -> None:
    """Why not soxr: per-frame one-shot has no state, streaming is bursty or unfiltered."""
    import soxr

    oneshot = _per_call_us(lambda x: soxr.resample(x, 16000, 8000), frame)
    print(f"soxr.resample one-shot 16k->8k: {oneshot:.1f} µs/frame (no state across frames)")
    for quality in ("QQ", "LQ", "HQ"):
        stream = soxr.ResampleStream(16000, 8000, 1, dtype="int16", quality=quality)
        sizes = [len(stream.resample_chunk(frame)) for _ in range(12)]
        probe = soxr.ResampleStream(16000, 8000, 1, dtype="int16", quality=quality)
        alias = _tone_gain_db(probe.resample_chunk, 16000, 6000)
        print(f"soxr.ResampleStream {quality}: out per frame {sizes}, 6 kHz -> {alias:.1f} dB")


def codec_report() -> None:
    """Print per-frame cost, delay and filter quality (a report, not a test)."""
    rng = np.random.default_rng(0)
    for in_rate, out_rate in [(8000, 16000), (16000, 8000), (24000, 16000), (22050, 16000)]:
        resampler = Resampler(in_rate, out_rate)
        frame = rng.integers(-8000, 8000, in_rate // 50).astype(np.int16)
        us = _per_call_us(resampler.process, frame)
        ripple, atten = _response_db(resampler)
        print(
            f"Resampler {in_rate:>5} -> {out_rate:>5}: {us:5.1f} µs/20 ms frame, "
            f"delay {resampler.delay_samples / out_rate * 1e3:.2f} ms, "
            f"{resampler._taps} taps/output, ripple {ripple:.4f} dB, stopband {atten:.1f} dB"
        )
    alias = _tone_gain_db(Resampler(16000, 8000).process, 16000, 6000)
    print(f"Resampler 16000 -> 8000: 6 kHz tone -> {alias:.1f} dB")
    pcm = rng.integers(-8000, 8000, 320).astype(np.int16)
    _soxr_comparison(pcm)
    ulaw = ulaw_encode(pcm[:160])
    print(f"ulaw_encode 160 samples: {_per_call_us(ulaw_encode, pcm[:160]):.1f} µs")
    print(f"ulaw_decode 160 bytes:   {_per_call_us(ulaw_decode, ulaw):.1f} µs")


def batch_codec_report() -> None:
    """Per-frame cost of one batch against the per-call Resampler (a report, not a test)."""
    rng = np.random.default_rng(0)
    for in_rate, out_rate in [(8000, 16000), (16000, 8000)]:
        frame = in_rate // 50
        single = Resampler(in_rate, out_rate)
        one = rng.integers(-8000, 8000, frame).astype(np.int16)
        per_call = min(timeit.repeat(lambda: single.process(one),  # noqa: B023
                                     number=2000, repeat=5)) / 2000
        print(f"Resampler      {in_rate}->{out_rate}: {per_call * 1e6:5.1f} µs/frame")
        for calls in (1, 10, 50, 200):
            batch = BatchResampler(in_rate, out_rate, capacity=calls)
            slots = [batch.open() for _ in range(calls)]
            chunks = rng.integers(-8000, 8000, (calls, frame)).astype(np.int16)
            cost = min(timeit.repeat(lambda: batch.process(slots, chunks),  # noqa: B023
                                     number=200, repeat=5)) / 200
            print(f"BatchResampler {in_rate}->{out_rate}, {calls:>3} calls: "
                  f"{cost / calls * 1e6:5.1f} µs/frame")


def vad_report(seconds: float = 2.0) -> None:
    """Print each detector's cost per 20 ms frame (a report, not a test).

    Noise is as expensive to score as speech for both detectors, so a seeded
    noise clip keeps the report reproducible. ``seconds`` of audio gives Silero
    every phase of its 5-runs-per-8-frames buffering.
    """
    rng = np.random.default_rng(0)
    clip = rng.normal(0, 3000, int(seconds * INTERNAL_RATE)).clip(-32768, 32767)
    frames = list(iter_frames(clip.astype(np.int16)))
    began = time.perf_counter()
    silero_session()
    print(f"silero model load: {(time.perf_counter() - began) * 1e3:.0f} ms (once per process)")
    for vad in (SileroVad(), WebRtcVad()):
        best = min(timeit.repeat(lambda v=vad: [v.speech_probability(f) for f in frames],
                                 number=5, repeat=5))
        print(f"{vad.name:>8}: {best / (5 * len(frames)) * 1e6:7.1f} µs/20 ms frame")
    endpointer = Endpointer()
    best = min(timeit.repeat(lambda: [endpointer.process(f, 0.9) for f in frames],
                             number=5, repeat=5))
    print(f"endpointer: {best / (5 * len(frames)) * 1e6:5.1f} µs/20 ms frame")


BENCHMARK_UTTERANCES = (
    "Yes please.",
    "I would like to check my order.",
    "Please transfer me to the billing department, my invoice was wrong.",
    "I bought a radio last week and the screen stays black, "
    "so I would like to return it and get a refund to my credit card.",
)


async def _stt_report(stt: SpeechToText, repeats: int = 3) -> None:
    for text in BENCHMARK_UTTERANCES:
        pcm = speech(text)
        results = [await stt.transcribe(pcm) for _ in range(repeats)]
        latency = statistics.median(r.processing_seconds for r in results)
        duration = len(pcm) / INTERNAL_RATE
        wer = word_error_rate(text, results[0].text)
        print(
            f"{stt.name}: {duration:4.1f} s utterance -> {latency * 1000:5.0f} ms "
            f"(RTF {latency / duration:.2f}), WER {wer:.2f}: {results[0].text!r}"
        )


def stt_report() -> None:
    """Print Whisper load time and latency against utterance length (a report, not a test)."""
    stt = WhisperStt()
    start = time.perf_counter()
    asyncio.run(stt.load())
    print(f"whisper: load + warm-up {time.perf_counter() - start:.2f} s")
    asyncio.run(_stt_report(stt))


BENCHMARK_TEXTS = (
    "Thank you for calling Acme Corp, how can I help you today?",
    "Your order shipped yesterday. It should arrive on Thursday, and you will get a text "
    "message with the tracking number.",
)


async def _tts_report(tts: TextToSpeech) -> None:
    for text in BENCHMARK_TEXTS:
        start = time.perf_counter()
        first: float | None = None
        samples = 0
        async for chunk in tts.stream(text):
            first = first if first is not None else time.perf_counter() - start
            samples += len(chunk)
        total = time.perf_counter() - start
        audio = samples / INTERNAL_RATE
        print(
            f"{tts.name}: {len(text):3d} chars -> {audio:4.1f} s audio, first audio "
            f"{(first or 0) * 1000:4.0f} ms, total {total * 1000:5.0f} ms, RTF {total / audio:.2f}"
        )


def tts_report() -> None:
    """Print Piper load time, then time to first audio and RTF per provider (a report)."""
    piper = PiperTts()
    start = time.perf_counter()
    asyncio.run(piper.load())
    print(f"piper: load + warm-up {time.perf_counter() - start:.2f} s")
    for tts in (piper, EspeakTts()):
        asyncio.run(_tts_report(tts))


REPORTS: dict[str, Callable[[], None]] = {
    "codec": codec_report,
    "batch-codec": batch_codec_report,
    "vad": vad_report,
    "stt": stt_report,
    "tts": tts_report,
}


def main(argv: list[str]) -> int:
    """Run the named reports (all when none is named)."""
    unknown = [name for name in argv if name not in REPORTS]
    if unknown:
        print(f"unknown report(s) {unknown}; choose from {sorted(REPORTS)}", file=sys.stderr)
        return 2
    for name in argv or list(REPORTS):
        print(f"== {name}")
        REPORTS[name]()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
