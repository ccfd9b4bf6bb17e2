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
from voice_agent.tenants.data import TenantDatabases as TenantDB

TODAY = date(2026, 11, 29)


def dialog(db: TenantDB, url: str, tenant: str = "techstore") -> LlmDialog:
    t = TenantRegistry.load().resolve([tenant])
    llm = OpenAiChat(url, "m", max_retries=0, retry_backoff=0.0)
    return LlmDialog(t, llm, DialogEngine(t, db), today=lambda: TODAY)


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
        "order_status", "return_policy", "product_availability", "transfer_to_operator",
        "end_call"}


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
    assert follow_up[-1]["tool_call_id"] == "c1" and result["order"]["status"] == "shipped"
    assert "has shipped" in result["result"]  # the tenant's own reply template
    assert d.tools_called == ["order_status -> ok"]


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


def tool_reply(name: str, arguments: str = "{}", call_id: str = "c1") -> Reply:
    return Reply(events=[role_chunk(), tool_chunk(0, arguments, id=call_id, name=name),
                         finish_chunk("tool_calls")])


async def test_the_emergency_screen_answers_before_any_model_sees_the_words(
    db: TenantDB, llm_server: ScriptedLlmServer,
) -> None:
    d, state = dialog(db, llm_server.base_url, "healthplus"), DialogState(caller_id="+1555")
    [answer] = await pieces(d, state, "my husband can't breathe")
    assert "911" in answer and llm_server.requests == []
    assert state.last_reply == answer


async def test_transfer_and_end_call_tools_set_the_hand_off_flags(
    db: TenantDB, llm_server: ScriptedLlmServer,
) -> None:
    llm_server.replies = [tool_reply("transfer_to_operator"), text_reply("One moment.")]
    d, state = dialog(db, llm_server.base_url), DialogState(caller_id="+1555")
    assert await pieces(d, state, "a person please") == ["One moment."]
    assert (d.transfer, d.done) == (True, False)
    # a model that hands off without a word: the engine's words are said, not silence
    llm_server.replies = [tool_reply("end_call"), Reply(events=[role_chunk(),
                                                                finish_chunk("stop")])]
    [goodbye] = await pieces(d, state, "that's all")
    assert "Goodbye" in goodbye and (d.transfer, d.done) == (False, True)


async def test_a_failed_model_turn_keeps_the_engines_transfer_flag(db: TenantDB) -> None:
    d, state = dialog(db, closed_port_url()), DialogState(caller_id="+1555")
    [answer] = await pieces(d, state, "operator please")
    assert "connecting you" in answer and d.transfer


async def test_a_turn_that_uses_up_its_tool_rounds_apologises(
    db: TenantDB, llm_server: ScriptedLlmServer,
) -> None:
    llm_server.replies = [tool_reply("return_policy", call_id=f"c{i}") for i in range(4)]
    d, state = dialog(db, llm_server.base_url), DialogState(caller_id="+1555")
    assert await pieces(d, state, "returns?") == [APOLOGY]
    assert len(llm_server.requests) == d.max_tool_rounds + 1
