"""The shared RTP socket's demultiplexer and one call's inbound/outbound path (no Asterisk)."""

from __future__ import annotations

import numpy as np

from tests.fakes import batch_decoded, rtp_server
from tests.helpers import eventually
from voice_agent.audio.frames import FRAME_SAMPLES
from voice_agent.audio.g711 import ulaw_encode
from voice_agent.dev.sim.signals import dominant_frequency, tone
from voice_agent.media.rtp import build_rtp, parse_rtp

ASTERISK = ("127.0.0.1", 14000)


def _packet(seq: int, payload: bytes) -> bytes:
    return build_rtp(payload_type=0, sequence=seq, timestamp=seq * 160, ssrc=7, payload=payload)


async def test_datagrams_reach_their_call_and_strangers_are_counted() -> None:
    server, _ = rtp_server()
    call = server.attach(ASTERISK, "ulaw")
    signal = tone(1000, 0.2, rate=8000)
    for n in range(10):
        server.datagram_received(_packet(n, ulaw_encode(signal[n * 160:(n + 1) * 160])),
                                 ASTERISK)
    server.datagram_received(_packet(99, b"\xff" * 160), ("127.0.0.1", 14002))
    server.datagram_received(_packet(99, b"\xff" * 160), ("10.0.0.9", 14000))
    assert server.stats.unknown_source == 2
    await batch_decoded()
    frames = [call._inbound.get_nowait() for _ in range(10)]
    assert all(len(f.pcm) == FRAME_SAMPLES for f in frames)
    pcm = np.concatenate([f.pcm for f in frames])
    assert abs(dominant_frequency(pcm[400:], 16000) - 1000) < 20
    await call.aclose()
    await server.clock.aclose()


async def test_ipv4_mapped_source_matches() -> None:
    server, _ = rtp_server()
    call = server.attach(ASTERISK, "ulaw")
    server.datagram_received(_packet(1, b"\xff" * 160), ("::ffff:127.0.0.1", 14000, 0, 0))
    await batch_decoded()
    assert server.stats.unknown_source == 0 and call.stats.frames_in == 1
    await call.aclose()
    await server.clock.aclose()


async def test_malformed_rtp_is_counted_never_raised() -> None:
    server, _ = rtp_server()
    call = server.attach(ASTERISK, "ulaw")
    for junk in (b"", b"\x80", b"\x00" * 40, b"\x80\x00\x00", bytes(range(256))):
        server.datagram_received(junk, ASTERISK)
    server.datagram_received(_packet(5, b"\xff" * 160), ASTERISK)  # still works after
    await batch_decoded()
    assert server.stats.malformed >= 3
    assert call.stats.frames_in == 1
    await call.aclose()
    await server.clock.aclose()


async def test_outbound_frames_are_paced_as_rtp_to_asterisk() -> None:
    server, transport = rtp_server()
    call = server.attach(ASTERISK, "ulaw")
    call.write(tone(440, 0.1))  # 5 frames at 16 kHz
    assert call.queued_frames == 5
    for n in range(6):
        server.tick(100.0 + n * 0.02)
    packets = [parse_rtp(data) for data, addr in transport.sent if addr == ASTERISK]
    assert len(packets) == 5
    assert [p.sequence - packets[0].sequence for p in packets] == [0, 1, 2, 3, 4]
    assert all(len(p.payload) == 160 and p.payload_type == 0 for p in packets)
    await call.aclose()
    assert server.calls == 0
    await server.clock.aclose()


async def test_flush_drops_what_was_not_sent() -> None:
    server, transport = rtp_server()
    call = server.attach(ASTERISK, "ulaw")
    call.write(tone(440, 1.0))  # 50 frames
    server.tick(0.0)
    server.tick(0.02)
    assert call.flush() == 48
    server.tick(0.04)
    assert len(transport.sent) == 2
    await call.aclose()
    await server.clock.aclose()


async def test_clock_drives_registered_calls() -> None:
    server, transport = rtp_server()
    call = server.attach(ASTERISK, "ulaw")
    call.write(tone(440, 0.1))
    # The shared media clock sends them (a bounded wait, not a timing test).
    await eventually(lambda: len(transport.sent) == 5, what="5 packets sent", interval=0.02)
    assert len(transport.sent) == 5
    await call.aclose()
    await server.clock.aclose()
