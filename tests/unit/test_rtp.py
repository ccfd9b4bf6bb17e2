"""RTP packets, jitter buffer, pacer and source filter: all on fake clocks, no sockets."""

from __future__ import annotations

import random
import struct

import pytest

from voice_agent.media.rtp import (
    JitterBuffer,
    JitterFrame,
    RtpExtension,
    RtpPacer,
    RtpPacket,
    RtpParseError,
    build_rtp,
    parse_rtp,
    seq_delta,
)

PERIOD = 0.02


# --- parse / build ----------------------------------------------------------------------


def test_round_trip_minimal() -> None:
    data = build_rtp(
        payload_type=0, sequence=1, timestamp=160, ssrc=0xDEADBEEF, payload=b"\xff" * 160
    )
    assert len(data) == 12 + 160
    assert parse_rtp(data) == RtpPacket(
        payload_type=0, sequence=1, timestamp=160, ssrc=0xDEADBEEF, payload=b"\xff" * 160
    )


def test_round_trip_with_csrcs_extension_and_padding() -> None:
    fields = dict(
        payload_type=118,
        sequence=65535,
        timestamp=0xFFFFFFFF,
        ssrc=7,
        payload=bytes(range(64)),
        marker=True,
        csrcs=(1, 2, 0xFFFFFFFF),
        extension=RtpExtension(0xBEDE, b"\x10\xaa\x00\x00"),
        padding=4,
    )
    data = build_rtp(**fields)
    assert len(data) == 12 + 3 * 4 + 4 + 4 + 64 + 4
    assert data[-1] == 4
    packet = parse_rtp(data)
    assert packet == RtpPacket(version=2, **fields)
    assert build_rtp(**fields) == data


def test_parse_accepts_bytearray_and_empty_extension() -> None:
    data = build_rtp(
        payload_type=10, sequence=5, timestamp=9, ssrc=3, payload=b"ab", extension=RtpExtension(1)
    )
    packet = parse_rtp(bytearray(data))
    assert packet.extension == RtpExtension(1, b"")
    assert packet.payload == b"ab"
    assert isinstance(packet.payload, bytes)


def _header(first: int, rest: bytes = b"") -> bytes:
    return struct.pack("!BBHII", first, 0, 1, 2, 3) + rest


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "too short: 0 bytes"),
        (b"\x80" * 11, "too short: 11 bytes"),
        (_header(0x40), "unsupported RTP version 1"),
        (_header(0x00), "unsupported RTP version 0"),
        (_header(0x82, b"\x00" * 4), "truncated CSRC list: CC=2 needs 20 bytes, packet has 16"),
        (_header(0x90, b"\x00\x01"), "truncated header extension: X bit set"),
        (_header(0x90, b"\x00\x01\x00\x02" + b"\x00" * 4), "length 2 words needs 24 bytes"),
        (_header(0xA0, b"abc\x00"), "padding count is 0"),
        (_header(0xA0, b"abc\x05"), "count 5 exceeds the 4 bytes"),
    ],
)
def test_malformed_packets_say_why(data: bytes, reason: str) -> None:
    with pytest.raises(RtpParseError, match=reason):
        parse_rtp(data)


def test_padding_may_fill_whole_body() -> None:
    assert parse_rtp(_header(0xA0, b"\x00\x00\x03")).payload == b""


def test_fuzz_only_ever_raises_rtp_parse_error() -> None:
    rng = random.Random(3550)
    valid = build_rtp(
        payload_type=0,
        sequence=1,
        timestamp=2,
        ssrc=3,
        payload=b"x" * 20,
        csrcs=(9,),
        extension=RtpExtension(1, b"abcd"),
        padding=3,
    )
    parsed = 0
    for _ in range(20_000):
        kind = rng.randrange(3)
        if kind == 0:
            data = rng.randbytes(rng.randrange(40))
        elif kind == 1:
            data = bytes([0x80 | rng.randrange(64)]) + rng.randbytes(rng.randrange(60))
        else:
            mutated = bytearray(valid[: rng.randrange(len(valid) + 1)])
            for _ in range(rng.randrange(3)):
                if mutated:
                    mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            data = bytes(mutated)
        try:
            packet = parse_rtp(data)
        except RtpParseError as error:
            assert str(error)
        else:
            parsed += 1
            assert packet.version == 2
    assert parsed > 0


@pytest.mark.parametrize(
    "bad",
    [
        dict(payload_type=128),
        dict(sequence=65536),
        dict(timestamp=-1),
        dict(ssrc=1 << 32),
        dict(padding=256),
        dict(csrcs=tuple(range(16))),
        dict(extension=RtpExtension(1, b"abc")),
    ],
)
def test_build_rejects_out_of_range_fields(bad: dict) -> None:
    fields = dict(payload_type=0, sequence=0, timestamp=0, ssrc=0, payload=b"") | bad
    with pytest.raises(ValueError):
        build_rtp(**fields)


def test_seq_delta_wraps() -> None:
    assert seq_delta(65535, 0) == 1
    assert seq_delta(0, 65535) == -1
    assert seq_delta(10, 13) == 3
    assert seq_delta(13, 10) == -3


# --- jitter buffer ----------------------------------------------------------------------


def _pkt(seq: int, payload: bytes | None = None, ssrc: int = 42, pt: int = 0) -> RtpPacket:
    seq %= 65536
    return RtpPacket(
        payload_type=pt,
        sequence=seq,
        timestamp=seq * 160,
        ssrc=ssrc,
        payload=payload if payload is not None else seq.to_bytes(2, "big") * 80,
    )


def _push_all(buffer: JitterBuffer, seqs: list[int], **kwargs: int) -> list[JitterFrame]:
    for i, seq in enumerate(seqs):
        buffer.push(_pkt(seq, **kwargs), arrival=float(i))
    return buffer.pop_ready()


def test_in_order_released_immediately() -> None:
    buffer = JitterBuffer()
    buffer.push(_pkt(100), 0.0)
    assert [f.sequence for f in buffer.pop_ready()] == [100]
    frames = _push_all(buffer, [101, 102, 103])
    assert [f.sequence for f in frames] == [101, 102, 103]
    assert not any(f.concealed for f in frames)
    assert frames[0].payload == _pkt(101).payload
    assert buffer.held == 0
    assert buffer.stats.received == 4
    assert buffer.stats.lost == buffer.stats.reordered == 0


def test_reordered_within_depth() -> None:
    buffer = JitterBuffer(depth=3)
    frames = _push_all(buffer, [1, 3, 4, 2, 5])
    assert [f.sequence for f in frames] == [1, 2, 3, 4, 5]
    assert not any(f.concealed for f in frames)
    assert buffer.stats.reordered == 1
    assert buffer.stats.lost == 0


def test_arrival_is_carried_through() -> None:
    buffer = JitterBuffer()
    buffer.push(_pkt(1), 10.0)
    buffer.push(_pkt(3), 10.5)
    buffer.push(_pkt(2), 10.7)
    assert [(f.sequence, f.arrival) for f in buffer.pop_ready()] == [
        (1, 10.0),
        (2, 10.7),
        (3, 10.5),
    ]


def test_duplicates_dropped_released_or_held() -> None:
    buffer = JitterBuffer()
    frames = _push_all(buffer, [1, 2, 2, 4, 4, 1, 3])
    assert [f.sequence for f in frames] == [1, 2, 3, 4]
    assert buffer.stats.duplicates == 3


def test_loss_concealed_when_packet_beyond_depth_arrives() -> None:
    buffer = JitterBuffer(depth=3)
    frames = _push_all(buffer, [1, 3, 4, 5])
    assert [f.sequence for f in frames] == [1]  # still waiting for 2
    assert buffer.held == 3
    buffer.push(_pkt(6), 9.0)
    frames = buffer.pop_ready()
    assert [(f.sequence, f.concealed) for f in frames] == [
        (2, True),
        (3, False),
        (4, False),
        (5, False),
        (6, False),
    ]
    assert frames[0].payload == b"\xff" * 160  # u-law silence, length of the next packet
    assert frames[0].arrival == 1.0  # arrival of packet 3, which revealed the gap
    assert buffer.stats.lost == 1


def test_concealment_matches_payload_type_and_ptime() -> None:
    buffer = JitterBuffer(depth=0)
    buffer.push(_pkt(1, b"\x12" * 480, pt=10), 0.0)
    buffer.push(_pkt(3, b"\x34" * 480, pt=10), 0.0)
    frames = buffer.pop_ready()
    assert frames[1] == JitterFrame(b"\x00" * 480, 0.0, 2, True)  # slin silence, 30 ms


def test_late_packet_after_concealment_dropped() -> None:
    buffer = JitterBuffer(depth=1)
    _push_all(buffer, [1, 3, 4])  # 2 concealed
    buffer.push(_pkt(2), 5.0)
    assert buffer.pop_ready() == []
    assert buffer.stats.late == 1
    assert buffer.stats.duplicates == 0
    assert buffer.stats.lost == 1


def test_multiple_gaps_and_held_count_bounded_by_depth() -> None:
    buffer = JitterBuffer(depth=2)
    frames = _push_all(buffer, [1, 3, 5, 7, 9])
    assert buffer.held <= 2
    frames += buffer.drain()
    assert [f.sequence for f in frames] == list(range(1, 10))
    assert [f.sequence for f in frames if f.concealed] == [2, 4, 6, 8]
    assert buffer.stats.lost == 4


def test_silence_in_arrival_is_not_loss() -> None:
    buffer = JitterBuffer()
    buffer.push(_pkt(1), 0.0)
    buffer.push(_pkt(2), 0.02)
    # Caller stops talking for 5 s; Asterisk sends nothing; timestamps jump.
    buffer.push(
        RtpPacket(payload_type=0, sequence=3, timestamp=999_999, ssrc=42, payload=b"a" * 160), 5.0
    )
    frames = buffer.pop_ready(now=5.0)
    assert [(f.sequence, f.concealed) for f in frames] == [(1, False), (2, False), (3, False)]
    assert buffer.stats.lost == 0


def test_max_wait_gives_up_on_missing_packet_when_stream_pauses() -> None:
    buffer = JitterBuffer(depth=3, max_wait=0.06)
    buffer.push(_pkt(1), 1.0)
    buffer.push(_pkt(3), 1.04)
    assert [f.sequence for f in buffer.pop_ready(now=1.05)] == [1]
    assert buffer.wait_deadline == pytest.approx(1.10)
    assert buffer.pop_ready(now=1.09) == []
    frames = buffer.pop_ready(now=1.10)
    assert [(f.sequence, f.concealed) for f in frames] == [(2, True), (3, False)]
    assert buffer.wait_deadline is None


def test_sequence_wraparound() -> None:
    buffer = JitterBuffer(depth=3)
    frames = _push_all(buffer, [65533, 65534, 0, 65535, 1, 3, 4, 5, 6])
    assert [(f.sequence, f.concealed) for f in frames] == [
        (65533, False),
        (65534, False),
        (65535, False),
        (0, False),
        (1, False),
        (2, True),
        (3, False),
        (4, False),
        (5, False),
        (6, False),
    ]
    assert buffer.stats.reordered == 1
    assert buffer.stats.lost == 1


def test_ssrc_change_restarts_stream() -> None:
    buffer = JitterBuffer(depth=3)
    frames = _push_all(buffer, [10, 12, 13])  # 11 missing, 12 and 13 held
    buffer.push(_pkt(5000, ssrc=7), 9.0)
    buffer.push(_pkt(5001, ssrc=7), 9.1)
    frames += buffer.pop_ready()
    assert [(f.sequence, f.concealed) for f in frames] == [
        (10, False),
        (11, True),
        (12, False),
        (13, False),
        (5000, False),
        (5001, False),
    ]
    assert buffer.stats.restarts == 1
    # An old-stream straggler is now a different SSRC: another restart, not corruption.
    buffer.push(_pkt(11), 9.2)
    assert [f.sequence for f in buffer.pop_ready()] == [11]
    assert buffer.stats.restarts == 2


def test_large_sequence_jump_restarts_instead_of_concealing() -> None:
    buffer = JitterBuffer(depth=3, max_gap=50)
    frames = _push_all(buffer, [1, 2, 30_000, 30_001])
    assert [f.sequence for f in frames] == [1, 2, 30_000, 30_001]
    assert buffer.stats.lost == 0
    assert buffer.stats.restarts == 1


def test_gap_up_to_max_gap_is_concealed() -> None:
    buffer = JitterBuffer(depth=3, max_gap=50)
    frames = _push_all(buffer, [1, 51])
    assert len(frames) == 51
    assert buffer.stats.lost == 49


# --- pacer ------------------------------------------------------------------------------


class FakeClock:
    """Monotonic clock whose sleep lands on the requested time plus an optional overshoot."""

    def __init__(self, start: float = 1000.0, overshoot: float = 0.0, seed: int = 0) -> None:
        self.now = start
        self._overshoot = overshoot
        self._rng = random.Random(seed)
        self.stalls: dict[int, float] = {}  # sleep call index -> extra delay
        self.sleeps = 0
        self.stop_after: int | None = None
        self.sent: list[tuple[float, RtpPacket]] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        assert delay >= 0
        if self.stop_after is not None and len(self.sent) >= self.stop_after:
            raise _Stop
        self.now += delay + self._rng.uniform(0, self._overshoot)
        self.now += self.stalls.get(self.sleeps, 0.0)
        self.sleeps += 1

    def send(self, data: bytes) -> None:
        self.sent.append((self.now, parse_rtp(data)))


class _Stop(Exception):
    pass


def _pacer(clock: FakeClock, **kwargs: int) -> RtpPacer:
    options = dict(initial_sequence=1000, initial_timestamp=5000) | kwargs
    return RtpPacer(0, 0x1234, 160, PERIOD, clock, clock.sleep, **options)


async def _run(clock: FakeClock, pacer: RtpPacer, packets: int) -> None:
    clock.stop_after = packets
    with pytest.raises(_Stop):
        await pacer.run(clock.send)


async def test_no_drift_over_10000_frames() -> None:
    clock = FakeClock()
    pacer = _pacer(clock)
    for _ in range(10_000):
        pacer.enqueue(b"\xff" * 160)
    await _run(clock, pacer, 10_000)
    assert len(clock.sent) == 10_000
    for n, (sent_at, packet) in enumerate(clock.sent):
        assert sent_at == 1000.0 + n * PERIOD
        assert packet.sequence == (1000 + n) % 65536
        assert packet.timestamp == 5000 + n * 160
    assert pacer.stats.resyncs == 0


async def test_scheduling_jitter_does_not_accumulate() -> None:
    # Every wake-up is up to 5 ms late (as on a busy host); sleeping one period
    # per frame would drift by ~25 s over 10 000 frames.
    clock = FakeClock(overshoot=0.005, seed=1)
    pacer = _pacer(clock)
    for _ in range(10_000):
        pacer.enqueue(b"\xff" * 160)
    await _run(clock, pacer, 10_000)
    lateness = [sent_at - (1000.0 + n * PERIOD) for n, (sent_at, _) in enumerate(clock.sent)]
    assert min(lateness) >= -1e-9
    assert max(lateness) <= 0.005 + 1e-9
    assert [p.timestamp for _, p in clock.sent] == [5000 + n * 160 for n in range(10_000)]


def test_poll_serves_deadlines_and_marks_talkspurts() -> None:
    pacer = _pacer(FakeClock())
    assert pacer.next_deadline is None
    assert pacer.poll(0.0) == []  # idle slot 0 starts the grid
    assert pacer.next_deadline == PERIOD
    pacer.enqueue(b"a")
    pacer.enqueue(b"b")
    assert pacer.poll(PERIOD - 1e-6) == []  # not due yet
    first = [parse_rtp(p) for p in pacer.poll(PERIOD)]
    second = [parse_rtp(p) for p in pacer.poll(2 * PERIOD)]
    assert [(p.sequence, p.timestamp, p.marker, p.payload) for p in first + second] == [
        (1000, 5160, True, b"a"),
        (1001, 5320, False, b"b"),
    ]
    assert pacer.next_deadline == 3 * PERIOD


def test_idle_period_keeps_timestamp_on_wall_clock() -> None:
    pacer = _pacer(FakeClock())
    pacer.enqueue(b"a")
    assert len(pacer.poll(0.0)) == 1
    for n in range(1, 51):  # one second of silence: nothing sent
        assert pacer.poll(n * PERIOD) == []
    pacer.enqueue(b"b")
    (packet,) = [parse_rtp(p) for p in pacer.poll(51 * PERIOD)]
    assert packet.sequence == 1001  # no sequence gap: the receiver sees no loss
    assert packet.timestamp == 5000 + 51 * 160  # timestamp followed wall time
    assert packet.marker
    assert pacer.stats.idle_slots == 50


def test_late_frame_inside_a_talkspurt_keeps_timestamps_contiguous() -> None:
    """A frame that misses its slot by a moment is jitter: no timestamp gap, no marker."""
    pacer = _pacer(FakeClock())
    pacer.enqueue(b"a")
    assert len(pacer.poll(0.0)) == 1
    assert pacer.poll(PERIOD) == []  # the next frame arrived just after this slot
    pacer.enqueue(b"b")
    (packet,) = [parse_rtp(p) for p in pacer.poll(2 * PERIOD)]
    assert (packet.sequence, packet.timestamp, packet.marker) == (1001, 5160, False)


def test_gap_longer_than_hangover_starts_a_new_talkspurt() -> None:
    pacer = _pacer(FakeClock(), talkspurt_hangover=2)
    pacer.enqueue(b"a")
    pacer.poll(0.0)
    assert pacer.poll(PERIOD) == [] and pacer.poll(2 * PERIOD) == []  # within hangover
    assert pacer.poll(3 * PERIOD) == []  # third empty slot: the talkspurt is over
    pacer.enqueue(b"b")
    (packet,) = [parse_rtp(p) for p in pacer.poll(4 * PERIOD)]
    assert (packet.timestamp, packet.marker) == (5000 + 4 * 160, True)


def test_flush_drops_queue_and_keeps_continuity() -> None:
    pacer = _pacer(FakeClock())
    for i in range(5):
        pacer.enqueue(bytes([i]))
    sent = pacer.poll(0.0) + pacer.poll(PERIOD)
    assert pacer.flush() == 3
    assert pacer.queued == 0
    assert pacer.flush() == 0
    pacer.enqueue(b"new")
    sent += pacer.poll(2 * PERIOD)
    packets = [parse_rtp(p) for p in sent]
    assert [p.sequence for p in packets] == [1000, 1001, 1002]
    assert [p.timestamp for p in packets] == [5000, 5160, 5320]
    assert packets[2].payload == b"new"
    assert pacer.stats.flushed == 3


def test_sequence_and_timestamp_wrap() -> None:
    pacer = _pacer(FakeClock(), initial_sequence=65535, initial_timestamp=2**32 - 160)
    for _ in range(3):
        pacer.enqueue(b"x")
    packets = [parse_rtp(p) for n in range(3) for p in pacer.poll(n * PERIOD)]
    assert [p.sequence for p in packets] == [65535, 0, 1]
    assert [p.timestamp for p in packets] == [2**32 - 160, 0, 160]


def test_small_delay_is_caught_up() -> None:
    pacer = _pacer(FakeClock(), max_late_frames=3)
    for _ in range(10):
        pacer.enqueue(b"x")
    pacer.poll(0.0)
    burst = [parse_rtp(p) for p in pacer.poll(4 * PERIOD)]  # slots 1..4: 3 overdue + current
    assert [p.timestamp for p in burst] == [5000 + n * 160 for n in (1, 2, 3, 4)]
    assert pacer.stats.resyncs == 0


def test_stall_resyncs_without_burst() -> None:
    pacer = _pacer(FakeClock(), max_late_frames=3)
    for _ in range(10):
        pacer.enqueue(b"x")
    pacer.poll(0.0)
    after_stall = [parse_rtp(p) for p in pacer.poll(25 * PERIOD + 0.001)]
    assert len(after_stall) == 1
    assert after_stall[0].sequence == 1001  # continuous
    assert after_stall[0].timestamp == 5000 + 25 * 160  # jumped to wall time
    assert after_stall[0].marker
    assert pacer.stats.resyncs == 1
    assert pacer.stats.skipped_slots == 24
    assert pacer.queued == 8  # nothing dropped, just later
    assert pacer.next_deadline == 26 * PERIOD


async def test_run_stall_resyncs_onto_original_grid() -> None:
    clock = FakeClock()
    clock.stalls[10] = 0.5  # event loop blocked for 25 frames after the 11th sleep
    pacer = _pacer(clock)
    for _ in range(40):
        pacer.enqueue(b"x")
    await _run(clock, pacer, 30)
    times = [t for t, _ in clock.sent]
    per_instant = max(times.count(t) for t in set(times))
    assert per_instant == 1  # never a burst
    grid = [round((t - 1000.0) / PERIOD, 6) for t in times]
    assert all(g == int(g) for g in grid)  # every send still on start + n * period
    assert [p.sequence for _, p in clock.sent] == list(range(1000, 1030))
    assert pacer.stats.resyncs == 1


# --- source filter ----------------------------------------------------------------------


def test_a_paused_pacer_keeps_its_queue_and_resumes_with_a_new_talkspurt() -> None:
    pacer = _pacer(FakeClock())
    for i in range(4):
        pacer.enqueue(bytes([i]))
    sent = pacer.poll(0.0)
    pacer.paused = True
    assert pacer.poll(10 * PERIOD) == []  # due slots pass empty...
    assert pacer.queued == 3  # ...and nothing is lost
    pacer.paused = False
    sent += pacer.poll(11 * PERIOD)
    packets = [parse_rtp(p) for p in sent]
    assert [p.payload for p in packets] == [b"\x00", b"\x01"]
    assert [p.sequence for p in packets] == [1000, 1001]  # no gap in sequence numbers
    # The pause ended the talkspurt: the timestamp follows the wall clock, marker set.
    assert packets[1].timestamp == 5000 + 11 * 160 and packets[1].marker
