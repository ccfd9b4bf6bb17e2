"""WAV in memory: the upload format of speech servers and the AGI file format.

The standard library's ``wave`` writes; reading is a small chunk walk because
servers send WAVs that ``wave`` rejects (a data size of 0xFFFFFFFF for a
streamed body, extra chunks before ``data``).
"""

from __future__ import annotations

import io
import struct
import wave

import numpy as np

from voice_agent.audio.frames import INTERNAL_RATE, Pcm16


class WavFormatError(ValueError):
    """Bytes that are not a mono 16-bit PCM WAV file."""


def wav_bytes(pcm: Pcm16, rate: int = INTERNAL_RATE) -> bytes:
    """``pcm`` as a mono 16-bit WAV file: the upload format every server accepts."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(np.asarray(pcm, dtype="<i2").tobytes())
    return buffer.getvalue()


def parse_wav(data: bytes) -> tuple[int, Pcm16]:
    """(sample rate, samples) of a mono 16-bit PCM WAV file.

    Tolerates the size fields that streaming writers cannot know in advance
    (espeak-ng ``--stdout`` and many TTS servers write 0x7FFFF000 or
    0xFFFFFFFF): the data chunk simply runs to the end of the bytes. The
    ``wave`` module rejects or truncates such files.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise WavFormatError(f"not a WAV file (starts with {data[:12]!r})")
    offset, rate = 12, None
    while offset + 8 <= len(data):
        chunk_id, size = data[offset : offset + 4], struct.unpack_from("<I", data, offset + 4)[0]
        body = offset + 8
        if chunk_id == b"fmt ":
            fmt, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", data, body)
            if fmt != 1 or channels != 1 or bits != 16:
                raise WavFormatError(f"need mono 16-bit PCM WAV, got format {fmt}, "
                               f"{channels} channel(s), {bits} bits")
        elif chunk_id == b"data":
            if rate is None:
                raise WavFormatError("WAV data chunk comes before its fmt chunk")
            end = min(len(data), body + size)
            end -= (end - body) % 2
            return rate, np.frombuffer(data[body:end], dtype="<i2").astype(np.int16)
        offset = body + size + (size & 1)
    raise WavFormatError("WAV file has no data chunk")
