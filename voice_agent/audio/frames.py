"""The agent's one internal audio format: PCM16 mono at 16 kHz in 20 ms frames.

Every layer above speaks this format; conversion happens only at the edges
(:mod:`~voice_agent.audio.g711`, :mod:`~voice_agent.audio.resample`).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Pcm16 = npt.NDArray[np.int16]


INTERNAL_RATE = 16000
"""Sample rate of all audio inside the agent."""


FRAME_SAMPLES = INTERNAL_RATE // 50  # 20 ms at 16 kHz


FRAME_SECONDS = 0.02
FRAME_MS = 20
"""Frame length in milliseconds: the RTP packetisation of every phone line we meet."""
