"""The shared media clock: an overdue tick can be run early from other media work, never twice."""

from __future__ import annotations

import asyncio

from voice_agent.media.media_clock import MediaClock


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    def __init__(self, clock: MediaClock | None = None) -> None:
        self.ticks: list[float] = []
        self._clock = clock

    def tick(self, now: float) -> None:
        self.ticks.append(now)
        if self._clock is not None:
            self._clock.run_overdue()  # re-entrant call from inside a tick: ignored


async def test_overdue_tick_runs_early_once_and_the_timer_skips_it() -> None:
    time = FakeTime()
    clock = MediaClock(period=0.02, clock=time)
    ticker = Recorder()
    clock.register(ticker)
    await asyncio.sleep(0)  # the clock task runs tick 0 at once, then sleeps
    assert ticker.ticks == [0.0]

    clock.run_overdue()  # tick 1 is not due yet
    assert ticker.ticks == [0.0]
    time.now = 0.025
    clock.run_overdue()  # now it is: it runs here, on its grid time
    clock.run_overdue()
    assert ticker.ticks == [0.0, 0.02]

    await asyncio.sleep(0.05)  # the task's own wake-up finds tick 1 done, tick 2 not due
    assert ticker.ticks == [0.0, 0.02]
    assert clock.stats.ticks == 2
    await clock.aclose()


async def test_run_overdue_inside_a_tick_does_not_recurse() -> None:
    time = FakeTime()
    clock = MediaClock(period=0.02, clock=time)
    ticker = Recorder(clock)
    clock.register(ticker)
    await asyncio.sleep(0)
    time.now = 0.021
    clock.run_overdue()
    assert ticker.ticks == [0.0, 0.02]
    await clock.aclose()


async def test_run_overdue_without_a_running_clock_is_a_no_op() -> None:
    clock = MediaClock()
    clock.run_overdue()
    assert clock.stats.ticks == 0
