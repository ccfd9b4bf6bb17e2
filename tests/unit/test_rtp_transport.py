"""The shared RTP socket's demultiplexer and one call's inbound/outbound path (no Asterisk)."""

from __future__ import annotations

import asyncio

import numpy as np

from voice_agent.audio.frames import FRAME_SAMPLES
from voice_agent.audio.g711 import ulaw_encode
from voice_agent.dev.sim.signals import dominant_frequency, tone
from voice_agent.media.media_clock import MediaClock
from voice_agent.media.rtp import build_rtp, parse_rtp
from voice_agent.media.rtp_transport import DECODE_WINDOW, RtpMediaServer

ASTERISK = ("127.0.0.1", 14000)


class CapturingTransport:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))

    def get_extra_info(self, name: str) -> object:
        return ("127.0.0.1", 40000) if name == "sockname" else None

    def close(self) -> None:
        pass


def _server() -> tuple[RtpMediaServer, CapturingTransport]:
    server = RtpMediaServer(MediaClock())
    transport = CapturingTransport()
    server.connection_made(transport)  # type: ignore[arg-type]
    return server, transport


async def batch_decoded() -> None:
    """Until the batch decode scheduled by the datagrams so far has run.

    It is a timer DECODE_WINDOW after the first datagram; a sleep of the same
    length started later ends after it (asyncio runs timers in deadline order).
    """
    await asyncio.sleep(DECODE_WINDOW)


def _packet(seq: int, payload: bytes) -> bytes:
    return build_rtp(payload_type=0, sequence=seq, timestamp=seq * 160, ssrc=7, payload=payload)


async def test_datagrams_reach_their_call_and_strangers_are_counted() -> None:
    server, _ = _server()
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
    server, _ = _server()
    call = server.attach(ASTERISK, "ulaw")
    server.datagram_received(_packet(1, b"\xff" * 160), ("::ffff:127.0.0.1", 14000, 0, 0))
    await batch_decoded()
    assert server.stats.unknown_source == 0 and call.stats.frames_in == 1
    await call.aclose()
    await server.clock.aclose()


async def test_malformed_rtp_is_counted_never_raised() -> None:
    server, _ = _server()
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
    server, transport = _server()
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
    server, transport = _server()
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
    server, transport = _server()
    call = server.attach(ASTERISK, "ulaw")
    call.write(tone(440, 0.1))
    for _ in range(250):  # the shared media clock sends them (bounded wait, not a timing test)
        if len(transport.sent) == 5:
            break
        await asyncio.sleep(0.02)
    assert len(transport.sent) == 5
    await call.aclose()
    await server.clock.aclose()
