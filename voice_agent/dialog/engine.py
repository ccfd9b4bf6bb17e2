"""The embedded dialog engine: deterministic intents, slot filling and tenant tools.

The embedded LLM is too small to be trusted with bookings, so the part of a call
that must be right (what the caller wants, which slot is still missing, whether
they said yes) is decided here by patterns over a normalised transcript. The
engine is pure and synchronous apart from the tenant database; a call runs it in
a worker thread, one :class:`DialogState` per call.

The module holds what every tenant shares (repeat, operator, goodbye, thanks,
the emergency screen) and dispatches the rest to the tenant's skill
(:mod:`~voice_agent.dialog.skills`); parsing lives in
:mod:`~voice_agent.dialog.text` and :mod:`~voice_agent.dialog.dates`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import date

from voice_agent.dialog.redact import redact
from voice_agent.dialog.skills import SKILLS
from voice_agent.dialog.state import DialogReply, DialogState, Turn, TurnContext
from voice_agent.dialog.text import normalize
from voice_agent.dialog.turn_end import TurnEnd, turn_end
from voice_agent.tenants import Tenant
from voice_agent.tenants.data import TenantDB

log = logging.getLogger(__name__)


_REPEAT = re.compile(r"\b(repeat|say that again|say again|come again|pardon|what did you say)\b")
_OPERATOR = re.compile(
    r"\b(operator|human|real person|live person|speak to a person|talk to a person|"
    r"representative|agent|(?:speak|talk) to (?:someone|somebody))\b"
)
_GOODBYE = re.compile(r"\b(bye|goodbye|good bye|thats all|that is all|nothing else|im done)\b")
_THANKS = re.compile(r"\b(thanks|thank you)\b")
#: The requests every tenant understands, in the order :meth:`DialogEngine.reply` tries them.
_SHARED = (("repeat", _REPEAT), ("operator", _OPERATOR), ("goodbye", _GOODBYE),
           ("thanks", _THANKS))


def _shared_intent(norm: str) -> str | None:
    """The shared request ``norm`` makes, if any (the same patterns :meth:`reply` acts on)."""
    return next((name for name, pattern in _SHARED if pattern.search(norm)), None)


_EMERGENCY = re.compile(
    r"\b(chest pains?|cant breathe|can not breathe|cannot breathe|not breathing|"
    r"trouble breathing|difficulty breathing|bleeding (?:heavily|a lot|badly|wont stop)|"
    r"heavy bleeding|unconscious|passed out|unresponsive|not responding|heart attack|stroke|"
    r"overdose|suicide|suicidal|kill myself|end my life|seizure|choking|emergency)\b"
)


#: Times a silent caller is asked again before the agent says goodbye (both loops).
SILENCE_REPROMPTS = 2


class DialogEngine:
    """Answers one caller turn at a time for one tenant; state lives in :class:`DialogState`.

    ``today`` is injectable so relative dates ("tomorrow") are testable.
    """

    def __init__(
        self, tenant: Tenant, db: TenantDB, today: Callable[[], date] = date.today
    ) -> None:
        try:
            self._skill = SKILLS[tenant.name](db)
        except KeyError:
            raise ValueError(f"no dialog skill for tenant {tenant.name!r}") from None
        self.tenant = tenant
        self._today = today

    def greet(self, state: DialogState) -> DialogReply:
        text = self.tenant.greeting or (
            f"Hello, this is {self.tenant.display_name}. {self._skill.help}"
        )
        return self._record(state, None, DialogReply(text, "greeting"))

    def reply(self, state: DialogState, user_text: str) -> DialogReply:
        """The agent's answer to one caller utterance (or DTMF: ``#`` repeats, ``0`` transfers)."""
        raw = user_text.strip()
        state.silences = 0
        ctx = TurnContext(state, normalize(raw), self._today())
        if self._skill.screens_emergencies and _EMERGENCY.search(ctx.norm):
            state.finish()
            result = DialogReply(
                "This may be an emergency. Please hang up now and dial 911, or 112, "
                "for emergency services immediately.", "emergency")
        elif raw == "#" or _REPEAT.search(ctx.norm):
            result = DialogReply(state.last_reply or self._skill.help, "repeat")
        elif raw == "0" or _OPERATOR.search(ctx.norm):
            result = DialogReply("Okay, connecting you to a person now.", "operator",
                                 transfer=True)
        elif _GOODBYE.search(ctx.norm):
            result = DialogReply(f"Thank you for calling {self.tenant.display_name}. Goodbye.",
                                 "goodbye", done=True)
        else:
            text, intent = self._converse(ctx)
            result = DialogReply(text, intent, tuple(ctx.calls))
        return self._record(state, raw, result)

    def silence(self, state: DialogState) -> DialogReply:
        """The caller said nothing for a while: ask again, and after
        :data:`SILENCE_REPROMPTS` questions say goodbye (a dead line is not held).

        What "a while" is belongs to the loop: seconds without speech in the
        streaming agent, empty recordings in the AGI one.
        """
        state.silences += 1
        if state.silences > SILENCE_REPROMPTS:
            result = DialogReply("I haven't heard anything, so I'll end the call now. "
                                 f"Thank you for calling {self.tenant.display_name}. Goodbye.",
                                 "silence", done=True)
        else:
            result = DialogReply(f"Are you still there? {state.question or self._skill.help}",
                                 "silence")
        return self._record(state, None, result)

    def turn_end(self, state: DialogState, text: str) -> TurnEnd:
        """Whether ``text`` (a transcript of the caller's open turn) already ends it.

        Side-effect free, unlike :meth:`reply`: the caller may still go on.
        """
        def intent_of(norm: str) -> str | None:
            if self._skill.screens_emergencies and _EMERGENCY.search(norm):
                return "emergency"
            return _shared_intent(norm) or self._skill.intent_of(norm)

        return turn_end(state, normalize(text), intent_of)

    def _converse(self, ctx: TurnContext) -> tuple[str, str]:
        state, skill = ctx.state, self._skill
        if state.intent is not None:
            pending = state.intent
            if (text := skill.resume(ctx)) is not None:
                return text, pending
        intent = skill.intent_of(ctx.norm)
        if intent is not None and intent != state.intent:
            state.finish()
            return skill.respond(intent, ctx), intent
        if _THANKS.search(ctx.norm):
            return "You're welcome. Is there anything else I can help with?", "thanks"
        if state.intent is not None:
            return f"Sorry, I didn't catch that. {state.question}", state.intent
        return f"Sorry, I didn't understand. {skill.help}", "unclear"

    def _record(self, state: DialogState, said: str | None, result: DialogReply) -> DialogReply:
        if said is not None:
            state.history.append(Turn("caller", said))
        state.history.append(Turn("agent", result.text))
        state.last_reply = result.text
        # Only what the caller said can carry identity data: replies are templates
        # filled from the tenant database, which never holds names or birth dates.
        log.info("%s turn caller=%s intent=%s said=%r reply=%r", self.tenant.name,
                 redact(state.caller_id), result.intent, redact(said or ""), result.text)
        return result
