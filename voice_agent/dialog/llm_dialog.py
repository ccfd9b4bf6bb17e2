"""Replies from a capable LLM on a server, with the tenant tools as its function calls.

The embedded :class:`~voice_agent.dialog.engine.DialogEngine` is deterministic and
always there; a server model (vLLM, Ollama, llama.cpp, OpenAI) talks more
freely. When ``VOICE_AGENT_LLM_URL`` is set the model gets the words and the
tools, and three guarantees stay:

* **The same business rules.** Tool calls run :func:`~voice_agent.dialog.tools.run_tool`,
  the functions the engine uses: the model cannot book a closed clinic or a
  full course any more than the engine can.
* **No silence when the server fails.** A failure before the first word
  (server down, overloaded, timed out) hands this turn to the embedded engine;
  the caller hears its answer instead of nothing. A failure after words were
  spoken cannot be continued by another model, so the reply ends with a short
  apology.
* **Speech starts at the first clause.** Text streams through the
  :class:`~voice_agent.dialog.chunker.SentenceChunker`; TTS starts on the first
  clause while the model is still writing.

The conversation history sent to the model is :attr:`DialogState.history`, in
which an interrupted agent turn holds only what the caller heard, marked as
cut off, so the model knows what was and was not said.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from datetime import date

from voice_agent.dialog.chunker import SentenceChunker
from voice_agent.dialog.engine import DialogEngine
from voice_agent.dialog.state import DialogState, Turn
from voice_agent.dialog.tools import TOOL_SPECS, run_tool
from voice_agent.providers.errors import ProviderError, report_failure
from voice_agent.providers.llm import ChatMessage, LanguageModel, TextDelta, ToolCall
from voice_agent.tenants import Tenant
from voice_agent.tenants.data import TenantDB

log = logging.getLogger(__name__)

APOLOGY = "Sorry, I lost my train of thought. Could you say that again?"


class LlmDialog:
    """One tenant's LLM-driven replies; shared by its calls (per-call state is the
    :class:`DialogState` passed in)."""

    def __init__(self, tenant: Tenant, db: TenantDB, llm: LanguageModel,
                 engine: DialogEngine, *, max_tool_rounds: int = 3,
                 today: Callable[[], date] = date.today) -> None:
        self.tenant = tenant
        self.db = db
        self.llm = llm
        self.engine = engine
        self.max_tool_rounds = max_tool_rounds
        self.today = today
        self.tools = TOOL_SPECS.get(tenant.name, ())
        #: The tools the last reply called, "name -> ok|error" (for the call record).
        self.tools_called: list[str] = []

    def system_prompt(self) -> str:
        rules = "".join(f"\n- {rule}" for rule in self.tenant.rules)
        return (f"{self.tenant.persona or f'The phone agent of {self.tenant.display_name}.'}\n"
                f"You are on a phone call: answer in short spoken sentences, no lists or "
                f"markup. Use the tools for facts and bookings; never invent them. "
                f"Today is {self.today():%A, %B %d, %Y}.{rules}")

    def messages(self, state: DialogState, said: str) -> list[ChatMessage]:
        history = [ChatMessage("system", self.system_prompt())]
        for turn in state.history:
            if turn.speaker == "caller":
                history.append(ChatMessage("user", turn.text))
            else:
                cut = " [the caller interrupted here; the rest was not said]"
                history.append(ChatMessage("assistant", turn.text + (cut if turn.interrupted
                                                                        else "")))
        return [*history, ChatMessage("user", said)]

    async def reply(self, state: DialogState, said: str) -> AsyncIterator[str]:
        """Speakable pieces of the reply to ``said``, as the model writes them.

        Updates ``state`` (history, last reply) once the reply is complete.
        """
        messages = self.messages(state, said)
        self.tools_called = []
        spoken: list[str] = []
        try:
            for _ in range(self.max_tool_rounds + 1):
                chunker = SentenceChunker()
                calls: list[ToolCall] = []
                async with aclosing(self.llm.stream(messages, self.tools)) as items:
                    async for item in items:
                        if isinstance(item, TextDelta):
                            for piece in chunker.feed(item.text):
                                spoken.append(piece)
                                yield piece
                        elif isinstance(item, ToolCall):
                            calls.append(item)
                for piece in chunker.flush():
                    spoken.append(piece)
                    yield piece
                if not calls:
                    break
                messages.append(ChatMessage("assistant", None, tool_calls=tuple(calls)))
                for call in calls:
                    result = await asyncio.to_thread(run_tool, self.db, call.name,
                                                     call.arguments, state.caller_id,
                                                     self.today())
                    outcome = "error" if "error" in result else "ok"
                    log.info("%s tool %s(%s) -> %s", self.tenant.name, call.name,
                             sorted(call.arguments), outcome)
                    self.tools_called.append(f"{call.name} -> {outcome}")
                    messages.append(ChatMessage("tool", json.dumps(result),
                                                tool_call_id=call.id))
        except ProviderError as exc:
            if not spoken:
                log.warning("%s: LLM failed before replying (%s); the embedded dialog "
                            "engine answers this turn", self.tenant.name, exc)
                report_failure("llm", self.llm.name, exc, handled_by="rule engine")
                fallback = await asyncio.to_thread(self.engine.reply, state, said)
                yield fallback.text
                return
            log.warning("%s: LLM failed mid-reply: %s", self.tenant.name, exc)
            report_failure("llm", self.llm.name, exc, handled_by="apology")
            spoken.append(APOLOGY)
            yield APOLOGY
        text = " ".join(spoken)
        state.history += [Turn("caller", said), Turn("agent", text)]
        state.last_reply = text
