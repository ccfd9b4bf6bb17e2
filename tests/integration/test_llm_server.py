"""The OpenAI-compatible client against a real server: Debian's llama-server with SmolLM2.

No mock: the server is the same binary and wire protocol as a llama.cpp
deployment: token streaming, usage, tool specs and tool results in the
history, and a server killed in the middle of a reply.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import aclosing

import pytest

from tests.helpers import local_llm_server
from voice_agent.config import Settings
from voice_agent.dev.llm_server import LocalLlmServer
from voice_agent.dev.local_asterisk import LocalAsterisk
from voice_agent.providers.errors import ProviderConnectionError, ProviderStreamError
from voice_agent.providers.llm import (
    ChatMessage,
    FallbackChain,
    OpenAiChat,
    StreamEnd,
    TextDelta,
    ToolCall,
    ToolSpec,
)

ORDER_STATUS = ToolSpec(
    name="order_status",
    description="Look up the delivery status of an order by its number.",
    parameters={"type": "object", "properties": {"order_id": {"type": "string"}},
                "required": ["order_id"]},
)
QUESTION = [
    ChatMessage("system", "You are the phone agent of TechStore. Answer briefly."),
    ChatMessage("user", "Where is my order 12345?"),
]


@pytest.fixture(scope="module")
def llm_server(local_asterisk: LocalAsterisk, settings: Settings) -> Iterator[LocalLlmServer]:
    with local_llm_server(settings, 8091) as server:
        yield server


def _client(server: LocalLlmServer, **options: object) -> OpenAiChat:
    return OpenAiChat(server.base_url, server.model, temperature=0.0, retry_backoff=0.0,
                      **options)  # type: ignore[arg-type]


async def test_streams_a_reply_token_by_token(llm_server: LocalLlmServer) -> None:
    async with _client(llm_server, max_tokens=24) as llm:
        items = [item async for item in llm.stream(QUESTION)]
    deltas = [item for item in items if isinstance(item, TextDelta)]
    end = items[-1]
    assert len(deltas) >= 5, items  # streamed in pieces, not one block
    assert "".join(d.text for d in deltas).strip()
    assert isinstance(end, StreamEnd)
    assert end.finish_reason == "length"  # max_tokens reached the server
    assert end.usage is not None and end.usage.completion_tokens == 24
    assert end.time_to_first_token is not None and end.time_to_first_token > 0


async def _prompt_tokens(server: LocalLlmServer, messages: list[ChatMessage],
                         tools: list[ToolSpec] | None = None) -> int:
    async with _client(server, max_tokens=8) as llm:
        items = [item async for item in llm.stream(messages, tools)]
    assert any(isinstance(item, TextDelta) for item in items), items
    end = items[-1]
    assert isinstance(end, StreamEnd) and end.usage is not None
    return end.usage.prompt_tokens


async def test_tools_and_a_tool_result_reach_the_model(llm_server: LocalLlmServer) -> None:
    """The server renders our tool specs and a tool-call/result history into the prompt.

    (SmolLM2-135M ignores tools when it answers, and this llama-server build
    rejects grammars beside tools and does not enforce ``tool_choice``, so a
    *model-generated* call cannot be provoked here; the decoding of streamed
    ``tool_calls`` fragments is covered by the unit tests.)
    """
    plain = await _prompt_tokens(llm_server, QUESTION)
    with_tools = await _prompt_tokens(llm_server, QUESTION, [ORDER_STATUS])
    assert with_tools > plain + 40  # the JSON schema of order_status is in the prompt

    call = ToolCall("call_1", "order_status", {"order_id": "12345"})
    history = [*QUESTION, ChatMessage("assistant", None, tool_calls=(call,)),
               ChatMessage("tool", json.dumps({"status": "shipped"}), tool_call_id=call.id)]
    with_result = await _prompt_tokens(llm_server, history, [ORDER_STATUS])
    assert with_result > with_tools + 15  # the call and its result were rendered too


async def test_server_killed_mid_stream_is_a_clear_error_then_the_standby_serves(
    llm_server: LocalLlmServer, settings: Settings,
) -> None:
    primary = local_llm_server(settings, 8092)
    primary.start()
    try:
        async with _client(primary, max_tokens=400, max_retries=0) as first, \
                _client(llm_server, max_tokens=12) as standby:
            chain = FallbackChain([first, standby])
            received: list[str] = []
            with pytest.raises(ProviderStreamError, match="broke after") as broke:
                async with aclosing(chain.stream(QUESTION)) as items:
                    async for item in items:
                        if isinstance(item, TextDelta):
                            received.append(item.text)
                            if len(received) == 3:
                                await asyncio.to_thread(primary.kill)
            assert len(received) >= 3  # it did stream before dying
            assert primary.base_url in str(broke.value)

            # The next turn: the dead primary refuses the connection, the standby answers.
            items = [item async for item in chain.stream(QUESTION)]
            end = items[-1]
            assert isinstance(end, StreamEnd) and end.model == standby.name
            with pytest.raises(ProviderConnectionError, match="cannot reach"):
                _ = [item async for item in first.stream(QUESTION)]
    finally:
        primary.stop()
