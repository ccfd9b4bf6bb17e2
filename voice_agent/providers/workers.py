"""One bounded pool of threads for every CPU-heavy model call in the process.

Why a shared pool: the agent serves many calls from one event loop on a small
box (2 cores here). If every call ran its own Whisper and Piper inference in
its own thread, ten callers would start ten matrix multiplications at once;
each would run ten times slower and *every* caller would wait ~10x longer. A
pool of ``max_workers`` (≈ the core count) lets that many inferences run while
the rest wait in one queue, and the load shows up as queue depth instead of as
slowness spread over everyone.

Why a fair queue, not FIFO: the caller who finished speaking first should be
answered first. A request carries a ``priority`` (a ``time.monotonic()``
instant, earlier = sooner); by default it is the moment it is queued, so the
pool is FIFO, but a turn's work (its transcription, then its reply's
synthesis) is queued with the moment that turn ended (:data:`turn_ended_at`),
so a caller whose turn ended a second ago is served before work for turns
that ended after it. Hand-written (a heap and N
threads) because ``ThreadPoolExecutor`` has only FIFO order.

Why threads and not processes: CTranslate2 (faster-whisper) and onnxruntime
(Piper, Silero) release the GIL inside inference, so threads run truly in
parallel, and the models load once and are shared instead of being copied
into every process.

Why no asyncio primitives inside: the pool is a process-wide singleton that
outlives event loops (tests run one loop per test, a service may restart its
loop); results go back to the loop that asked, with ``call_soon_threadsafe``.

Cancellation: a request cancelled while still queued (the caller hung up or
barged in) is skipped and never runs. One that is already running finishes in
its thread (native inference cannot be interrupted) and its result is dropped.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

#: When the caller's turn that this work serves ended (``time.monotonic()``); set by
#: the conversation around a transcription, read by providers as their priority.
turn_ended_at: ContextVar[float | None] = ContextVar("turn_ended_at", default=None)


@dataclass(frozen=True)
class WorkerStats:
    """A consistent snapshot of the pool's load, for metrics and admission decisions."""

    max_workers: int
    queued: int
    """Requests waiting for a thread."""
    in_flight: int
    """Requests running now."""
    completed: int
    """Requests that ran to the end (successfully or with an exception) since start."""


@dataclass(order=True)
class _Job:
    priority: float
    seq: int
    call: Callable[[], Any] = field(compare=False)
    loop: asyncio.AbstractEventLoop = field(compare=False)
    future: asyncio.Future[Any] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)


class ModelWorkers:
    """A pool of ``max_workers`` threads for blocking model calls, earliest priority first.

    ``await workers.run(fn, *args)`` runs ``fn(*args)`` in a pool thread and
    returns its result (or raises its exception) without blocking the event loop.
    """

    def __init__(self, max_workers: int = 2, name: str = "model") -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers must be at least 1, got {max_workers}")
        self.max_workers = max_workers
        self._name = name
        self._heap: list[_Job] = []
        self._ready = threading.Condition()
        self._seq = itertools.count()
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._queued = 0
        self._in_flight = 0
        self._completed = 0

    async def run(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Queue ``fn(*args, **kwargs)`` and await its result.

        Its priority is :data:`turn_ended_at` when set in the caller's context,
        else now: work for an earlier end of turn is served first.
        """
        loop = asyncio.get_running_loop()
        priority = turn_ended_at.get()
        job = _Job(time.monotonic() if priority is None else priority, next(self._seq),
                   functools.partial(fn, *args, **kwargs), loop, loop.create_future())
        with self._ready:
            if self._closed:
                raise RuntimeError("the model worker pool is shut down")
            heapq.heappush(self._heap, job)
            self._queued += 1
            self._start_threads()
            self._ready.notify()
        try:
            return await job.future  # type: ignore[no-any-return]
        except asyncio.CancelledError:
            with self._ready:
                if not job.cancelled and job in self._heap:
                    job.cancelled = True  # skipped by the workers, never run
                    self._queued -= 1
            raise

    def _start_threads(self) -> None:
        while len(self._threads) < self.max_workers:
            thread = threading.Thread(target=self._work, daemon=True,
                                      name=f"{self._name}-{len(self._threads)}")
            self._threads.append(thread)
            thread.start()

    def _work(self) -> None:
        while True:
            with self._ready:
                while not self._heap and not self._closed:
                    self._ready.wait()
                if not self._heap:
                    return
                job = heapq.heappop(self._heap)
                if job.cancelled:
                    continue
                self._queued -= 1
                self._in_flight += 1
            try:
                result, error = job.call(), None
            except BaseException as exc:  # handed to the awaiting task, not lost here
                result, error = None, exc
            finally:
                with self._ready:
                    self._in_flight -= 1
                    self._completed += 1
            try:
                job.loop.call_soon_threadsafe(_settle, job.future, result, error)
            except RuntimeError:  # its event loop has closed: nobody waits for this result
                log.debug("dropped the result of a model job whose event loop closed")

    def stats(self) -> WorkerStats:
        with self._ready:
            return WorkerStats(max_workers=self.max_workers, queued=self._queued,
                               in_flight=self._in_flight, completed=self._completed)

    @property
    def has_spare_capacity(self) -> bool:
        """True when a new request would start at once instead of queueing.

        Optional work (partial transcripts) asks this first, so it only ever
        uses idle cores and never delays another call's final transcript.
        """
        stats = self.stats()
        return stats.queued + stats.in_flight < self.max_workers

    def shutdown(self, wait: bool = True) -> None:
        """Stop accepting work; with ``wait``, let running and queued requests finish."""
        with self._ready:
            self._closed = True
            if not wait:
                for job in self._heap:
                    job.cancelled = True
                self._queued = 0
            self._ready.notify_all()
        if wait:
            for thread in self._threads:
                thread.join()


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the awaiting task was cancelled meanwhile: drop the result
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


@functools.cache
def default_workers() -> ModelWorkers:
    """The process-wide pool every provider uses unless given its own.

    Sized to the core count but at most 2 threads: each inference already uses
    its own intra-op threads, so more pool threads than cores only adds contention.
    """
    return ModelWorkers(max_workers=max(1, min(2, os.cpu_count() or 1)))
