"""Known test signals and the measurements that compare them with what came back.

Signals are generated, not shipped: tones and sweeps with numpy, speech with
espeak-ng (a Debian package; the test-audio generator named in the plan)
resampled with sox. Measurements are what a telephony engineer would check by
ear and with a scope: where the dominant frequency is, whether the returned
audio has the same shape (normalised cross-correlation at the best lag), and
how loud it is over time.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voice_agent.audio.frames import Pcm16
from voice_agent.audio.g711 import ulaw_decode, ulaw_encode
from voice_agent.audio.resample import Resampler


def tone(freq: float, seconds: float, rate: int = 16000, level: float = 0.4) -> Pcm16:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * freq * t) * level * 32767).astype(np.int16)


def sweep(f0: float, f1: float, seconds: float, rate: int = 16000, level: float = 0.4) -> Pcm16:
    """A linear chirp: every frequency in the band once, so any distortion shows."""
    t = np.arange(int(seconds * rate)) / rate
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t * t / (2 * seconds))
    return (np.sin(phase) * level * 32767).astype(np.int16)


def speech(text: str, rate: int = 16000, voice: str = "en-us") -> Pcm16:
    """``text`` spoken by espeak-ng, as PCM16 at ``rate``."""
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        raise RuntimeError("espeak-ng and sox are needed (scripts/install.sh installs them)")
    with tempfile.TemporaryDirectory(prefix="va-speech-") as tmp:
        raw, out = Path(tmp) / "raw.wav", Path(tmp) / "out.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(raw), text], check=True,
                       capture_output=True)
        subprocess.run(["sox", "-R", str(raw), "-r", str(rate), "-c", "1", "-b", "16", str(out)],
                       check=True, capture_output=True)
        with wave.open(str(out)) as wav:
            return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").copy()


def resample(samples: Pcm16, in_rate: int, out_rate: int) -> Pcm16:
    if in_rate == out_rate:
        return samples
    resampler = Resampler(in_rate, out_rate)
    return np.concatenate((resampler.process(samples), resampler.flush()))


def phone_path(samples: Pcm16) -> Pcm16:
    """16 kHz audio as the agent receives it after an 8 kHz G.711 µ-law call leg.

    Stateful resamplers over the whole signal give exactly the samples of the
    call's frame-by-frame path (the resampler's continuity property); a partial
    last 20 ms frame is padded with silence, as on a call.
    """
    frame = 320
    padded = np.zeros(-(-len(samples) // frame) * frame, dtype=np.int16)
    padded[: len(samples)] = samples
    narrow = Resampler(16000, 8000).process(padded)
    return Resampler(8000, 16000).process(ulaw_decode(ulaw_encode(narrow)))


def dominant_frequency(samples: Pcm16, rate: int) -> float:
    """Frequency of the strongest spectral peak (Hann-windowed FFT)."""
    x = samples.astype(np.float64) * np.hanning(len(samples))
    spectrum = np.abs(np.fft.rfft(x))
    spectrum[0] = 0.0
    return float(np.argmax(spectrum) * rate / len(samples))


@dataclass
class Match:
    """Where ``reference`` was found in a recording and how alike it was."""

    lag_seconds: float
    correlation: float  # normalised, 1.0 = identical shape


def find(reference: Pcm16, recording: Pcm16, rate: int, oversample: int = 8) -> Match:
    """Best-matching position of ``reference`` inside ``recording`` (same ``rate``).

    Both are band-limited-interpolated ``oversample`` times first: a telephone
    path delays audio by a fraction of a sample, and at 8 kHz a half-sample
    offset alone turns a 3 kHz component's correlation negative.
    """
    ref = _interpolate(reference, oversample)
    # Zero-pad so the reference may run up to 10 % past the recording's end (a
    # recording stopped a few frames early still matches) or be longer than it.
    overhang = max(len(ref) // 10, len(ref) - len(recording) * oversample)
    rec = np.concatenate((_interpolate(recording, oversample), np.zeros(overhang)))
    n = 1 << int(np.ceil(np.log2(len(rec) + len(ref))))
    corr = np.fft.irfft(np.fft.rfft(rec, n) * np.conj(np.fft.rfft(ref, n)), n)
    lag = int(np.argmax(corr[: len(rec) - len(ref) + 1]))
    window = rec[lag:lag + len(ref)]
    denominator = np.linalg.norm(ref) * np.linalg.norm(window)
    correlation = float(np.dot(ref, window) / denominator) if denominator else 0.0
    return Match(lag / (rate * oversample), correlation)


def frames_intact(reference: Pcm16, recording: Pcm16, rate: int, match: Match, *,
                  slack: float = 0.045, threshold: float = 0.9, oversample: int = 8) -> float:
    """Share of ``reference``'s voiced 20 ms frames found intact in ``recording`` within
    ``slack`` seconds of ``match``'s lag, each frame matched on its own.

    Why: Asterisk's snoop recorder (an audiohook read on its own 20 ms timer) inserts
    20 ms of silence when a packet reaches it late and plays the rest one frame
    later. One whole-signal correlation then falls below any bound although every
    frame arrived unchanged; frame by frame, only the frame of the slip is lost,
    while real damage (noise, a wrong rate, dropped audio) still fails most frames.
    """
    ref, rec = _interpolate(reference, oversample), _interpolate(recording, oversample)
    size, reach = rate * oversample // 50, int(slack * rate * oversample)
    lag = int(round(match.lag_seconds * rate * oversample))
    loud = np.sqrt(np.mean(ref[: len(ref) - len(ref) % size].reshape(-1, size) ** 2, axis=1))
    scores = []
    for k in np.flatnonzero(loud > 0.1 * loud.max()):
        piece = ref[k * size:(k + 1) * size]
        start = max(0, lag + k * size - reach)
        window = rec[start:lag + (k + 1) * size + reach]
        if len(window) < size:
            scores.append(0.0)
            continue
        dots = np.correlate(window, piece, mode="valid")
        energy = np.sqrt(np.convolve(window**2, np.ones(size), mode="valid"))
        scores.append(float(np.max(dots / (np.linalg.norm(piece) * energy + 1e-9))))
    return float(np.mean(np.array(scores) > threshold)) if scores else 0.0


def _interpolate(samples: Pcm16, factor: int) -> np.ndarray:
    """Ideal (FFT zero-padding) interpolation by an integer ``factor``."""
    x = samples.astype(np.float64)
    if factor == 1:
        return x
    spectrum = np.fft.rfft(x)
    return np.fft.irfft(spectrum, len(x) * factor) * factor


def rms_envelope(samples: Pcm16, rate: int, window: float = 0.02) -> np.ndarray:
    """RMS level per ``window`` seconds (a loudness-over-time trace)."""
    size = max(1, int(rate * window))
    usable = len(samples) - len(samples) % size
    frames = samples[:usable].astype(np.float64).reshape(-1, size)
    return np.sqrt((frames**2).mean(axis=1))
