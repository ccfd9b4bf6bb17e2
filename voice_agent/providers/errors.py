"""One error family for every model provider (STT, TTS, LLM; embedded or server).

The conversation layer reacts to *what kind* of failure happened (could another
attempt or another provider succeed?), never to which provider raised it, so
there is one class per kind with the stage ("STT", "TTS", "LLM") in the
message, and one mapping from httpx's exceptions to those kinds.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import httpx


class ProviderError(Exception):
    """Base class of every error a model provider raises.

    ``retryable`` says whether another attempt at the same provider could
    succeed; it is only ever acted on when nothing has been yielded yet.
    """

    retryable = False


class ProviderConnectionError(ProviderError):
    """The server cannot be reached (down, wrong URL, connection refused)."""

    retryable = True


class ProviderTimeoutError(ProviderError):
    """The server accepted the request but did not answer (or stalled) in time."""

    retryable = True


class ProviderHttpError(ProviderError):
    """The server answered with an HTTP error status; 5xx may pass, 4xx will not."""

    def __init__(self, stage: str, url: str, status: int, body: str) -> None:
        self.stage, self.url, self.status, self.body = stage, url, status, body
        self.retryable = status >= 500
        super().__init__(f"{stage} request to {url} failed: HTTP {status}: {body}")


class ProviderStreamError(ProviderError):
    """The stream broke off before the response was complete (server died or closed it)."""

    retryable = True


class ProviderResponseError(ProviderError):
    """The server sent something that is not the expected reply (bad JSON, wrong audio).

    Not retryable: the same server would most likely send the same thing again.
    """


def describe(exc: Exception) -> str:
    """httpx's message, or the exception's name for those that have none (timeouts)."""
    return str(exc) or type(exc).__name__


@contextmanager
def http_errors(stage: str, url: str, timeout: float | None = None) -> Iterator[None]:
    """Turn httpx's transport exceptions raised inside the block into provider errors."""
    try:
        yield
    except httpx.TimeoutException as exc:
        within = f" within {timeout} s" if timeout is not None else ""
        raise ProviderTimeoutError(f"{stage} server at {url} did not answer{within}") from exc
    except httpx.TransportError as exc:
        raise ProviderConnectionError(
            f"cannot reach {stage} server at {url}: {describe(exc)}") from exc


async def raise_for_status(stage: str, url: str, response: httpx.Response) -> None:
    """An HTTP error status becomes :class:`ProviderHttpError` with a short body excerpt."""
    if response.is_error:
        excerpt = (await response.aread()).decode(errors="replace").strip()[:300]
        raise ProviderHttpError(stage, url, response.status_code, excerpt)


#: Where provider failures of the current call are recorded (its CallRecord.errors).
#: Providers are shared by every call, so a chain that falls back cannot know the
#: call; the call's tasks carry its list in their context instead.
call_failures: ContextVar[list[dict[str, Any]] | None] = ContextVar("call_failures",
                                                                     default=None)


def report_failure(stage: str, provider: str, exc: BaseException | str,
                   *, handled_by: str = "") -> None:
    """Note a failure in the current call's record, if a call is listening."""
    failures = call_failures.get()
    if failures is not None:
        entry: dict[str, Any] = {"at": time.monotonic(), "stage": stage, "provider": provider,
                                 "error": exc if isinstance(exc, str)
                                 else f"{type(exc).__name__}: {exc}"}
        if handled_by:
            entry["handled_by"] = handled_by
        failures.append(entry)
