"""LLM-driven replies: streamed pieces, tool calls on the real tenant tools, failures."""

from __future__ import annotations

import json
from datetime import date

from tests.fakes import (
    Reply,
    ScriptedLlmServer,
    finish_chunk,
    role_chunk,
    text_chunk,
    tool_chunk,
)
from tests.helpers import closed_port_url
from voice_agent.dialog.engine import DialogEngine
from voice_agent.dialog.llm_dialog import APOLOGY, LlmDialog
from voice_agent.dialog.state import DialogState, Turn
from voice_agent.providers.llm import OpenAiChat
from voice_agent.tenants import TenantRegistry
from voice_agent.tenants.data import TenantDB

TODAY = date(2026, 11, 29)


def dialog(db: TenantDB, url: str, tenant: str = "techstore") -> LlmDialog:
    t = TenantRegistry.load().resolve([tenant])
    llm = OpenAiChat(url, "m", max_retries=0, retry_backoff=0.0)
    return LlmDialog(t, db, llm, DialogEngine(t, db), today=lambda: TODAY)


async def pieces(d: LlmDialog, state: DialogState, said: str) -> list[str]:
    return [piece async for piece in d.reply(state, said)]


def text_reply(*texts: str) -> Reply:
    return Reply(events=[role_chunk(), *map(text_chunk, texts), finish_chunk("stop")])


async def test_text_streams_as_speakable_pieces_and_lands_in_the_history(
    db: TenantDB, llm_server: ScriptedLlmServer,
) -> None:
    llm_server.replies = [text_reply("Sure, let me ", "check that for you. ", "One moment.")]
    d, state = dialog(db, llm_server.base_url), DialogState(caller_id="+1555")
    state.history = [Turn("agent", "Hi, this is TechStore. I can check an", interrupted=True)]
    assert await pieces(d, state, "where is my order") == [
        "Sure, let me check that for you.", "One moment."]
    assert state.history[-2:] == [Turn("caller", "where is my order"),
                                  Turn("agent", "Sure, let me check that for you. One moment.")]
    [request] = llm_server.requests
    messages = request.body["messages"]
    assert messages[0]["role"] == "system" and "TechStore" in messages[0]["content"]
    assert "interrupted" in messages[1]["content"]  # the model knows it was cut off
    assert messages[-1] == {"role": "user", "content": "where is my order"}
    assert {t["function"]["name"] for t in request.body["tools"]} == {
        "order_status", "return_policy", "product_availability"}


async def test_a_tool_call_runs_the_tenant_tool_and_the_model_answers_from_it(
    db: TenantDB, llm_server: ScriptedLlmServer,
) -> None:
    llm_server.replies = [
        Reply(events=[role_chunk(), tool_chunk(0, '{"order_number": "12345"}', id="c1",
                                               name="order_status"), finish_chunk("tool_calls")]),
        text_reply("It shipped on Monday."),
    ]
    d, state = dialog(db, llm_server.base_url), DialogState(caller_id="+1555")
    assert await pieces(d, state, "where is order 12345") == ["It shipped on Monday."]
    follow_up = llm_server.requests[1].body["messages"]
    assert follow_up[-2]["tool_calls"][0]["function"]["name"] == "order_status"
    result = json.loads(follow_up[-1]["content"])
    assert follow_up[-1]["tool_call_id"] == "c1" and result["status"] == "shipped"


async def test_a_dead_server_hands_the_turn_to_the_embedded_engine(db: TenantDB) -> None:
    d, state = dialog(db, closed_port_url()), DialogState(caller_id="+1555")
    [answer] = await pieces(d, state, "where is my order 1 2 3 4 5")
    assert "shipped" in answer  # the engine's order status, not silence
    assert state.last_reply == answer


async def test_a_stream_that_breaks_mid_reply_ends_with_an_apology(
    db: TenantDB, llm_server: ScriptedLlmServer,
) -> None:
    llm_server.replies = [Reply(events=[role_chunk(), text_chunk("Your order is on its way. "),
                                    text_chunk("It should")], complete=False)]
    d, state = dialog(db, llm_server.base_url), DialogState(caller_id="+1555")
    assert await pieces(d, state, "where is my order") == ["Your order is on its way.", APOLOGY]
    assert state.last_reply.endswith(APOLOGY)
