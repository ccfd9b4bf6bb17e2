"""Signal levels in dBFS: what barge-in, echo margins and the benchmarks compare."""

from __future__ import annotations

import math

import numpy as np

from voice_agent.audio.frames import Pcm16

SILENCE_DBFS = 20 * math.log10(1 / 32768)
"""≈ -90.3 dBFS: the level of one LSB, reported for digital silence instead of -inf."""


def rms_dbfs(rms: float) -> float:
    """An RMS amplitude of PCM16 in dB relative to full scale (never below one LSB)."""
    return 20 * math.log10(max(rms, 1.0) / 32768)


def level_dbfs(pcm: Pcm16) -> float:
    """RMS level of PCM16 audio in dBFS."""
    if not len(pcm):
        return SILENCE_DBFS
    return rms_dbfs(math.sqrt(float(np.mean(np.square(pcm, dtype=np.float64)))))
