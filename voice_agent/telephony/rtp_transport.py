"""RTP media for externalMedia channels: one shared UDP socket, demultiplexed.

Why one socket for all calls rather than one port per call: Asterisk tells us,
in the externalMedia response, the address and port each UnicastRTP channel
sends from (``UNICASTRTP_LOCAL_ADDRESS/PORT``), so the source address already
identifies the call. One socket means one file descriptor and one
``datagram_received`` path whatever the call count, no port-range exhaustion,
and source validation for free: a datagram from any address that is not a live
call's Asterisk endpoint is dropped and counted. We send from the same socket
Asterisk receives on (symmetric RTP), as NOTES.md requires.

Per call (:class:`RtpCallAudio`): inbound packets are parsed (malformed ones are
counted, never raised), put in order by the jitter buffer, decoded at the edge
(µ-law or big-endian slin at 8 kHz → 16 kHz PCM16) and delivered as 20 ms
frames; outbound frames are encoded and sent by the call's pacer on the shared
:class:`~voice_agent.telephony.media_clock.MediaClock`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import time
from dataclasses import dataclass
from typing import Any, Literal, cast

from voice_agent.telephony.audio_bridge import EdgeCodec, Pcm16
from voice_agent.telephony.call_audio import CallAudio
from voice_agent.telephony.media_clock import MediaClock
from voice_agent.telephony.rtp import (
    JitterBuffer,
    RtpPacer,
    RtpParseError,
    normalise_host,
    parse_rtp,
)

log = logging.getLogger(__name__)

RtpFormat = Literal["ulaw", "alaw", "slin"]
#: Static RTP payload types Asterisk uses for each externalMedia format.
PAYLOAD_TYPES: dict[str, int] = {"ulaw": 0, "alaw": 8, "slin": 10}
SAMPLES_PER_FRAME_8K = 160
RECEIVE_BUFFER_BYTES = 4 * 2**20
LOCAL_SAFE_SEQUENCE = 1 << 14


@dataclass
class RtpServerStats:
    datagrams: int = 0
    unknown_source: int = 0
    malformed: int = 0
    wrong_payload_type: int = 0


class RtpCallAudio(CallAudio):
    """One call's audio over RTP (8 kHz ulaw/alaw/slin on the wire)."""

    def __init__(self, server: RtpMediaServer, remote: tuple[str, int], fmt: RtpFormat) -> None:
        super().__init__()
        self.remote = remote
        self.format = fmt
        self._server = server
        self._payload_type = PAYLOAD_TYPES[fmt]
        self._codec = EdgeCodec(fmt, "big")
        self.jitter = JitterBuffer()
        # Initial sequence below 2**14, not anywhere in 16 bits (RFC 3550's
        # "random" is for known-plaintext resistance under SRTP, moot here):
        # Asterisk 22 drops RTP-sourced frames crossing a Local channel when the
        # stream starts at >= 32768 or wraps (README, measured), so this keeps
        # Local-channel callers hearing the agent for 49k+ frames (16+ min of speech).
        self.pacer = RtpPacer(self._payload_type, secrets.randbits(32), SAMPLES_PER_FRAME_8K,
                              initial_sequence=secrets.randbelow(LOCAL_SAFE_SEQUENCE))
        self.malformed = 0

    # inbound (called by the server's datagram handler)
    def on_datagram(self, data: bytes, arrival: float) -> None:
        try:
            packet = parse_rtp(data)
        except RtpParseError as exc:
            self.malformed += 1
            self._server.stats.malformed += 1
            if self.malformed <= 3:
                log.warning("malformed RTP from %s:%d dropped: %s", *self.remote, exc)
            return
        if packet.payload_type != self._payload_type:
            self._server.stats.wrong_payload_type += 1
            return
        self.jitter.push(packet, arrival)
        self._release(self.jitter.pop_ready())

    def _release(self, frames: list[Any]) -> None:
        for frame in frames:
            self._deliver(self._codec.decode(frame.payload), frame.arrival)

    # outbound
    def _send_frame(self, frame: Pcm16) -> None:
        self.pacer.enqueue(self._codec.encode(frame))

    def _drop_queued(self) -> int:
        return self.pacer.flush()

    @property
    def queued_frames(self) -> int:
        return self.pacer.queued

    def tick(self, now: float) -> None:
        """Media-clock tick: send due packets, release frames a lost packet held back."""
        for packet in self.pacer.poll(now):
            self._server.sendto(packet, self.remote)
        deadline = self.jitter.wait_deadline
        if deadline is not None and (wall := time.monotonic()) >= deadline:
            self._release(self.jitter.pop_ready(wall))

    async def aclose(self) -> None:
        if not self.closed:
            self._server.detach(self)
            self._release(self.jitter.drain())
        await super().aclose()


class RtpMediaServer(asyncio.DatagramProtocol):
    """The process's RTP socket: routes datagrams to calls by their source address."""

    def __init__(
        self, clock: MediaClock, call_factory: type[RtpCallAudio] = RtpCallAudio
    ) -> None:
        self.clock = clock
        self._call_factory = call_factory
        self._calls: dict[tuple[str, int], RtpCallAudio] = {}
        self._transport: asyncio.DatagramTransport | None = None
        self.stats = RtpServerStats()
        self.local_address: tuple[str, int] = ("", 0)

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=(host, port))
        sock = transport.get_extra_info("socket")
        # One socket carries every call: with the default ~200 KB buffer, a 50 ms
        # pause of the event loop at 50 calls overflows it (measured: kernel
        # RcvbufErrors, 90 % loss). Ask for 4 MiB (the kernel caps it at rmem_max).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
        log.info("RTP media socket on %s:%d (receive buffer %d KiB)", *self.local_address,
                 sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 1024)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)
        self.local_address = transport.get_extra_info("sockname")[:2]

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.stats.datagrams += 1
        call = self._calls.get((addr[0], addr[1]))  # the common case: exact match
        if call is None:  # e.g. an IPv4-mapped IPv6 source on a dual-stack socket
            call = self._calls.get((normalise_host(str(addr[0])), addr[1]))
        if call is None:
            self.stats.unknown_source += 1
            return
        call.on_datagram(data, time.monotonic())

    def error_received(self, exc: Exception) -> None:
        log.warning("RTP socket error: %s", exc)

    def attach(self, remote: tuple[str, int], fmt: RtpFormat) -> RtpCallAudio:
        """A call's audio for the UnicastRTP channel that sends from ``remote``."""
        remote = (normalise_host(remote[0]), remote[1])
        call = self._call_factory(self, remote, fmt)
        self._calls[remote] = call
        self.clock.register(call)
        return call

    def detach(self, call: RtpCallAudio) -> None:
        self.clock.unregister(call)
        if self._calls.get(call.remote) is call:
            del self._calls[call.remote]

    def sendto(self, packet: bytes, remote: tuple[str, int]) -> None:
        if self._transport is not None:
            self._transport.sendto(packet, remote)

    @property
    def calls(self) -> int:
        return len(self._calls)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
