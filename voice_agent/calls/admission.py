"""Admission and drain: who may start a call now, and how the service stops.

One copy for both entry points (the ARI session manager and the FastAGI
server), so a limit, a shutdown or a rejection behaves the same whichever way
the call arrived:

* a call is refused while the service drains (``service shutting down``) or
  when ``max_calls`` calls are live (``admission limit reached``); the caller
  hears the busy prompt, live calls are not affected;
* every call's work is a task registered here, so :meth:`Admission.drain` can
  give live calls ``drain_seconds`` to finish, then cancel the rest and wait
  until each has released what it owned;
* finished calls and rejections are kept, bounded (this is not a CDR store).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from voice_agent.calls import metrics
from voice_agent.calls.record import CallRecord, RejectedCall

log = logging.getLogger(__name__)

#: How many finished calls and rejections stay in memory for status and tests.
HISTORY = 1000


class Admission:
    """Admission limit, drain and the task set of one entry point's calls."""

    def __init__(self, max_calls: int, busy_prompt: str, *, what: str = "call",
                 entry: str = "ari") -> None:
        self.max_calls = max_calls
        #: The entry point's name in metrics ("ari", "agi").
        self.entry = entry
        self.busy_prompt = busy_prompt
        self._what = what
        self.accepting = True
        self.calls_total = 0
        self.completed: collections.deque[CallRecord] = collections.deque(maxlen=HISTORY)
        self.rejected: collections.deque[RejectedCall] = collections.deque(maxlen=HISTORY)
        #: Called with each ended call's record and the entry (the call history).
        self.listeners: list[Callable[[CallRecord, str], None]] = []
        self._tasks: set[asyncio.Task[Any]] = set()

    def refusal(self, live: int) -> str | None:
        """Why a new call may not start now (None: it may), given ``live`` calls."""
        if not self.accepting:
            return "service shutting down"
        if live >= self.max_calls:
            log.warning("refusing a %s: admission limit of %d calls reached", self._what,
                        self.max_calls)
            return "admission limit reached"
        return None

    def admitted(self) -> None:
        """Count a call that passed :meth:`refusal` and started."""
        self.calls_total += 1

    def finished(self, record: CallRecord) -> None:
        """Keep the record of a call that ended, and count it."""
        self.completed.append(record)
        metrics.call_finished(record, self.entry)
        for listener in self.listeners:
            listener(record, self.entry)

    def reject(self, rejected: RejectedCall) -> RejectedCall:
        """Keep a rejection (the caller is told why by the entry point), and count it."""
        self.rejected.append(rejected)
        metrics.call_rejected(rejected, self.entry)
        return rejected

    def spawn(self, work: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run a call's work (or a rejection) as a task the drain waits for."""
        task = asyncio.create_task(work, name=name)
        self.track(task)
        return task

    def track(self, task: asyncio.Task[Any]) -> None:
        """Register a task created elsewhere (a FastAGI connection handler)."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def busy(self) -> bool:
        """Any call work (or rejection) still running."""
        return bool(self._tasks)

    async def wait_idle(self, timeout: float) -> bool:
        """Until no call work runs (its record is then in :attr:`completed`), at most
        ``timeout`` s; whether it got there."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
        return not self._tasks

    async def drain(self, drain_seconds: float = 0.0) -> None:
        """Stop admitting (new callers hear the busy prompt) and let live calls run
        up to ``drain_seconds``; :meth:`end_all` then ends what is left."""
        self.accepting = False
        if drain_seconds > 0 and self._tasks:
            log.info("draining %d live %s task(s) for up to %.0f s", len(self._tasks),
                     self._what, drain_seconds)
            await asyncio.wait(set(self._tasks), timeout=drain_seconds)

    async def end_all(self) -> None:
        """Cancel every call still running and wait until each has released what it owned."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
