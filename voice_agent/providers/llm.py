"""Streamed chat completions from OpenAI-compatible servers, and a fallback chain.

Provider protocol (:class:`LanguageModel`)
    ``llm.stream(messages, tools)`` yields :class:`TextDelta` pieces as they are
    generated, a :class:`ToolCall` for each complete function call, and one
    final :class:`StreamEnd` (finish reason, token usage, time to first token).
    Implementations are async generators: close them (``contextlib.aclosing``)
    on barge-in and the HTTP stream is released at once.

Wire protocol (:class:`ChatStreamDecoder`)
    Ollama, vLLM, llama.cpp's server and OpenAI all answer
    ``POST {base_url}/chat/completions`` with ``"stream": true`` as Server-Sent
    Events: one ``data: {json}`` line per chunk, ending with ``data: [DONE]``.
    Text comes as ``choices[0].delta.content`` pieces. A tool call comes as
    fragments keyed by ``index`` (id and name first, then its JSON arguments cut
    anywhere), so it is only handed out once complete. The decoder has no I/O
    and is tested line by line.

Retries stop at the first item (:class:`OpenAiChat`, :class:`FallbackChain`)
    The call session speaks text while it streams. A failure before the first
    item can be retried, or handed to the next model, without the caller ever
    knowing. A failure after it cannot: a retry would say the beginning of the
    reply twice, and another model would continue a sentence it did not start.
    So later failures surface as errors and the call session apologises.

Timeouts
    ``connect_timeout`` bounds the TCP connect. ``first_token_timeout`` bounds
    the wait from the request to the first generated token: queueing and
    prompt prefill, the part that grows without bound on an overloaded server.
    ``idle_timeout`` bounds each silence after that. A slow but streaming
    server is never cut off; a hung one is noticed fast. Reasoning models that
    think before speaking need a ``first_token_timeout`` covering the thinking
    (reasoning text is not spoken, so it is not a token here).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

import httpx

from voice_agent.backoff import backoff_delays
from voice_agent.providers.errors import (
    ProviderConnectionError,
    ProviderError,
    ProviderResponseError,
    ProviderStreamError,
    ProviderTimeoutError,
    describe,
    raise_for_status,
    report_failure,
)
from voice_agent.providers.http import PooledHttpClient

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------
# Messages, tools and stream items
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolCall:
    """A complete function call the model asks for; ``arguments`` is the parsed JSON object."""

    id: str
    name: str
    arguments: dict[str, Any]

    def to_openai(self) -> dict[str, Any]:
        """The call as it appears in an assistant message of the conversation history."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": json.dumps(self.arguments)},
        }


@dataclass(frozen=True)
class ChatMessage:
    """One message of the conversation.

    ``tool_calls`` is set on the assistant message that asked for them (it
    must be sent back in the history), ``tool_call_id`` on the ``"tool"``
    message carrying a call's result.
    """

    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None

    def to_openai(self) -> dict[str, Any]:
        # "content" is always present, null beside tool calls, as OpenAI itself sends it:
        # some servers' chat templates index it unconditionally.
        message: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = [call.to_openai() for call in self.tool_calls]
        if self.tool_call_id is not None:
            message["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            message["name"] = self.name
        return message


@dataclass(frozen=True)
class ToolSpec:
    """A function the model may call; ``parameters`` is a JSON Schema of its arguments."""

    name: str
    description: str
    parameters: dict[str, Any] = field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )

    def to_openai(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


@dataclass(frozen=True)
class TextDelta:
    """The next piece of reply text (any length, often one token)."""

    text: str


@dataclass(frozen=True)
class Usage:
    """Token counts, when the server reports them."""

    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class StreamEnd:
    """The last item of every stream that completed.

    ``time_to_first_token`` is in seconds from the ``stream()`` call to the
    first generated token (text or tool-call fragment), retries and fallbacks
    included, because that is what the caller waited; None if the model
    generated nothing. ``model`` names the :class:`LanguageModel` that answered.
    """

    finish_reason: str | None
    usage: Usage | None = None
    time_to_first_token: float | None = None
    model: str = ""


StreamItem = TextDelta | ToolCall | StreamEnd


class LanguageModel(Protocol):
    """A chat model shared by all calls of the process."""

    name: str

    def stream(
        self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] | None = None
    ) -> AsyncIterator[StreamItem]:
        """The reply to ``messages``, item by item, ending with one :class:`StreamEnd`."""
        ...


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------














# ---------------------------------------------------------------------------
# Wire protocol
# ---------------------------------------------------------------------------


@dataclass
class _PartialCall:
    id: str | None = None
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class ChatStreamDecoder:
    """Lines of one streamed chat completion in, :class:`TextDelta` / :class:`ToolCall` out.

    Each ``data:`` line is one chunk. The SSE rule that joins consecutive data
    lines into one event is not applied: these servers put a whole JSON chunk
    on each line, and a few omit the blank line between events.
    """

    def __init__(self) -> None:
        self.done = False
        """``data: [DONE]`` arrived: the response is complete."""
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.text_chars = 0
        """Characters of reply text so far, for error messages about broken streams."""
        self.got_token = False
        """Generated output (text or a tool-call fragment) has arrived."""
        self._calls: dict[int, _PartialCall] = {}

    def feed(self, line: str) -> list[TextDelta | ToolCall]:
        if not line.startswith("data:"):
            return []  # blank separators, ": keep-alive" comments, "event:" fields
        data = line[len("data:") :].strip()
        if data == "[DONE]":
            self.done = True
            return self._complete_calls()
        try:
            chunk = json.loads(data)
        except json.JSONDecodeError as exc:
            raise ProviderResponseError(f"unparseable stream chunk: {data[:200]!r}") from exc
        try:
            return self._items(chunk)
        except (AttributeError, TypeError, ValueError) as exc:
            raise ProviderResponseError(f"unexpected stream chunk {data[:200]!r}: {exc}") from exc

    def end_of_stream(self) -> None:
        """The server closed the stream: raise unless the response was complete.

        A finish reason without ``[DONE]`` is accepted as complete: the model
        said it was done, and nothing else would have followed but usage.
        """
        if not self.done and self.finish_reason is None:
            raise ProviderStreamError(
                "the LLM server closed the stream before the response was complete "
                f"({self.text_chars} characters of text received)"
            )

    def _items(self, chunk: Any) -> list[TextDelta | ToolCall]:
        if "error" in chunk:  # vLLM and Ollama report failures inside the stream
            raise ProviderStreamError(
                f"the LLM server failed after {self.text_chars} characters of text: "
                f"{chunk['error']}"
            )
        if usage := chunk.get("usage"):
            self.usage = Usage(
                int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
            )
        items: list[TextDelta | ToolCall] = []
        for choice in chunk.get("choices") or ():  # usage-only chunks have no choices
            delta = choice.get("delta") or {}
            if content := delta.get("content"):
                if not isinstance(content, str):
                    raise TypeError(f"content is {type(content).__name__}, not text")
                self.got_token = True
                self.text_chars += len(content)
                items.append(TextDelta(content))
            for fragment in delta.get("tool_calls") or ():
                self.got_token = True
                self._add_fragment(fragment)
            if reason := choice.get("finish_reason"):
                self.finish_reason = reason
                items += self._complete_calls()
        return items

    def _add_fragment(self, fragment: dict[str, Any]) -> None:
        # Servers that send each call whole in one chunk may omit "index".
        index = fragment.get("index", len(self._calls))
        function = fragment.get("function") or {}
        name, arguments = function.get("name") or "", function.get("arguments") or ""
        call_id = fragment.get("id") or ""
        # Checked here, where feed() turns a TypeError into a ProviderResponseError,
        # not when [DONE] joins the pieces.
        if not isinstance(index, int) or isinstance(index, bool):
            raise TypeError(f"tool call index is {type(index).__name__}, not an integer")
        for what, value in (("name", name), ("arguments", arguments), ("id", call_id)):
            if not isinstance(value, str):
                raise TypeError(f"tool call {what} is {type(value).__name__}, not text")
        call = self._calls.setdefault(index, _PartialCall())
        call.id = call_id or call.id
        call.name += name
        call.arguments.append(arguments)

    def _complete_calls(self) -> list[TextDelta | ToolCall]:
        calls: list[TextDelta | ToolCall] = [
            _complete(index, self._calls[index]) for index in sorted(self._calls)
        ]
        self._calls.clear()
        return calls


def _complete(index: int, call: _PartialCall) -> ToolCall:
    if not call.name:
        raise ProviderResponseError(f"tool call #{index} has no function name")
    raw = "".join(call.arguments).strip() or "{}"
    try:
        arguments = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ProviderResponseError(
            f"tool call {call.name!r} has malformed JSON arguments: {raw[:200]!r}"
        ) from exc
    if not isinstance(arguments, dict):
        raise ProviderResponseError(
            f"tool call {call.name!r} has arguments that are not a JSON object: {raw[:200]!r}"
        )
    return ToolCall(call.id or f"call_{index}", call.name, arguments)


# ---------------------------------------------------------------------------
# HTTP client
# ---------------------------------------------------------------------------


class OpenAiChat(PooledHttpClient):
    """Client of an OpenAI-compatible ``POST {base_url}/chat/completions`` endpoint.

    One HTTP connection pool shared by every call of the process: use
    ``async with OpenAiChat(...) as llm:`` or call :meth:`aclose`.
    ``max_retries`` extra attempts (after ``retry_backoff`` seconds, doubling, jittered)
    are made only for failures before the first item; see the module doc.
    ``temperature`` and ``max_tokens`` are sent only when set, so the server's
    defaults apply otherwise. ``extra_body`` is merged into every request for
    server-specific options (llama.cpp ``grammar``, vLLM ``guided_json``,
    Ollama ``options``), as the OpenAI SDK's parameter of the same name.
    """

    stage = "LLM"

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        connect_timeout: float = 3.0,
        first_token_timeout: float = 10.0,
        idle_timeout: float = 10.0,
        max_retries: int = 1,
        retry_backoff: float = 0.2,
        temperature: float | None = None,
        max_tokens: int | None = None,
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        self.model = model
        # Reads are bounded by our own first-token and idle deadlines, not httpx's.
        self._open(base_url, api_key, httpx.Timeout(
            connect=connect_timeout, read=None, write=connect_timeout, pool=connect_timeout))
        self.url = self.base_url + "/chat/completions"
        self.name = f"{model}@{self.base_url}"
        self.first_token_timeout = first_token_timeout
        self.idle_timeout = idle_timeout
        self.max_retries = max_retries
        self.retry_backoff = retry_backoff
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.extra_body = dict(extra_body or {})

    async def stream(
        self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] | None = None
    ) -> AsyncIterator[StreamItem]:
        body = self._request_body(messages, tools)
        started = asyncio.get_running_loop().time()
        delays = backoff_delays(self.retry_backoff, self.retry_backoff * 2**self.max_retries)
        for attempt in range(self.max_retries + 1):
            yielded = False
            try:
                async with aclosing(self._attempt(body, started)) as items:
                    async for item in items:
                        yielded = True
                        yield item
                return
            except ProviderError as exc:
                if yielded or not exc.retryable or attempt == self.max_retries:
                    raise
                log.warning("%s failed before any output, retrying: %s", self.name, exc)
            await asyncio.sleep(next(delays))

    def _request_body(
        self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [message.to_openai() for message in messages],
            "stream": True,
            # Token counts in streams are opt-in (OpenAI, vLLM, llama.cpp, Ollama).
            "stream_options": {"include_usage": True},
        }
        if tools:
            body["tools"] = [tool.to_openai() for tool in tools]
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        return body | self.extra_body

    async def _attempt(self, body: dict[str, Any], started: float) -> AsyncIterator[StreamItem]:
        """One request; httpx errors and deadlines become LlmErrors."""
        loop = asyncio.get_running_loop()
        first_token_deadline = loop.time() + self.first_token_timeout
        first_token_at: float | None = None
        decoder = ChatStreamDecoder()
        try:
            async with asyncio.timeout_at(first_token_deadline):
                response = await self._http.send(
                    self._http.build_request("POST", self.url, json=body), stream=True
                )
        except TimeoutError as exc:
            raise self._timeout_error(decoder) from exc
        except httpx.TransportError as exc:
            raise ProviderConnectionError(
                f"cannot reach LLM server at {self.url}: {describe(exc)}"
            ) from exc
        try:
            await raise_for_status("LLM", self.url, response)
            content_type = response.headers.get("content-type", "")
            if not content_type.startswith("text/event-stream"):
                raise ProviderResponseError(
                    f"LLM server at {self.url} answered {content_type or 'no content type'}, "
                    "not a text/event-stream: does it support streaming?"
                )
            async with aclosing(response.aiter_lines()) as lines:
                while not decoder.done:
                    # The deadline is armed per read, never across a yield: there it would
                    # fire in whatever the consumer is awaiting and cancel that instead.
                    deadline = (
                        first_token_deadline if first_token_at is None
                        else loop.time() + self.idle_timeout
                    )
                    try:
                        async with asyncio.timeout_at(deadline):
                            line = await anext(lines, None)
                    except TimeoutError as exc:
                        raise self._timeout_error(decoder) from exc
                    if line is None:
                        decoder.end_of_stream()
                        break
                    items = decoder.feed(line)
                    if first_token_at is None and decoder.got_token:
                        first_token_at = loop.time()
                    for item in items:
                        yield item
        except httpx.TransportError as exc:
            raise ProviderStreamError(
                f"the stream from {self.url} broke after {decoder.text_chars} characters "
                f"of text: {describe(exc)}"
            ) from exc
        finally:
            await response.aclose()
        time_to_first_token = None if first_token_at is None else first_token_at - started
        yield StreamEnd(decoder.finish_reason, decoder.usage, time_to_first_token, self.name)

    def _timeout_error(self, decoder: ChatStreamDecoder) -> ProviderTimeoutError:
        if not decoder.got_token:
            return ProviderTimeoutError(
                f"LLM server at {self.url} generated nothing within {self.first_token_timeout} s"
            )
        return ProviderTimeoutError(
            f"the stream from {self.url} stalled for {self.idle_timeout} s "
            f"after {decoder.text_chars} characters of text"
        )




# ---------------------------------------------------------------------------
# Fallback chain
# ---------------------------------------------------------------------------


class FallbackChain:
    """Models tried in order: a primary server, then its stand-ins. Itself a LanguageModel.

    The next model is tried only when the current one fails before yielding
    anything. A failure after output started is raised as is: the caller has
    already spoken part of the reply, and another model would neither know
    what was said nor continue the sentence. If every model fails, the last
    one's error is raised (the earlier ones are logged).
    """

    def __init__(self, models: Sequence[LanguageModel]) -> None:
        if not models:
            raise ValueError("a FallbackChain needs at least one model")
        self.models = list(models)
        self.name = " > ".join(model.name for model in self.models)

    async def stream(
        self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] | None = None
    ) -> AsyncIterator[StreamItem]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        for position, model in enumerate(self.models):
            model_started = loop.time()
            yielded = False
            try:
                async with aclosing(model.stream(messages, tools)) as items:
                    async for item in items:
                        if isinstance(item, StreamEnd):
                            item = _rebase(item, model_started - started)
                            # Quiet when the primary answers; a stand-in serving is news.
                            level = logging.INFO if position else logging.DEBUG
                            log.log(level, "LLM reply served by %s", model.name)
                        yielded = True
                        yield item
                return
            except ProviderError as exc:
                if yielded or position == len(self.models) - 1:
                    raise
                log.warning("%s failed before any output, falling back to %s: %s",
                            model.name, self.models[position + 1].name, exc)
                report_failure("llm", model.name, exc, handled_by=self.models[position + 1].name)


def _rebase(end: StreamEnd, offset: float) -> StreamEnd:
    """``end`` with its time to first token counted from the chain's start, not the model's."""
    if end.time_to_first_token is None:
        return end
    return replace(end, time_to_first_token=end.time_to_first_token + offset)
