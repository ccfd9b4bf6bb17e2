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
counted, never raised) and put in order by the jitter buffer; outbound frames
are sent by the call's pacer. The server is the one ticker on the shared
:class:`~voice_agent.media.media_clock.MediaClock`.

Edge codec work is batched across calls (:mod:`~voice_agent.audio.batch_codec`):
frames released within a few milliseconds (:data:`DECODE_WINDOW`) are decoded
and resampled to 16 kHz together, and the frames every call wrote since the
last tick are resampled to 8 kHz and encoded together at the tick that sends
them. The window is there because callers' packets are not in phase: Asterisk
relays each as it comes, so one loop turn often holds a single packet, and a
batch costs ≈ 60 µs however small (measured); 5 ms gathers a quarter of all
calls' packets for at most 5 ms of added delay (the frames keep their arrival
times). Per call that is the same samples as a per-call codec, at a
fraction of the cost once there are tens of calls (README, ``bench media-agent``).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import time
from dataclasses import dataclass
from typing import Any, Literal, cast

import numpy as np

from voice_agent.audio.batch_codec import BatchResampler, decode_rows, encode_rows
from voice_agent.audio.frames import Pcm16
from voice_agent.media.call_audio import CallAudio
from voice_agent.media.media_clock import MediaClock
from voice_agent.media.rtp import (
    JitterBuffer,
    JitterFrame,
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
#: Longest a received frame waits for others to join its batch decode, seconds.
DECODE_WINDOW = 0.005


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
        self.bytes_per_sample = 2 if fmt == "slin" else 1
        # Rows of the server's batch resamplers holding this call's filter history.
        self.slot_in = server.upsampler.open()
        self.slot_out = server.downsampler.open()
        self.outbox: list[Pcm16] = []  # written 16 kHz frames waiting for the batch encoder
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

    def _release(self, frames: list[JitterFrame]) -> None:
        if frames:
            self._server.decode_later(self, frames)

    # outbound
    def _send_frame(self, frame: Pcm16) -> None:
        self.outbox.append(frame)  # encoded with every call's at the next tick

    def _drop_queued(self) -> int:
        dropped = self.pacer.flush() + len(self.outbox)
        self.outbox.clear()
        return dropped

    def _hold_output(self, hold: bool) -> None:
        self.pacer.paused = hold

    @property
    def queued_frames(self) -> int:
        return self.pacer.queued + len(self.outbox)

    def tick(self, now: float) -> None:
        """Media-clock tick: send due packets, release frames a lost packet held back."""
        for packet in self.pacer.poll(now):
            self._server.sendto(packet, self.remote)
        deadline = self.jitter.wait_deadline
        if deadline is not None and (wall := time.monotonic()) >= deadline:
            self._release(self.jitter.pop_ready(wall))

    async def aclose(self) -> None:
        if not self.closed:
            self._release(self.jitter.drain())
            self._server.decode_pending()  # the last words reach the consumer before the end
            self._server.detach(self)
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
        self.upsampler = BatchResampler(8000, 16000)
        self.downsampler = BatchResampler(16000, 8000)
        self._to_decode: list[tuple[RtpCallAudio, list[JitterFrame]]] = []

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
        self.clock.run_overdue()  # sending on time comes before receiving
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
        self.clock.register(self)
        return call

    def detach(self, call: RtpCallAudio) -> None:
        if self._calls.get(call.remote) is call:
            del self._calls[call.remote]
            self.upsampler.close(call.slot_in)
            self.downsampler.close(call.slot_out)
        if not self._calls:
            self.clock.unregister(self)

    # ---------------------------------------------------------- media clock
    def tick(self, now: float) -> None:
        """Encode what was written since the last batch, then every call sends its due packets.

        One call's failure is logged and that call detached; the others go on.
        """
        self.encode_pending()
        for call in list(self._calls.values()):
            try:
                call.tick(now)
            except Exception:
                log.exception("RTP media of %s:%d failed; detaching it", *call.remote)
                self.detach(call)

    # ---------------------------------------------------- batched edge codec
    def decode_later(self, call: RtpCallAudio, frames: list[JitterFrame]) -> None:
        """Queue released frames for the next batch decode, at most :data:`DECODE_WINDOW` away."""
        if not self._to_decode:
            asyncio.get_running_loop().call_later(DECODE_WINDOW, self.decode_pending)
        self._to_decode.append((call, frames))

    def decode_pending(self) -> None:
        """Decode and upsample every queued frame, calls side by side; deliver per call."""
        if not self._to_decode:
            return
        self.clock.run_overdue()
        batch, self._to_decode = self._to_decode, []
        per_call: dict[RtpCallAudio, list[JitterFrame]] = {}
        for call, frames in batch:
            per_call.setdefault(call, []).extend(frames)
        groups: dict[tuple[str, int], list[tuple[RtpCallAudio, list[JitterFrame]]]] = {}
        for call, frames in per_call.items():
            if not call.closed:
                size = sum(len(f.payload) for f in frames)
                groups.setdefault((call.format, size), []).append((call, frames))
        for (fmt, size), members in groups.items():
            wire = np.frombuffer(b"".join(f.payload for _, frames in members for f in frames),
                                 np.uint8).reshape(len(members), size)
            pcm = self.upsampler.process([call.slot_in for call, _ in members],
                                         decode_rows(fmt, wire))
            for row, (call, frames) in zip(pcm, members, strict=True):
                start = 0
                for frame in frames:  # back to per-packet pieces, each with its arrival
                    end = start + 2 * len(frame.payload) // call.bytes_per_sample
                    call._deliver(row[start:end], frame.arrival)
                    start = end

    def encode_pending(self) -> None:
        """Downsample and encode every call's written frames in one pass; queue them to pace.

        Run at each tick, not sooner: nothing leaves before a tick anyway, and
        one batch per tick holds every call's frames whatever the phases their
        callers' packets (and so the agent's writes) arrive in.
        """
        groups: dict[tuple[str, int], list[tuple[RtpCallAudio, Pcm16]]] = {}
        for call in self._calls.values():
            if call.outbox:
                pcm = call.outbox[0] if len(call.outbox) == 1 else np.concatenate(call.outbox)
                call.outbox = []
                groups.setdefault((call.format, len(pcm)), []).append((call, pcm))
        for (fmt, _), members in groups.items():
            pcm8 = self.downsampler.process([call.slot_out for call, _ in members],
                                            np.stack([pcm for _, pcm in members]))
            wire = encode_rows(fmt, pcm8)
            for row, (call, _) in zip(wire, members, strict=True):
                payload = row.tobytes()
                step = SAMPLES_PER_FRAME_8K * call.bytes_per_sample
                for start in range(0, len(payload), step):
                    call.pacer.enqueue(payload[start:start + step])

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
