"""One 20 ms clock for every call's outbound RTP in the process.

Per-call pacer tasks mean one timer wake-up per call every 20 ms: at 200 calls
that is 10 000 event-loop wake-ups a second, each paying asyncio's scheduling
overhead. A single clock task that, every tick, asks every registered pacer for
its due packets costs one wake-up per tick whatever the call count, and all
pacers share one deadline grid, so they all send on time or late together —
which is exactly what the benchmark's "late frames" figure measures.

The deadline of tick ``n`` is ``start + n * period`` (no drift); if the loop
stalls for several periods the clock skips ahead instead of bursting, and the
pacers apply their own resync rule.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger(__name__)

#: A timer may fire this much before its deadline (clock resolution); still that tick.
_EARLY_WAKE_TOLERANCE = 0.0005
#: A tick that ran this much past its deadline sent its frames late.
LATE_THRESHOLD = 0.005


class Ticker(Protocol):
    def tick(self, now: float) -> None:
        """Do this period's work (send due packets) for grid time ``now``; must not block."""


@dataclass
class ClockStats:
    ticks: int = 0
    skipped: int = 0
    #: Ticks more than :data:`LATE_THRESHOLD` past their deadline (a running count).
    late: int = 0
    #: How late each tick ran past its deadline, seconds (bounded ring for the benchmark).
    lateness: list[float] = field(default_factory=list)
    keep: int = 50_000

    def record(self, late: float) -> None:
        self.late += late > LATE_THRESHOLD
        if len(self.lateness) >= self.keep:
            del self.lateness[: self.keep // 2]
        self.lateness.append(late)


class MediaClock:
    """Calls ``tick(now)`` on every registered :class:`Ticker` each ``period``."""

    def __init__(self, period: float = 0.02, clock: Callable[[], float] = time.monotonic) -> None:
        self.period = period
        self._clock = clock
        self._tickers: set[Ticker] = set()
        self._task: asyncio.Task[None] | None = None
        self._start: float | None = None  # grid origin while the clock task runs
        self._n = 0  # the next tick to run
        self._ticking = False
        self.stats = ClockStats()

    def register(self, ticker: Ticker) -> None:
        self._tickers.add(ticker)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="media-clock")

    def unregister(self, ticker: Ticker) -> None:
        self._tickers.discard(ticker)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def run_overdue(self) -> None:
        """Run the current tick now if its deadline has passed (call from other media work).

        A timer wake-up waits for whatever callbacks the event loop already
        queued (a batch decode, a hundred consumer wake-ups): at 200 calls that
        pushed 1-2 % of ticks more than 5 ms late (bench media-agent). Media
        code that runs often calls this so an overdue tick goes first; the
        clock task then finds it done and sleeps to the next one.
        """
        if self._start is not None and not self._ticking:
            self._tick_if_due()

    async def _run(self) -> None:
        self._start = self._clock()
        self._n = 0
        try:
            while self._tickers:
                self._tick_if_due()
                await asyncio.sleep(max(0.0, self._start + self._n * self.period - self._clock()))
        finally:
            self._start = None

    def _tick_if_due(self) -> None:
        assert self._start is not None
        self._ticking = True
        try:
            self._tick(self._start)
        finally:
            self._ticking = False

    def _tick(self, start: float) -> None:
        now = self._clock()
        due = start + self._n * self.period
        if now < due - _EARLY_WAKE_TOLERANCE:
            return  # already run early by run_overdue, or an early timer wake-up
        late = now - due
        if late > 3 * self.period:  # stalled: skip ahead, never burst
            skip = int(late / self.period)
            self.stats.skipped += skip
            self._n += skip
            due = start + self._n * self.period
        self.stats.ticks += 1
        self.stats.record(max(0.0, now - due))
        # Tickers see the tick's *grid* time, not the wake-up time: pacers that
        # started on this grid then send exactly one slot per tick, however
        # late this wake-up ran, so scheduling lateness never becomes jitter.
        for ticker in list(self._tickers):
            try:
                ticker.tick(due)
            except Exception:
                log.exception("media ticker failed; unregistering it")
                self._tickers.discard(ticker)
        self._n += 1
