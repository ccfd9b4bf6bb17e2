"""The embedded dialog engine: deterministic intents, slot filling and tenant tools.

The embedded LLM is too small to be trusted with bookings, so the part of a call
that must be right (what the caller wants, which slot is still missing, whether
they said yes) is decided here by patterns over a normalised transcript. The
engine is pure and synchronous apart from the tenant database; a call runs it in
a worker thread, one :class:`DialogState` per call.

The module holds what every tenant shares (repeat, operator, goodbye, thanks,
the tenant's emergency screen and business hours) and hands the rest to the
tenant's intents (:mod:`~voice_agent.dialog.rules`, read from its files);
parsing lives in :mod:`~voice_agent.dialog.text` and
:mod:`~voice_agent.dialog.dates`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import date, datetime
from zoneinfo import ZoneInfo

from voice_agent.dialog.redact import redact
from voice_agent.dialog.rules import Rules, phrases
from voice_agent.dialog.state import DialogReply, DialogState, Turn, TurnContext
from voice_agent.dialog.text import normalize
from voice_agent.dialog.turn_end import TurnEnd, turn_end
from voice_agent.tenants import Tenant
from voice_agent.tenants.data import TenantDatabases
from voice_agent.tenants.spec import Hours

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


_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def is_open(hours: Hours, now: datetime) -> bool:
    """Whether ``now`` falls in the opening hours (``now`` naive = UTC)."""
    aware = now if now.tzinfo else now.replace(tzinfo=ZoneInfo("UTC"))
    local = aware.astimezone(ZoneInfo(hours.timezone))
    span = hours.open.get(_DAYS[local.weekday()])  # type: ignore[call-overload]
    if span is None:
        return False
    opens, closes = span.split("-")
    return opens <= f"{local:%H:%M}" < closes


#: Times a silent caller is asked again before the agent says goodbye (both loops).
SILENCE_REPROMPTS = 2


class DialogEngine:
    """Answers one caller turn at a time for one tenant; state lives in :class:`DialogState`.

    ``today`` is injectable so relative dates ("tomorrow") are testable.
    """

    def __init__(
        self, tenant: Tenant, databases: TenantDatabases,
        today: Callable[[], date] = date.today,
        now: Callable[[], datetime] = lambda: datetime.now().astimezone(),
        log_turns: bool = True,
    ) -> None:
        self.db = databases.of(tenant.name, tenant.data_sql)
        self.rules = Rules(tenant, self.db)
        self.tenant = tenant
        self._today = today
        self._now = now
        self._log_turns = log_turns  # off for rehearsals: they are not calls
        self._emergency = phrases(tenant.emergency.phrases) if tenant.emergency else None
        self.help = tenant.help or " ".join(
            ["I can help with:", ", ".join(n.replace("_", " ") for n in tenant.intents) + "."]
            if tenant.intents else []) + " You can also say operator."

    def greet(self, state: DialogState) -> DialogReply:
        text = self.tenant.greeting or (
            f"Hello, this is {self.tenant.display_name}. {self.help}"
        )
        return self.record(state, None, DialogReply(text, "greeting"))

    def screen(self, norm: str) -> DialogReply | None:
        """The emergency instruction if the normalised words mention an emergency.

        Runs before any other reading of a turn, in every mode (the LLM dialog
        calls it before the model sees the words)."""
        emergency = self.tenant.emergency
        if emergency is None or self._emergency is None or not self._emergency.search(norm):
            return None
        return DialogReply(emergency.say, "emergency")

    def goodbye(self) -> DialogReply:
        return DialogReply(f"Thank you for calling {self.tenant.display_name}. Goodbye.",
                           "goodbye", done=True)

    def operator(self) -> DialogReply:
        """Transfer to a person, or say the tenant's closed message outside its hours."""
        hours = self.tenant.hours
        if hours is not None and not is_open(hours, self._now()):
            return DialogReply(hours.closed, "operator_closed")
        return DialogReply("Okay, connecting you to a person now.", "operator", transfer=True)

    def reply(self, state: DialogState, user_text: str) -> DialogReply:
        """The agent's answer to one caller utterance (or DTMF: ``#`` repeats, ``0`` transfers)."""
        raw = user_text.strip()
        state.silences = 0
        ctx = TurnContext(state, normalize(raw), self._today(), raw=raw)
        if (emergency := self.screen(ctx.norm)) is not None:
            state.finish()
            result = emergency
        elif raw == "#" or _REPEAT.search(ctx.norm):
            result = DialogReply(state.last_reply or self.help, "repeat")
        elif raw == "0" or _OPERATOR.search(ctx.norm):
            result = self.operator()
        elif _GOODBYE.search(ctx.norm):
            result = self.goodbye()
        else:
            text, intent = self._converse(ctx)
            result = DialogReply(text, intent, tuple(ctx.calls))
        return self.record(state, raw, result)

    def silence(self, state: DialogState) -> DialogReply:
        """The caller said nothing for a while: ask again, and after
        :data:`SILENCE_REPROMPTS` questions say goodbye (a dead line is not held).

        What "a while" is belongs to the loop: seconds without speech in the
        streaming agent, empty recordings in the AGI one.
        """
        state.silences += 1
        if state.silences > SILENCE_REPROMPTS:
            result = DialogReply("I haven't heard anything, so I'll end the call now. "
                                 f"{self.goodbye().text}", "silence", done=True)
        else:
            result = DialogReply(f"Are you still there? {state.question or self.help}",
                                 "silence")
        return self.record(state, None, result)

    def turn_end(self, state: DialogState, text: str) -> TurnEnd:
        """Whether ``text`` (a transcript of the caller's open turn) already ends it.

        Side-effect free, unlike :meth:`reply`: the caller may still go on.
        """
        norm = normalize(text)
        intent = ("emergency" if self.screen(norm) is not None else
                  _shared_intent(norm) or self.rules.intent_of(norm, self._today()))
        return turn_end(state, norm, intent,
                        number_length=self.rules.number_wanted(state, intent))

    def _converse(self, ctx: TurnContext) -> tuple[str, str]:
        state, rules = ctx.state, self.rules
        if state.intent is not None:
            pending = state.intent
            if (text := rules.resume(ctx)) is not None:
                return text, pending
        intent = rules.intent_of(ctx.norm, ctx.today)
        if intent is not None and intent != state.intent:
            state.finish()
            return rules.respond(intent, ctx), intent
        if _THANKS.search(ctx.norm):
            return "You're welcome. Is there anything else I can help with?", "thanks"
        if state.intent is not None:
            return f"Sorry, I didn't catch that. {state.question}", state.intent
        return f"Sorry, I didn't understand. {self.help}", "unclear"

    def record(self, state: DialogState, said: str | None, result: DialogReply) -> DialogReply:
        if said is not None:
            state.history.append(Turn("caller", said))
        state.history.append(Turn("agent", result.text))
        state.last_reply = result.text
        # Only what the caller said can carry identity data: replies are templates
        # filled from the tenant database, which never holds names or birth dates.
        if self._log_turns:
            log.info("%s turn caller=%s intent=%s said=%r reply=%r", self.tenant.name,
                     redact(state.caller_id), result.intent, redact(said or ""), result.text)
        return result
