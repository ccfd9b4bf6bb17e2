"""One bounded pool of threads for every CPU-heavy model call in the process.

Why a shared pool: the agent serves many calls from one event loop on a small
box (2 cores here). If every call ran its own Whisper and Piper inference in
its own thread, ten callers would start ten matrix multiplications at once;
each would run ten times slower and *every* caller would wait ~10x longer. A
pool of ``max_workers`` (≈ the core count) lets that many inferences run while
the rest wait in one FIFO queue: each request is served in arrival order, so a
call waits behind at most the requests queued before it, and the load shows up
as queue depth instead of as slowness spread over everyone.

Why threads and not processes: CTranslate2 (faster-whisper) and onnxruntime
(Piper, Silero) release the GIL inside inference, so threads run truly in
parallel, and the models load once and are shared instead of being copied
into every process.

Why no asyncio.Semaphore: the pool is a process-wide singleton that outlives
event loops (tests run one loop per test, a service may restart its loop), and
asyncio primitives bind to the first loop that waits on them. The executor's
own queue is already FIFO and thread-safe; the counters sit beside it.

Cancellation: a request cancelled while still queued (the caller hung up or
barged in) is removed from the queue and never runs. One that is already
running finishes in its thread (native inference cannot be interrupted) and
its result is dropped.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


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


class ModelWorkers:
    """A FIFO pool of ``max_workers`` threads for blocking model calls.

    ``await workers.run(fn, *args)`` runs ``fn(*args)`` in a pool thread and
    returns its result (or raises its exception) without blocking the event loop.
    """

    def __init__(self, max_workers: int = 2, name: str = "model") -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers must be at least 1, got {max_workers}")
        self.max_workers = max_workers
        self._executor = ThreadPoolExecutor(max_workers, thread_name_prefix=name)
        self._lock = threading.Lock()
        self._submitted = 0
        self._started = 0
        self._completed = 0
        self._cancelled = 0

    async def run(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Queue ``fn(*args, **kwargs)`` behind earlier requests and await its result."""
        with self._lock:
            self._submitted += 1
        future = self._executor.submit(self._counted, fn, *args, **kwargs)
        future.add_done_callback(self._count_cancelled)
        # Cancelling the awaiting task cancels ``future`` too: a queued request
        # leaves the queue, a running one finishes and its result is dropped.
        return await asyncio.wrap_future(future)

    def _count_cancelled(self, future: Future[object]) -> None:
        if future.cancelled():  # only possible before it started
            with self._lock:
                self._cancelled += 1

    def _counted(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        with self._lock:
            self._started += 1
        try:
            return fn(*args, **kwargs)
        finally:
            with self._lock:
                self._completed += 1

    def stats(self) -> WorkerStats:
        with self._lock:
            return WorkerStats(
                max_workers=self.max_workers,
                queued=self._submitted - self._started - self._cancelled,
                in_flight=self._started - self._completed,
                completed=self._completed,
            )

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
        self._executor.shutdown(wait=wait, cancel_futures=not wait)


@functools.cache
def default_workers() -> ModelWorkers:
    """The process-wide pool every provider uses unless given its own.

    Sized to the core count but at most 2 threads: each inference already uses
    its own intra-op threads, so more pool threads than cores only adds contention.
    """
    return ModelWorkers(max_workers=max(1, min(2, os.cpu_count() or 1)))
