"""The batched edge codec gives every call exactly the samples a per-call codec gives.

The batch path is an optimisation of :class:`Resampler` and the G.711 tables, so
its tests compare with them sample for sample (not within a tolerance): many
streams, slots reused, chunk sizes that do not fill a block, and the RTP
server's batch turn (several packets of one call in one turn, closed calls).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.fakes import batch_decoded, rtp_server
from voice_agent.audio.batch_codec import BatchResampler, decode_rows, encode_rows
from voice_agent.audio.g711 import (
    alaw_decode,
    alaw_encode,
    pcm16_from_be,
    pcm16_to_be,
    ulaw_decode,
    ulaw_encode,
)
from voice_agent.audio.resample import Resampler
from voice_agent.media.rtp import build_rtp, parse_rtp

RNG = np.random.default_rng(7)


def _noise(*shape: int) -> np.ndarray:
    return RNG.integers(-32768, 32767, shape, endpoint=True).astype(np.int16)


@pytest.mark.parametrize(("in_rate", "out_rate", "size"), [
    (8000, 16000, 160), (8000, 16000, 240), (8000, 16000, 7),
    (16000, 8000, 320), (16000, 8000, 34),
])
def test_each_row_continues_its_stream_like_a_resampler(in_rate: int, out_rate: int,
                                                        size: int) -> None:
    batch = BatchResampler(in_rate, out_rate, capacity=2)  # grows to 3
    slots = [batch.open() for _ in range(3)]
    singles = [Resampler(in_rate, out_rate) for _ in slots]
    for _ in range(5):
        chunks = _noise(3, size)  # full-scale noise: saturation must match too
        got = batch.process(slots, chunks)
        want = np.stack([r.process(chunks[i]) for i, r in enumerate(singles)])
        np.testing.assert_array_equal(got, want)


def test_a_subset_of_streams_can_be_processed_in_any_order() -> None:
    batch = BatchResampler(16000, 8000)
    a, b = batch.open(), batch.open()
    ra, rb = Resampler(16000, 8000), Resampler(16000, 8000)
    x, y, z = _noise(1, 320), _noise(1, 320), _noise(1, 640)
    np.testing.assert_array_equal(batch.process([a], x)[0], ra.process(x[0]))
    both = batch.process([b, a], np.concatenate((y, z[:, :320])))
    np.testing.assert_array_equal(both[0], rb.process(y[0]))
    np.testing.assert_array_equal(both[1], ra.process(z[0, :320]))


def test_a_reopened_slot_starts_from_silence() -> None:
    batch = BatchResampler(8000, 16000, capacity=1)
    slot = batch.open()
    batch.process([slot], _noise(1, 160))
    batch.close(slot)
    again = batch.open()
    chunk = _noise(1, 160)
    np.testing.assert_array_equal(batch.process([again], chunk)[0],
                                  Resampler(8000, 16000).process(chunk[0]))


def test_only_telephone_ratios_and_even_decimation() -> None:
    with pytest.raises(ValueError, match="8000<->16000"):
        BatchResampler(24000, 16000)
    with pytest.raises(ValueError, match="even"):
        BatchResampler(16000, 8000).process([0], _noise(1, 161))


@pytest.mark.parametrize(("fmt", "decode", "encode"), [
    ("ulaw", ulaw_decode, ulaw_encode), ("alaw", alaw_decode, alaw_encode),
    ("slin", pcm16_from_be, pcm16_to_be),
])
def test_row_codecs_match_the_per_frame_codecs(fmt, decode, encode) -> None:  # noqa: ANN001
    samples = _noise(4, 160)
    wire = encode_rows(fmt, samples)
    assert [row.tobytes() for row in wire] == [encode(s) for s in samples]
    np.testing.assert_array_equal(decode_rows(fmt, wire), np.stack([decode(r.tobytes())
                                                                    for r in wire]))


async def test_a_batch_of_packets_from_many_calls_decodes_like_per_call_codecs() -> None:
    server, _ = rtp_server()
    remotes = [("127.0.0.1", 15000 + i) for i in range(4)]
    calls = [server.attach(remote, "ulaw") for remote in remotes]
    payloads = [[ulaw_encode(_noise(160)) for _ in range(3)] for _ in remotes]
    for seq in range(3):  # call 0..3 interleaved, three packets each, one batch
        for remote, mine in zip(remotes, payloads, strict=True):
            server.datagram_received(
                build_rtp(payload_type=0, sequence=seq, timestamp=seq * 160, ssrc=1,
                          payload=mine[seq]), remote)
    assert all(call.stats.frames_in == 0 for call in calls)  # nothing before the batch
    await batch_decoded()
    for call, mine in zip(calls, payloads, strict=True):
        reference = Resampler(8000, 16000)
        frames = [call._inbound.get_nowait() for _ in range(3)]
        for frame, payload in zip(frames, mine, strict=True):
            np.testing.assert_array_equal(frame.pcm, reference.process(ulaw_decode(payload)))
        assert frames[0].arrival <= frames[1].arrival <= frames[2].arrival
        await call.aclose()
    await server.clock.aclose()


async def test_written_frames_encode_like_per_call_codecs_and_closed_calls_are_skipped() -> None:
    server, capture = rtp_server()
    a = server.attach(("127.0.0.1", 15000), "alaw")
    b = server.attach(("127.0.0.1", 15001), "ulaw")
    audio = _noise(640)
    a.write(audio)
    b.write(audio)
    await b.aclose()  # closed before its frames were encoded: nothing of it is sent
    server.tick(0.0)
    server.tick(0.02)
    sent = [(parse_rtp(data).payload, addr) for data, addr in capture.sent]
    reference = Resampler(16000, 8000)
    assert sent == [(alaw_encode(reference.process(audio[:320])), a.remote),
                    (alaw_encode(reference.process(audio[320:])), a.remote)]
    await a.aclose()
    await server.clock.aclose()


async def test_hang_up_delivers_the_frames_still_in_the_batch() -> None:
    server, _ = rtp_server()
    call = server.attach(("127.0.0.1", 15000), "ulaw")
    server.datagram_received(build_rtp(payload_type=0, sequence=1, timestamp=0, ssrc=1,
                                       payload=b"\x00" * 160), call.remote)
    await call.aclose()  # before the batch decode ran
    frames = [frame async for frame in call.frames()]
    assert len(frames) == 1 and np.abs(frames[0].pcm).max() > 1000
    await server.clock.aclose()
