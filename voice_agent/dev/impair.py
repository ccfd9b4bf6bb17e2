"""Real packet impairment for one UDP port: loss, delay, jitter with reordering, outages.

What a phone line does to RTP, applied in the kernel to the agent's own media
leg. ``tc netem`` is the usual tool, but this machine's kernel has no
``sch_netem``; it does have netfilter's ``NFQUEUE``. So iptables hands every
datagram to or from the port to this process (``fnfqueue``, a maintained
binding of the nfqueue netlink interface), which decides each one's fate with
a seeded random generator and gives the kernel its verdict later:

* **loss**: dropped with probability ``loss``;
* **delay** and **jitter**: released after ``delay_ms`` plus a uniform
  ``0..jitter_ms``; a packet that drew less jitter than the one before it
  overtakes it, which is how jitter reorders packets on real networks;
* **outage**: :meth:`Impairment.outage` drops everything for a while (a
  2 s dropout in the middle of a reply).

The packets are the real ones on loopback between Asterisk and the agent, so
source addresses and the agent's validation stay as in production: nothing is
proxied. Needs root (iptables, netlink). Written here rather than taken from a
library because no maintained Python package schedules nfqueue verdicts; the
part written by hand is the timing (a heap of due verdicts), nothing else.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import multiprocessing
import random
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

IPTABLES = "iptables-legacy"  # the kernel here has ip_tables, not nf_tables
PACKET_BYTES = 4096  # a copy of each packet big enough for any RTP datagram


@dataclass(frozen=True)
class Profile:
    """How a line misbehaves (the issue's profiles are in :data:`PROFILES`)."""

    name: str
    loss: float = 0.0
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    #: Length of the dropout :meth:`Impairment.outage` starts, seconds.
    outage_s: float = 0.0
    #: Junk datagrams a second sent at the port from another process (:class:`Flood`);
    #: the line itself is left alone.
    flood_per_s: int = 0

    def describe(self) -> str:
        parts = [f"{self.loss:.0%} loss" if self.loss else "",
                 f"{self.delay_ms:.0f} ms delay" if self.delay_ms else "",
                 f"{self.jitter_ms:.0f} ms jitter (reordering)" if self.jitter_ms else "",
                 f"{self.outage_s:.0f} s outage mid-reply" if self.outage_s else "",
                 f"{self.flood_per_s} junk datagrams/s" if self.flood_per_s else ""]
        return ", ".join(p for p in parts if p) or "clean"


PROFILES: dict[str, Profile] = {p.name: p for p in (
    Profile("clean"),
    Profile("loss-3pct", loss=0.03),
    Profile("jitter-40ms", jitter_ms=40.0),
    Profile("delay-200ms", delay_ms=200.0),
    Profile("outage-2s", outage_s=2.0),
    Profile("flood-10k", flood_per_s=10_000),
)}


@dataclass
class ImpairmentStats:
    packets: int = 0
    dropped: int = 0
    #: Packets released before one that arrived earlier.
    reordered: int = 0
    delays_ms: list[float] = field(default_factory=list)


class Impairment:
    """``with Impairment(port, profile, seed=1) as line:`` impairs UDP to and from ``port``."""

    def __init__(self, port: int, profile: Profile, *, seed: int = 1, queue: int = 7) -> None:
        self.port = port
        self.profile = profile
        self.queue = queue
        self.stats = ImpairmentStats()
        self._random = random.Random(seed)
        self._order = itertools.count()
        self._due: list[tuple[float, int, Any]] = []  # (release time, arrival order, packet)
        self._last_released = -1
        self._lock = threading.Condition()
        self._outage_until = 0.0
        self._closing = False
        self._connection: Any = None
        self._threads: list[threading.Thread] = []

    # ---------------------------------------------------------------- control

    def outage(self, seconds: float | None = None) -> None:
        """Drop every packet, both ways, for ``seconds`` (default: the profile's)."""
        with self._lock:
            self._outage_until = time.monotonic() + (seconds or self.profile.outage_s)

    def __enter__(self) -> Impairment:
        import fnfqueue

        self._connection = fnfqueue.Connection(packet_size=PACKET_BYTES)
        bound = self._connection.bind(self.queue)
        bound.set_mode(PACKET_BYTES, fnfqueue.COPY_PACKET)
        bound.set_maxlen(4096)
        self._threads = [threading.Thread(target=self._receive, name="impair-rx", daemon=True),
                         threading.Thread(target=self._release, name="impair-tx", daemon=True)]
        for thread in self._threads:
            thread.start()
        try:
            for rule in self._rules():
                _iptables("-I", *rule)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for rule in self._rules():
            with contextlib.suppress(subprocess.CalledProcessError):
                _iptables("-D", *rule)
        with self._lock:
            self._closing = True
            self._lock.notify_all()
        receiver, *releaser = self._threads or [None]
        for thread in releaser:  # first the held packets go out…
            thread.join(timeout=2)
        if self._connection is not None:  # …then the queue closes
            self._connection.close()
        if receiver is not None:
            receiver.join(timeout=2)

    def _rules(self) -> Iterator[tuple[str, ...]]:
        """Both directions on loopback, caught where they leave (OUTPUT), once each."""
        for way in ("--dport", "--sport"):
            yield ("OUTPUT", "-t", "mangle", "-o", "lo", "-p", "udp", way, str(self.port),
                   "-j", "NFQUEUE", "--queue-num", str(self.queue))

    # ---------------------------------------------------------------- threads

    def _receive(self) -> None:
        """Each packet: drop it now, or schedule its release."""
        with contextlib.suppress(Exception):  # StopIteration/OSError once closed
            for packet in self._connection:
                now = time.monotonic()
                with self._lock:
                    self.stats.packets += 1
                    order = next(self._order)
                    if now < self._outage_until or self._random.random() < self.profile.loss:
                        self.stats.dropped += 1
                        packet.drop()
                        continue
                    delay = (self.profile.delay_ms
                             + self._random.uniform(0.0, self.profile.jitter_ms)) / 1000
                    if delay <= 0:
                        self._last_released = max(self._last_released, order)
                        packet.accept()
                        continue
                    self.stats.delays_ms.append(delay * 1000)
                    heapq.heappush(self._due, (now + delay, order, packet))
                    self._lock.notify()

    def _release(self) -> None:
        """Give the kernel each packet's verdict when its time comes."""
        with self._lock:
            while not self._closing:
                if not self._due:
                    self._lock.wait()
                    continue
                due, order, packet = self._due[0]
                wait = due - time.monotonic()
                if wait > 0:
                    self._lock.wait(wait)
                    continue
                heapq.heappop(self._due)
                if order < self._last_released:
                    self.stats.reordered += 1
                self._last_released = max(self._last_released, order)
                with contextlib.suppress(Exception):  # the kernel may have let it go
                    packet.accept()
            for _, _, packet in self._due:  # closing: let the rest through
                with contextlib.suppress(Exception):
                    packet.accept()
            self._due.clear()


def _iptables(*args: str) -> None:
    subprocess.run([IPTABLES, *args], check=True, capture_output=True, timeout=10)


def flood(target: tuple[str, int], count: int, seconds: float,
          stop: threading.Event | None = None, seed: int = 17) -> int:
    """Send ``count`` junk datagrams (RTP-looking and random) at ``target`` over about
    ``seconds``, in bursts every 10 ms; returns how many were sent."""
    rng = random.Random(seed)
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        burst = max(1, count // int(seconds * 100))
        while sent < count and not (stop and stop.is_set()):
            for _ in range(min(burst, count - sent)):
                size = rng.choice((12, 172, rng.randrange(0, 1400)))
                junk = bytes([0x80, 0]) + rng.randbytes(max(0, size - 2)) if size else b""
                sock.sendto(junk, target)
                sent += 1
            time.sleep(0.01)
    return sent


class Flood:
    """``with Flood(address, per_second):`` junk at ``address`` from a separate process.

    A separate process, as an attacker is: a flooding thread inside the agent's
    own process would take its interpreter lock and measure itself.
    """

    def __init__(self, target: tuple[str, int], per_second: int, *, limit_s: float = 3600) -> None:
        self._process = multiprocessing.get_context("spawn").Process(
            target=flood, args=(target, int(per_second * limit_s), limit_s), daemon=True)

    def __enter__(self) -> Flood:
        self._process.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._process.terminate()
        self._process.join(timeout=5)
