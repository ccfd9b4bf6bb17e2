"""Replies from a capable LLM on a server, with the tenant tools as its function calls.

The embedded :class:`~voice_agent.dialog.engine.DialogEngine` is deterministic and
always there; a server model (vLLM, Ollama, llama.cpp, OpenAI) talks more
freely. When ``VOICE_AGENT_LLM_URL`` is set the model gets the words and the
tenant's intents as tools, and these guarantees stay:

* **The same business rules.** Tool calls run :func:`~voice_agent.dialog.tools.run_tool`,
  the tenant's own checks and actions: the model cannot do what the rule
  engine would refuse.
* **The same safety.** The tenant's emergency screen reads every turn before
  the model sees it.
* **The same hand-off.** ``transfer_to_operator`` and ``end_call`` set the
  same :attr:`LlmDialog.transfer` and :attr:`LlmDialog.done` flags the rule
  engine's replies carry.
* **No silence when the server fails.** A failure before the first word
  (server down, overloaded, timed out) hands this turn to the embedded engine,
  flags included; the caller hears its answer instead of nothing. A failure
  after words were spoken cannot be continued by another model, so the reply
  ends with a short apology, as does a turn that runs out of tool rounds.
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
from voice_agent.dialog.state import DialogReply, DialogState, Turn
from voice_agent.dialog.text import normalize
from voice_agent.dialog.tools import END_CALL, TRANSFER, run_tool, tool_specs
from voice_agent.providers.errors import ProviderError, report_failure
from voice_agent.providers.llm import ChatMessage, LanguageModel, TextDelta, ToolCall
from voice_agent.tenants import Tenant

log = logging.getLogger(__name__)

APOLOGY = "Sorry, I lost my train of thought. Could you say that again?"


class LlmDialog:
    """One tenant's LLM-driven replies; shared by its calls (per-call state is the
    :class:`DialogState` passed in)."""

    def __init__(self, tenant: Tenant, llm: LanguageModel, engine: DialogEngine, *,
                 max_tool_rounds: int = 3, today: Callable[[], date] = date.today) -> None:
        self.tenant = tenant
        self.llm = llm
        self.engine = engine
        self.max_tool_rounds = max_tool_rounds
        self.today = today
        self.tools = tool_specs(engine.rules, today=today())
        #: The tools the last reply called, "name -> ok|error" (for the call record).
        self.tools_called: list[str] = []
        #: The last reply handed the caller to a person / ended the call.
        self.transfer = False
        self.done = False

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
        self.tools_called, self.transfer, self.done = [], False, False
        if (emergency := self.engine.screen(normalize(said))) is not None:
            # The screen runs before any model sees the words.
            state.finish()
            yield self._took(self.engine.record(state, said, emergency))
            return
        messages = self.messages(state, said)
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
                if not calls or self.transfer or self.done:
                    break
                messages.append(ChatMessage("assistant", None, tool_calls=tuple(calls)))
                for call in calls:
                    result = await asyncio.to_thread(self._run, call, state)
                    outcome = "error" if "error" in result else "ok"
                    log.info("%s tool %s(%s) -> %s", self.tenant.name, call.name,
                             sorted(call.arguments), outcome)
                    self.tools_called.append(f"{call.name} -> {outcome}")
                    messages.append(ChatMessage("tool", json.dumps(result),
                                                tool_call_id=call.id))
            else:
                if not spoken:  # every round asked for tools: never leave the line silent
                    log.warning("%s: LLM used %d tool rounds without replying",
                                self.tenant.name, self.max_tool_rounds)
                    spoken.append(APOLOGY)
                    yield APOLOGY
        except ProviderError as exc:
            if not spoken:
                log.warning("%s: LLM failed before replying (%s); the embedded dialog "
                            "engine answers this turn", self.tenant.name, exc)
                report_failure("llm", self.llm.name, exc, handled_by="rule engine")
                fallback = await asyncio.to_thread(self.engine.reply, state, said)
                yield self._took(fallback)
                return
            log.warning("%s: LLM failed mid-reply: %s", self.tenant.name, exc)
            report_failure("llm", self.llm.name, exc, handled_by="apology")
            spoken.append(APOLOGY)
            yield APOLOGY
        if not spoken and (self.transfer or self.done):  # a hand-off is never silent
            closing = self.engine.operator() if self.transfer else self.engine.goodbye()
            spoken.append(closing.text)
            yield closing.text
        text = " ".join(spoken)
        state.history += [Turn("caller", said), Turn("agent", text)]
        state.last_reply = text

    def _took(self, reply: DialogReply) -> str:
        """A rule-engine reply spoken for this turn: its flags become the turn's."""
        self.transfer, self.done = reply.transfer, reply.done
        return reply.text

    def _run(self, call: ToolCall, state: DialogState) -> dict[str, object]:
        """One function call: the hand-off tools set flags, the rest run the tenant's rules."""
        if call.name == TRANSFER.name:
            reply = self.engine.operator()
            self.transfer = reply.transfer
            return {"result": reply.text if not reply.transfer else "transferring"}
        if call.name == END_CALL.name:
            self.done = True
            return {"result": "the call ends after your goodbye"}
        return run_tool(self.engine.rules, call.name, call.arguments, state.caller_id,
                        self.today())
