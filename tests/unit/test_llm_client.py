"""OpenAI-compatible streaming chat: the wire decoder, the HTTP client, the fallback chain.

The client talks to :class:`tests.fakes.ScriptedLlmServer`, a real loopback HTTP/1.1 server
that plays scripted SSE replies: real sockets, so httpx's own parsing and
connection errors are what the client meets, including a server that dies
mid-stream. Timeouts are only ever provoked by a server that never answers, so
no test depends on how fast this machine is.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from tests.fakes import (
    Reply,
    ScriptedLlmServer,
    finish_chunk,
    role_chunk,
    text_chunk,
    tool_chunk,
)
from tests.helpers import closed_port_url
from voice_agent.providers.errors import (
    ProviderConnectionError,
    ProviderHttpError,
    ProviderResponseError,
    ProviderStreamError,
    ProviderTimeoutError,
)
from voice_agent.providers.llm import (
    ChatMessage,
    ChatStreamDecoder,
    FallbackChain,
    LanguageModel,
    OpenAiChat,
    StreamEnd,
    StreamItem,
    TextDelta,
    ToolCall,
    ToolSpec,
    Usage,
)

MESSAGES = [
    ChatMessage("system", "You are a helpful phone agent."),
    ChatMessage("user", "Where is my order?"),
]
LOOKUP_ORDER = ToolSpec(
    "lookup_order",
    "Find an order by its number.",
    {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]},
)

USAGE_CHUNK = {"choices": [], "usage": {"prompt_tokens": 21, "completion_tokens": 5}}
REPLY = ["Your order ", "shipped ", "yesterday."]
REPLY_EVENTS = [role_chunk(), *map(text_chunk, REPLY), finish_chunk("stop"), USAGE_CHUNK]


def client(base_url: str, **options: Any) -> OpenAiChat:
    return OpenAiChat(base_url, "test-model", retry_backoff=0.0, **options)


async def collect(model: LanguageModel, tools: Sequence[ToolSpec] | None = None
                  ) -> list[StreamItem]:
    return [item async for item in model.stream(MESSAGES, tools)]


async def collect_until_error(model: LanguageModel) -> tuple[list[StreamItem], Exception]:
    items: list[StreamItem] = []
    with pytest.raises(Exception) as raised:
        async for item in model.stream(MESSAGES):
            items.append(item)
    return items, raised.value


# ---------------------------------------------------------------------------
# Messages and the decoder (no I/O)
# ---------------------------------------------------------------------------


def test_messages_serialise_to_the_openai_shape() -> None:
    call = ToolCall("call_7", "lookup_order", {"order_id": "A-17"})
    assert ChatMessage("assistant", tool_calls=(call,)).to_openai() == {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "call_7", "type": "function", "function": {
            "name": "lookup_order", "arguments": '{"order_id": "A-17"}'}}],
    }
    assert ChatMessage("tool", "shipped", tool_call_id="call_7", name="lookup_order"
                       ).to_openai() == {"role": "tool", "content": "shipped",
                                         "tool_call_id": "call_7", "name": "lookup_order"}


def test_decoder_skips_comments_separators_and_role_chunks() -> None:
    decoder = ChatStreamDecoder()
    for line in [": keep-alive", "", "event: message", f"data: {json.dumps(role_chunk())}"]:
        assert decoder.feed(line) == []
    assert not decoder.got_token
    assert decoder.feed('data:{"choices":[{"delta":{"content":"Hi"}}]}') == [TextDelta("Hi")]
    assert decoder.got_token and decoder.text_chars == 2


def test_decoder_assembles_interleaved_parallel_tool_calls_in_index_order() -> None:
    decoder = ChatStreamDecoder()
    chunks = [
        tool_chunk(1, "", id="b", name="get_"),
        tool_chunk(0, '{"city": ', id="a", name="weather"),
        tool_chunk(1, "", name="time"),  # a name may come in pieces too
        tool_chunk(0, '"Oslo"}'),
        tool_chunk(1, ""),
    ]
    for chunk in chunks:
        assert decoder.feed(f"data: {json.dumps(chunk)}") == []
    assert decoder.feed("data: [DONE]") == [
        ToolCall("a", "weather", {"city": "Oslo"}),
        ToolCall("b", "get_time", {}),
    ]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [('{"order_id": "A-1', "has malformed JSON arguments"), ("[1, 2]", "not a JSON object")],
)
def test_decoder_rejects_bad_tool_arguments(arguments: str, message: str) -> None:
    decoder = ChatStreamDecoder()
    decoder.feed(f"data: {json.dumps(tool_chunk(0, arguments, id='c', name='lookup_order'))}")
    with pytest.raises(ProviderResponseError, match=f"'lookup_order' .*{message}"):
        decoder.feed(f"data: {json.dumps(finish_chunk('tool_calls'))}")


@pytest.mark.parametrize("line", ["data: {not json", "data: [1, 2]", 'data: {"choices": 3}'])
def test_decoder_rejects_chunks_that_are_not_completions(line: str) -> None:
    with pytest.raises(ProviderResponseError, match="stream chunk"):
        ChatStreamDecoder().feed(line)


def test_decoder_reports_an_error_sent_inside_the_stream() -> None:
    decoder = ChatStreamDecoder()
    decoder.feed(f"data: {json.dumps(text_chunk('Hello'))}")
    with pytest.raises(ProviderStreamError, match="after 5 characters.*out of memory"):
        decoder.feed('data: {"error": {"message": "out of memory"}}')


# ---------------------------------------------------------------------------
# The HTTP client
# ---------------------------------------------------------------------------


async def test_streams_text_and_sends_an_openai_request(llm_server: ScriptedLlmServer) -> None:
    llm_server.replies = [Reply(events=REPLY_EVENTS)]
    async with client(llm_server.base_url, api_key="sk-test", temperature=0.3,
                      max_tokens=200) as llm:
        items = await collect(llm, [LOOKUP_ORDER])
    assert items[:-1] == [TextDelta(text) for text in REPLY]
    end = items[-1]
    assert isinstance(end, StreamEnd)
    assert end.finish_reason == "stop"
    assert end.usage == Usage(prompt_tokens=21, completion_tokens=5)
    assert end.model == llm.name == f"test-model@{llm_server.base_url}"
    assert end.time_to_first_token is not None and end.time_to_first_token >= 0

    [request] = llm_server.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.body == {
        "model": "test-model",
        "messages": [
            {"role": "system", "content": "You are a helpful phone agent."},
            {"role": "user", "content": "Where is my order?"},
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
        "tools": [{"type": "function", "function": {
            "name": "lookup_order",
            "description": "Find an order by its number.",
            "parameters": LOOKUP_ORDER.parameters,
        }}],
        "temperature": 0.3,
        "max_tokens": 200,
    }


async def test_sends_no_tools_or_authorization_unless_given(llm_server: ScriptedLlmServer) -> None:
    llm_server.replies = [Reply(events=REPLY_EVENTS)]
    async with client(llm_server.base_url) as llm:
        await collect(llm)
    [request] = llm_server.requests
    assert "authorization" not in request.headers
    assert set(request.body) == {"model", "messages", "stream", "stream_options"}


async def test_extra_body_carries_server_specific_options(llm_server: ScriptedLlmServer) -> None:
    llm_server.replies = [Reply(events=REPLY_EVENTS)]
    async with client(llm_server.base_url, extra_body={"grammar": "root ::= \"hi\""}) as llm:
        await collect(llm)
    [request] = llm_server.requests
    assert request.body["grammar"] == 'root ::= "hi"'
    assert request.body["stream"] is True


async def test_tool_call_split_across_chunks_is_yielded_complete(
    llm_server: ScriptedLlmServer,
) -> None:
    llm_server.replies = [Reply(events=[
        role_chunk(),
        tool_chunk(0, "", id="call_1", name="lookup_order"),
        tool_chunk(0, '{"order_id": '),
        tool_chunk(0, '"A-1'),
        tool_chunk(0, '7"}'),
        finish_chunk("tool_calls"),
    ])]
    async with client(llm_server.base_url) as llm:
        items = await collect(llm, [LOOKUP_ORDER])
    assert items[0] == ToolCall("call_1", "lookup_order", {"order_id": "A-17"})
    assert isinstance(items[1], StreamEnd) and items[1].finish_reason == "tool_calls"
    assert items[1].time_to_first_token is not None  # a tool-call fragment is a token
    assert len(items) == 2


async def test_http_500_once_is_retried(llm_server: ScriptedLlmServer) -> None:
    llm_server.replies = [Reply(status=500, body=b"model is loading"), Reply(events=REPLY_EVENTS)]
    async with client(llm_server.base_url, max_retries=1) as llm:
        items = await collect(llm)
    assert "".join(i.text for i in items if isinstance(i, TextDelta)) == "".join(REPLY)
    assert len(llm_server.requests) == 2


async def test_http_500_every_time_is_an_http_error(llm_server: ScriptedLlmServer) -> None:
    llm_server.replies = [Reply(status=503, body=b"overloaded")] * 2
    async with client(llm_server.base_url, max_retries=1) as llm:
        with pytest.raises(ProviderHttpError) as raised:
            await collect(llm)
    assert (raised.value.status, raised.value.body) == (503, "overloaded")
    assert llm_server.base_url in str(raised.value)
    assert len(llm_server.requests) == 2


async def test_http_400_is_not_retried(llm_server: ScriptedLlmServer) -> None:
    llm_server.replies = [Reply(status=404, body=b'{"error": "model not found"}')]
    async with client(llm_server.base_url, max_retries=3) as llm:
        with pytest.raises(ProviderHttpError, match="HTTP 404.*model not found"):
            await collect(llm)
    assert len(llm_server.requests) == 1


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "close-delimited"])
async def test_stream_cut_after_output_is_a_stream_error_and_not_retried(
    llm_server: ScriptedLlmServer, chunked: bool,
) -> None:
    llm_server.replies = [
        Reply(events=[role_chunk(), text_chunk("Your order "), text_chunk("shi")],
              complete=False, chunked=chunked),
        Reply(events=REPLY_EVENTS),
    ]
    async with client(llm_server.base_url, max_retries=2) as llm:
        items, error = await collect_until_error(llm)
    assert items == [TextDelta("Your order "), TextDelta("shi")]
    assert isinstance(error, ProviderStreamError)
    assert "14 characters" in str(error)
    assert len(llm_server.requests) == 1


async def test_stream_cut_before_output_is_retried(llm_server: ScriptedLlmServer) -> None:
    llm_server.replies = [Reply(events=[role_chunk()], complete=False), Reply(events=REPLY_EVENTS)]
    async with client(llm_server.base_url, max_retries=1) as llm:
        items = await collect(llm)
    assert items[0] == TextDelta(REPLY[0])
    assert len(llm_server.requests) == 2


async def test_finish_reason_then_close_without_done_is_complete(
    llm_server: ScriptedLlmServer,
) -> None:
    llm_server.replies = [Reply(events=[text_chunk("Bye."), finish_chunk("stop")],
                            complete=False, chunked=False)]
    async with client(llm_server.base_url) as llm:
        items = await collect(llm)
    assert items[0] == TextDelta("Bye.")
    assert isinstance(items[1], StreamEnd) and items[1].finish_reason == "stop"


async def test_malformed_chunk_is_a_response_error_and_not_retried(
    llm_server: ScriptedLlmServer,
) -> None:
    llm_server.replies = [Reply(events=[text_chunk("Hi"), '{"choices": [{"delta": {"cont'])]
    async with client(llm_server.base_url, max_retries=2) as llm:
        items, error = await collect_until_error(llm)
    assert items == [TextDelta("Hi")]
    assert isinstance(error, ProviderResponseError) and "unparseable" in str(error)
    assert len(llm_server.requests) == 1


async def test_a_reply_that_is_not_an_event_stream_is_a_response_error(
    llm_server: ScriptedLlmServer,
) -> None:
    llm_server.replies = [Reply(body=b'{"choices": []}', content_type="application/json")]
    async with client(llm_server.base_url) as llm:
        with pytest.raises(ProviderResponseError, match="json.*not a text/event-stream"):
            await collect(llm)


async def test_connection_refused_is_a_connection_error_naming_the_url() -> None:
    url = closed_port_url()
    async with client(url, max_retries=1) as llm:
        with pytest.raises(ProviderConnectionError, match=f"{url}/chat/completions"):
            await collect(llm)


async def test_no_first_token_in_time_is_retried(llm_server: ScriptedLlmServer) -> None:
    llm_server.replies = [Reply(events=[role_chunk()], hang=True), Reply(events=REPLY_EVENTS)]
    async with client(llm_server.base_url, first_token_timeout=0.5, max_retries=1) as llm:
        items = await collect(llm)
    assert items[0] == TextDelta(REPLY[0])
    assert len(llm_server.requests) == 2


async def test_stream_stalled_after_output_is_a_timeout_and_not_retried(
    llm_server: ScriptedLlmServer,
) -> None:
    llm_server.replies = [Reply(events=[text_chunk("Let me check")], hang=True)]
    async with client(llm_server.base_url, idle_timeout=0.1, max_retries=2) as llm:
        items, error = await collect_until_error(llm)
    assert items == [TextDelta("Let me check")]
    assert isinstance(error, ProviderTimeoutError)
    assert "stalled" in str(error) and "12 characters" in str(error)
    assert len(llm_server.requests) == 1


async def test_closing_a_stream_mid_reply_leaves_the_client_usable(
    llm_server: ScriptedLlmServer,
) -> None:
    """Barge-in: the consumer stops reading and closes the stream; the next turn works."""
    llm_server.replies = [Reply(events=[text_chunk("Let me check")], hang=True),
                      Reply(events=REPLY_EVENTS)]
    async with client(llm_server.base_url) as llm:
        interrupted = llm.stream(MESSAGES)
        assert await anext(interrupted) == TextDelta("Let me check")
        await interrupted.aclose()
        items = await collect(llm)
    assert items[0] == TextDelta(REPLY[0])
    assert len(llm_server.requests) == 2


# ---------------------------------------------------------------------------
# The fallback chain
# ---------------------------------------------------------------------------


async def test_fallback_serves_from_the_second_model_when_the_first_is_down(
    llm_server: ScriptedLlmServer, caplog: pytest.LogCaptureFixture,
) -> None:
    llm_server.replies = [Reply(events=REPLY_EVENTS)]
    caplog.set_level("INFO", logger="voice_agent.providers.llm")
    async with client(closed_port_url(), max_retries=0) as down, \
            client(llm_server.base_url) as up:
        chain = FallbackChain([down, up])
        items = await collect(chain)
    assert items[:-1] == [TextDelta(text) for text in REPLY]
    end = items[-1]
    assert isinstance(end, StreamEnd) and end.model == up.name
    assert end.time_to_first_token is not None and end.time_to_first_token >= 0
    assert f"falling back to {up.name}" in caplog.text
    assert f"served by {up.name}" in caplog.text


async def test_fallback_reraises_a_failure_after_output(llm_server: ScriptedLlmServer) -> None:
    llm_server.replies = [
        Reply(events=[text_chunk("Your order ")], complete=False),
        Reply(events=REPLY_EVENTS),  # would be the second model's reply: must not be asked
    ]
    async with client(llm_server.base_url) as first, client(llm_server.base_url) as second:
        items, error = await collect_until_error(FallbackChain([first, second]))
    assert items == [TextDelta("Your order ")]
    assert isinstance(error, ProviderStreamError)
    assert len(llm_server.requests) == 1


async def test_fallback_raises_the_last_error_when_every_model_fails() -> None:
    first_url, last_url = closed_port_url(), closed_port_url()
    async with client(first_url, max_retries=0) as first, \
            client(last_url, max_retries=0) as last:
        with pytest.raises(ProviderConnectionError, match=last_url):
            await collect(FallbackChain([first, last]))
