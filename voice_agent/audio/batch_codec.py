"""Every RTP call's 8 kHz <-> 16 kHz edge work in one numpy pass per batch.

Why: per call and per 20 ms frame, the stateful :class:`~voice_agent.audio.
resample.Resampler` plus G.711 costs ≈ 40 µs each way, almost all of it
numpy call overhead on 160-sample arrays (measured; the filtering itself is
≈ 1 µs). At 200 calls that overhead alone is 80 % of a core. Doing the same
filter for *all* calls' frames of one event-loop turn as one matrix product
pays the overhead once: ≈ 4-6 µs per frame at 50+ calls (``voice-agent bench
micro batch-codec`` re-measures).

How: the 2:1 and 1:2 polyphase FIRs are the same Kaiser-windowed sinc banks as
:class:`Resampler` (so the output is the same samples; the unit tests compare
them), written as a block-banded matrix: each block of ``B`` input samples
plus the ``taps - 1`` samples of history before it maps to its outputs by one
small dense matrix, and every block of every stream goes through one batched
``matmul``. The filter history of each stream lives in a row of one array
(a *slot*), gathered and scattered with fancy indexing, so a batch costs a
fixed number of numpy calls whatever the number of calls in it.

Only the telephone ratios are batched (8k->16k any length, 16k->8k even
lengths); TTS rates keep the per-call :class:`Resampler`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from voice_agent.audio.frames import Pcm16
from voice_agent.audio.g711 import ALAW_DECODE, ALAW_ENCODE, ULAW_DECODE, ULAW_ENCODE
from voice_agent.audio.resample import _polyphase_bank, to_pcm16

#: Input samples per block: small blocks waste fewest zero taps (measured best of 16-160).
_BLOCK = 16


class BatchResampler:
    """8k->16k or 16k->8k for many streams at once; one history row (slot) per stream."""

    def __init__(self, in_rate: int, out_rate: int, capacity: int = 64) -> None:
        if (in_rate, out_rate) not in ((8000, 16000), (16000, 8000)):
            raise ValueError(f"BatchResampler does 8000<->16000 only, not {in_rate}->{out_rate}")
        self.up = out_rate > in_rate
        factor = 2
        bank = _polyphase_bank(factor if self.up else 1, 1 if self.up else factor,
                               in_rate, out_rate)
        self._bank = bank
        self._taps = bank.shape[1]
        self._history = np.zeros((capacity, self._taps - 1))
        self._free = list(range(capacity - 1, -1, -1))
        self._matrices: dict[int, npt.NDArray[np.float64]] = {}

    # ----------------------------------------------------------------- slots
    def open(self) -> int:
        """A fresh stream (silent history); returns its slot."""
        if not self._free:
            old = len(self._history)
            self._history = np.concatenate((self._history, np.zeros_like(self._history)))
            self._free = list(range(2 * old - 1, old - 1, -1))
        slot = self._free.pop()
        self._history[slot] = 0.0
        return slot

    def close(self, slot: int) -> None:
        """Give the slot back; its stream must not be processed again."""
        self._free.append(slot)

    # ------------------------------------------------------------ filtering
    def process(self, slots: Sequence[int] | npt.NDArray[np.intp], chunks: Pcm16) -> Pcm16:
        """Resample row ``i`` of ``chunks`` (shape ``(k, n)``) as the next chunk of ``slots[i]``.

        Returns shape ``(k, 2n)`` going up, ``(k, n // 2)`` going down; each
        row continues its stream exactly as :meth:`Resampler.process` would.
        """
        k, n = chunks.shape
        if not self.up and n % 2:
            raise ValueError(f"16k->8k chunks must have an even length, got {n}")
        history = self._taps - 1
        rows = np.asarray(slots, dtype=np.intp)
        buffer = np.empty((k, history + n))
        buffer[:, :history] = self._history[rows]
        buffer[:, history:] = chunks
        self._history[rows] = buffer[:, n:]
        block = math.gcd(n, _BLOCK)
        # Overlapping block windows as a view (np.ndarray directly: as_strided
        # costs ≈ 15 µs of Python per call, more than a small batch's filtering).
        windows = np.ndarray((k, n // block, history + block), buffer=buffer,
                             strides=(buffer.strides[0], block * 8, 8))
        return to_pcm16((windows @ self._matrix(block)).reshape(k, -1))

    def _matrix(self, block: int) -> npt.NDArray[np.float64]:
        """The dense map from (history + ``block`` inputs) to that block's outputs."""
        if block not in self._matrices:
            taps = self._taps
            if self.up:
                matrix = np.zeros((taps - 1 + block, 2 * block))
                for i in range(block):
                    for phase in range(2):
                        matrix[i:i + taps, 2 * i + phase] = self._bank[phase]
            else:
                matrix = np.zeros((taps - 1 + block, block // 2))
                for j in range(block // 2):
                    matrix[2 * j:2 * j + taps, j] = self._bank[0]
            self._matrices[block] = matrix
        return self._matrices[block]


def decode_rows(wire_format: str, payloads: npt.NDArray[np.uint8]) -> Pcm16:
    """Wire payload rows (uint8, shape ``(k, bytes)``) -> int16 sample rows at 8 kHz.

    ``slin`` here is RTP's big-endian PCM16.
    """
    if wire_format == "ulaw":
        return ULAW_DECODE.take(payloads)
    if wire_format == "alaw":
        return ALAW_DECODE.take(payloads)
    if wire_format == "slin":
        return payloads.view(">i2").astype(np.int16)
    raise ValueError(f"no batch decoder for {wire_format!r}")


def encode_rows(wire_format: str, samples: Pcm16) -> npt.NDArray[np.uint8]:
    """int16 sample rows at 8 kHz -> wire payload rows (uint8)."""
    if wire_format == "ulaw":
        return ULAW_ENCODE.take(samples.view(np.uint16))
    if wire_format == "alaw":
        return ALAW_ENCODE.take(samples.view(np.uint16))
    if wire_format == "slin":
        return samples.astype(">i2").view(np.uint8)
    raise ValueError(f"no batch encoder for {wire_format!r}")
