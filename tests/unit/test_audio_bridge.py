"""Tests for the telephony audio bridge: G.711, byte order, streaming resampling.

G.711 is checked bit-exactly against a scalar transcription of the classic 16-bit
reference (Sun/Reese ``g711.c``). Resampling is checked on signals, never on wall
clock: frame-by-frame output must equal one-shot output, delay and attenuation are
measured in samples and dB.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from tests.helpers import sine
from voice_agent.audio.g711 import (
    ALAW_DECODE,
    ULAW_DECODE,
    alaw_decode,
    alaw_encode,
    pcm16_from_be,
    pcm16_from_le,
    pcm16_to_be,
    pcm16_to_le,
    ulaw_decode,
    ulaw_encode,
)
from voice_agent.audio.resample import Resampler

# ---------------------------------------------------------------------------
# Reference G.711 (scalar, straight from the classic C code)
# ---------------------------------------------------------------------------

BIAS = 0x84
CLIP = 32635
SEG_END = (0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF, 0x3FFF, 0x7FFF)
SEG_AEND = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def _search(value: int, table: tuple[int, ...]) -> int:
    for seg, end in enumerate(table):
        if value <= end:
            return seg
    return len(table)


def ref_linear2ulaw(pcm: int) -> int:
    if pcm < 0:
        pcm, mask = -pcm, 0x7F
    else:
        mask = 0xFF
    pcm = min(pcm, CLIP) + BIAS
    seg = _search(pcm, SEG_END)
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((pcm >> (seg + 3)) & 0xF)) ^ mask


def ref_ulaw2linear(code: int) -> int:
    code = ~code & 0xFF
    t = ((code & 0xF) << 3) + BIAS
    t <<= (code & 0x70) >> 4
    return BIAS - t if code & 0x80 else t - BIAS


def ref_linear2alaw(pcm: int) -> int:
    pcm >>= 3
    if pcm >= 0:
        mask = 0xD5
    else:
        mask = 0x55
        pcm = -pcm - 1
    seg = _search(pcm, SEG_AEND)
    if seg >= 8:
        return 0x7F ^ mask
    quant = (pcm >> 1) if seg < 2 else (pcm >> seg)
    return ((seg << 4) | (quant & 0xF)) ^ mask


def ref_alaw2linear(code: int) -> int:
    code ^= 0x55
    t = (code & 0xF) << 4
    seg = (code & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t = (t + 0x108) << (seg - 1)
    return t if code & 0x80 else -t


ALL_INT16 = np.arange(-32768, 32768, dtype=np.int16)
ALL_CODES = bytes(range(256))


def test_ulaw_decode_matches_reference_for_all_codes() -> None:
    expected = [ref_ulaw2linear(code) for code in range(256)]
    assert ULAW_DECODE.dtype == np.int16
    assert ulaw_decode(ALL_CODES).tolist() == expected


def test_alaw_decode_matches_reference_for_all_codes() -> None:
    expected = [ref_alaw2linear(code) for code in range(256)]
    assert ALAW_DECODE.dtype == np.int16
    assert alaw_decode(ALL_CODES).tolist() == expected


def test_ulaw_encode_matches_reference_for_every_int16() -> None:
    expected = bytes(ref_linear2ulaw(int(x)) for x in ALL_INT16)
    assert ulaw_encode(ALL_INT16) == expected


def test_alaw_encode_matches_reference_for_every_int16() -> None:
    expected = bytes(ref_linear2alaw(int(x)) for x in ALL_INT16)
    assert alaw_encode(ALL_INT16) == expected


@pytest.mark.parametrize(
    ("encode", "decode", "max_level"),
    [(ulaw_encode, ulaw_decode, 32124), (alaw_encode, alaw_decode, 32256)],
    ids=["ulaw", "alaw"],
)
def test_g711_round_trip_error_is_within_half_a_step(encode, decode, max_level: int) -> None:
    """Logarithmic quantiser: the error grows with the level but stays near 1/32 of it."""
    decoded = decode(encode(ALL_INT16)).astype(np.int32)
    original = ALL_INT16.astype(np.int32)
    assert np.abs(decoded).max() == max_level
    in_range = np.abs(original) <= max_level
    error = np.abs(decoded - original)[in_range]
    assert np.all(error <= np.abs(original[in_range]) / 32 + 16)
    # Re-encoding an already decoded sample is lossless (tandem G.711 legs do not degrade).
    assert np.array_equal(decode(encode(decoded.astype(np.int16))), decoded)


def test_g711_accepts_one_20ms_frame() -> None:
    frame = (np.arange(160, dtype=np.int16) - 80) * 200
    assert len(ulaw_encode(frame)) == 160
    assert len(alaw_encode(frame)) == 160
    assert ulaw_decode(ulaw_encode(frame)).shape == (160,)


# ---------------------------------------------------------------------------
# Byte order
# ---------------------------------------------------------------------------


def test_big_endian_helpers_use_network_order() -> None:
    samples = np.array([1, -2, 0x1234], dtype=np.int16)
    assert pcm16_to_be(samples) == b"\x00\x01\xff\xfe\x12\x34"
    decoded = pcm16_from_be(b"\x00\x01\xff\xfe\x12\x34")
    assert decoded.dtype == np.int16
    assert decoded.tolist() == [1, -2, 0x1234]


def test_little_endian_helpers() -> None:
    samples = np.array([1, -2, 0x1234], dtype=np.int16)
    assert pcm16_to_le(samples) == b"\x01\x00\xfe\xff\x34\x12"
    decoded = pcm16_from_le(b"\x01\x00\xfe\xff\x34\x12")
    assert decoded.dtype == np.int16
    assert decoded.tolist() == [1, -2, 0x1234]


def test_byte_order_round_trips_every_value() -> None:
    assert np.array_equal(pcm16_from_be(pcm16_to_be(ALL_INT16)), ALL_INT16)
    assert np.array_equal(pcm16_from_le(pcm16_to_le(ALL_INT16)), ALL_INT16)
    assert pcm16_to_be(ALL_INT16) != pcm16_to_le(ALL_INT16)


# ---------------------------------------------------------------------------
# Resampler
# ---------------------------------------------------------------------------

RATE_PAIRS = [(16000, 8000), (8000, 16000), (24000, 16000), (22050, 16000), (22050, 8000)]


def tones(rate: int, seconds: float = 1.0) -> np.ndarray:
    """440 Hz + 1 kHz, then a 100-3400 Hz chirp: speech-band content with a sweep.

    The 440 Hz tone is the louder one so that a spectral peak check is unambiguous.
    """
    t = np.arange(int(rate * seconds)) / rate
    steady = 8000 * np.sin(2 * np.pi * 440 * t) + 4000 * np.sin(2 * np.pi * 1000 * t)
    sweep = 10000 * np.sin(2 * np.pi * (100 * t + (3400 - 100) / (2 * seconds) * t**2))
    return np.concatenate([steady, sweep]).astype(np.int16)


def in_frames(resampler: Resampler, signal: np.ndarray, size: int) -> list[np.ndarray]:
    return [resampler.process(signal[i : i + size]) for i in range(0, len(signal), size)]


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))


def peak_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[np.argmax(spectrum)])


def lag_of(reference: np.ndarray, delayed: np.ndarray) -> int:
    """Samples by which ``delayed`` trails ``reference`` (peak of the cross-correlation)."""
    n = len(reference) + len(delayed)
    a = np.fft.rfft(reference.astype(np.float64), n)
    b = np.fft.rfft(delayed.astype(np.float64), n)
    correlation = np.fft.irfft(np.conj(a) * b, n)
    lag = int(np.argmax(correlation))
    return lag if lag < n // 2 else lag - n


@pytest.mark.parametrize(("in_rate", "out_rate"), RATE_PAIRS)
def test_frames_give_exactly_the_one_shot_output(in_rate: int, out_rate: int) -> None:
    signal = tones(in_rate)
    whole_resampler = Resampler(in_rate, out_rate)
    whole = np.concatenate([whole_resampler.process(signal), whole_resampler.flush()])
    framed_resampler = Resampler(in_rate, out_rate)
    framed = in_frames(framed_resampler, signal, in_rate // 50) + [framed_resampler.flush()]
    assert np.array_equal(np.concatenate(framed), whole)


@pytest.mark.parametrize(("in_rate", "out_rate"), RATE_PAIRS)
def test_irregular_chunks_give_exactly_the_one_shot_output(in_rate: int, out_rate: int) -> None:
    """TTS hands over odd-sized chunks; chunking must still be invisible in the output."""
    signal = tones(in_rate)
    whole = Resampler(in_rate, out_rate).process(signal)
    sizes = np.random.default_rng(7).integers(0, 1500, 200)
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    bounds = bounds[bounds < len(signal)].tolist() + [len(signal)]
    resampler = Resampler(in_rate, out_rate)
    chunked = [resampler.process(signal[a:b]) for a, b in itertools.pairwise(bounds)]
    assert np.array_equal(np.concatenate(chunked), whole)


@pytest.mark.parametrize(("in_rate", "out_rate"), RATE_PAIRS)
def test_every_20ms_frame_yields_the_same_number_of_samples(in_rate: int, out_rate: int) -> None:
    resampler = Resampler(in_rate, out_rate)
    lengths = {len(out) for out in in_frames(resampler, tones(in_rate), in_rate // 50)}
    assert lengths == {out_rate // 50}


@pytest.mark.parametrize(("in_rate", "out_rate"), RATE_PAIRS)
def test_added_delay_is_a_few_milliseconds(in_rate: int, out_rate: int) -> None:
    """Chirp in, chirp out: the measured lag matches the filter's stated group delay."""
    seconds = 0.5
    t_in = np.arange(int(in_rate * seconds)) / in_rate
    t_out = np.arange(int(out_rate * seconds)) / out_rate

    def chirp(t: np.ndarray) -> np.ndarray:
        return 10000 * np.sin(2 * np.pi * (100 * t + 3300 / (2 * seconds) * t**2))

    resampler = Resampler(in_rate, out_rate)
    output = np.concatenate(in_frames(resampler, chirp(t_in).astype(np.int16), in_rate // 50))
    lag = lag_of(chirp(t_out), output)
    assert abs(lag - resampler.delay_samples) <= 1
    assert 0 <= lag <= 0.005 * out_rate  # under 5 ms


def test_16k_to_8k_rejects_a_6khz_tone_by_40db() -> None:
    resampler = Resampler(16000, 8000)
    output = np.concatenate(in_frames(resampler, sine(16000, 6000), 320))
    assert 20 * np.log10(rms(output[800:]) / rms(sine(16000, 6000))) <= -40


def test_24k_tts_to_16k_rejects_a_10khz_tone_by_40db() -> None:
    resampler = Resampler(24000, 16000)
    output = np.concatenate(in_frames(resampler, sine(24000, 10000), 480))
    assert 20 * np.log10(rms(output[1600:]) / rms(sine(24000, 10000))) <= -40


@pytest.mark.parametrize(("in_rate", "out_rate"), RATE_PAIRS)
def test_passband_tone_keeps_its_frequency_and_level(in_rate: int, out_rate: int) -> None:
    resampler = Resampler(in_rate, out_rate)
    output = np.concatenate(in_frames(resampler, sine(in_rate, 1000), in_rate // 50))
    steady = output[out_rate // 10 :]
    assert peak_hz(steady, out_rate) == pytest.approx(1000, abs=2)
    assert 20 * np.log10(rms(steady) / rms(sine(in_rate, 1000))) == pytest.approx(0, abs=0.1)


def test_8k_to_16k_keeps_the_peak_and_suppresses_the_image() -> None:
    resampler = Resampler(8000, 16000)
    output = np.concatenate(in_frames(resampler, sine(8000, 1000), 160))[1600:]
    assert peak_hz(output, 16000) == pytest.approx(1000, abs=2)
    spectrum = np.abs(np.fft.rfft(output * np.hanning(len(output))))
    freqs = np.fft.rfftfreq(len(output), 1 / 16000)
    image = spectrum[np.abs(freqs - 7000) < 20].max()  # 8000 - 1000 Hz mirror
    assert 20 * np.log10(image / spectrum.max()) <= -40


def test_flush_releases_the_tail_and_resets() -> None:
    resampler = Resampler(16000, 8000)
    signal = np.zeros(3200, dtype=np.int16)
    signal[-1] = 20000  # an impulse right at the end is still inside the filter
    body = np.concatenate(in_frames(resampler, signal, 320))
    tail = resampler.flush()
    assert np.abs(body).max() < np.abs(tail).max()
    assert len(body) + len(tail) == pytest.approx(1600 + resampler.delay_samples, abs=1)
    assert np.array_equal(
        resampler.process(tones(16000)), Resampler(16000, 8000).process(tones(16000))
    )


def test_reset_drops_history() -> None:
    resampler = Resampler(8000, 16000)
    resampler.process(sine(8000, 300, seconds=0.05))
    resampler.reset()
    assert np.array_equal(
        resampler.process(tones(8000)), Resampler(8000, 16000).process(tones(8000))
    )


def test_equal_rates_pass_through() -> None:
    resampler = Resampler(16000, 16000)
    signal = tones(16000)
    assert resampler.identity
    assert not Resampler(16000, 8000).identity
    assert resampler.delay_samples == 0
    assert np.array_equal(resampler.process(signal), signal)
    assert len(resampler.flush()) == 0


def test_full_scale_input_saturates_instead_of_wrapping() -> None:
    """Filter overshoot on a full-scale square must clip at the int16 limits, not wrap."""
    square = np.tile(np.array([32767] * 40 + [-32768] * 40, dtype=np.int16), 50)
    full = Resampler(16000, 8000).process(square).astype(np.int32)
    half = Resampler(16000, 8000).process(square // 2).astype(np.int32)
    assert full.max() == 32767 and full.min() == -32768
    assert np.abs(full - np.clip(2 * half, -32768, 32767)).max() <= 3
