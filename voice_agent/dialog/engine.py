"""The embedded dialog engine: deterministic intents, slot filling and tenant tools.

The embedded LLM is too small to be trusted with bookings, so the part of a call
that must be right (what the caller wants, which slot is still missing, whether
they said yes) is decided here by patterns over a normalised transcript. The
engine is pure and synchronous apart from the tenant database; a call runs it in
a worker thread, one :class:`DialogState` per call.

Input is what speech recognition produces: lowercase, no punctuation, numbers
as words or digits. :func:`normalize` maps all of that onto one form ("order one
two three four five" and "Order 12345." both carry ``1 2 3 4 5`` / ``12345``), so
the patterns only have to handle digits.
"""

from __future__ import annotations

import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, time, timedelta
from typing import Any, Literal

from voice_agent.dialog import tools as t
from voice_agent.tenants import Tenant
from voice_agent.tenants.data import TenantDB

log = logging.getLogger(__name__)

# --- normalisation -------------------------------------------------------------

_UNITS = {
    w: i for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen "
        "fourteen fifteen sixteen seventeen eighteen nineteen".split()
    )
}
_TENS = {w: 10 * i for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety"
                                          .split(), start=2)}
_ORDINALS = {
    w: i for i, w in enumerate(
        "first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth "
        "thirteenth fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth".split(),
        start=1,
    )
} | {"twentieth": 20, "thirtieth": 30}


def ordinal(n: int) -> str:
    """``3`` → ``3rd``: the form both the normaliser and spoken replies use."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def normalize(text: str) -> str:
    """Lowercase words and digits only; number words become digits, ordinals ``3rd``.

    Colons between digits survive (``15:00``), ``p m``/``p.m.`` become ``pm`` and
    ``o'clock`` becomes ``oclock``. Spoken digit strings stay separate tokens
    (``1 2 3``) so that :func:`digit_run` can tell an order number from a time.
    """
    text = re.sub(r"(?<=\d):(?=\d)", "\0", text.lower())
    text = re.sub(r"['’.]", "", text)
    text = re.sub(r"[^a-z0-9\0]+", " ", text).replace("\0", ":")
    words = text.split()
    out: list[str] = []
    i = 0
    while i < len(words):
        word, nxt = words[i], words[i + 1] if i + 1 < len(words) else ""
        previous_is_number = bool(out) and out[-1].isdigit()
        if word in ("a", "p") and nxt == "m" and previous_is_number:
            out.append(word + "m")
            i += 2
            continue
        if word == "o" and nxt == "clock":
            out.append("oclock")
            i += 2
            continue
        if word in _TENS:
            if nxt in _UNITS and 0 < _UNITS[nxt] < 10:
                out.append(str(_TENS[word] + _UNITS[nxt]))
                i += 2
                continue
            if nxt in _ORDINALS and _ORDINALS[nxt] < 10:
                out.append(ordinal(_TENS[word] + _ORDINALS[nxt]))
                i += 2
                continue
            out.append(str(_TENS[word]))
        elif word in _UNITS:
            out.append(str(_UNITS[word]))
        elif word in _ORDINALS:
            out.append(ordinal(_ORDINALS[word]))
        elif word == "oh" and previous_is_number:
            out.append("0")
        else:
            out.append(word)
        i += 1
    return " ".join(out)


def digit_run(norm: str, min_len: int = 4) -> str | None:
    """The first run of digit tokens with at least ``min_len`` digits, joined.

    "order 1 2 3 4 5" and "order 123 45" both give ``12345``.
    """
    run: list[str] = []
    for token in [*norm.split(), ""]:
        if token.isdigit():
            run.append(token)
            continue
        if len(joined := "".join(run)) >= min_len:
            return joined
        run = []
    return None


_MONTHS = {
    m: i for i, names in enumerate(
        ["january jan", "february feb", "march mar", "april apr", "may", "june jun",
         "july jul", "august aug", "september sept sep", "october oct", "november nov",
         "december dec"], start=1)
    for m in names.split()
}
_WEEKDAYS = "monday tuesday wednesday thursday friday saturday sunday".split()
_MONTH_RE = "|".join(sorted(_MONTHS, key=len, reverse=True))
_DAY_RE = r"(\d{1,2})(?:st|nd|rd|th)?"
_MONTH_DAY = re.compile(rf"\b({_MONTH_RE}) (?:the )?{_DAY_RE}\b(?: (\d{{4}}))?")
_DAY_OF_MONTH = re.compile(rf"\b{_DAY_RE} of ({_MONTH_RE})\b(?: (\d{{4}}))?")
_THE_NTH = re.compile(r"\bthe (\d{1,2})(?:st|nd|rd|th)\b")
_BARE_NTH = re.compile(r"^(?:on )?(?:the )?(\d{1,2})(?:st|nd|rd|th)$")
_WEEKDAY = re.compile(rf"\b({'|'.join(_WEEKDAYS)})\b")


def _safe_date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _month_day(today: date, month: int, day: int, year: str | None) -> date | None:
    """A month and day without a year means the next such date, not one in the past."""
    if year:
        return _safe_date(int(year), month, day)
    found = _safe_date(today.year, month, day)
    if found is not None and found < today:
        found = _safe_date(today.year + 1, month, day)
    return found


def parse_date(norm: str, today: date, *, bare: bool = False) -> date | None:
    """A date in normalised text, resolved against ``today``.

    Understands "today", "tomorrow", "the day after tomorrow", weekdays ("monday",
    "next monday": both the first such day after today), "december 3rd",
    "3rd of december" and "the 5th" (this month, or next month if already past).
    ``bare`` also accepts a lone ordinal ("5th"), for when the caller answers
    "which day?".
    """
    if m := _MONTH_DAY.search(norm):
        return _month_day(today, _MONTHS[m[1]], int(m[2]), m[3])
    if m := _DAY_OF_MONTH.search(norm):
        return _month_day(today, _MONTHS[m[2]], int(m[1]), m[3])
    if (m := _THE_NTH.search(norm)) or (bare and (m := _BARE_NTH.match(norm))):
        day = int(m[1])
        found = _safe_date(today.year, today.month, day)
        if found is None or found < today:
            following = (today.replace(day=1) + timedelta(days=32)).replace(day=1)
            found = _safe_date(following.year, following.month, day)
        return found
    if m := _WEEKDAY.search(norm):
        ahead = (_WEEKDAYS.index(m[1]) - today.weekday() - 1) % 7 + 1
        return today + timedelta(days=ahead)
    if re.search(r"\bday after tomorrow\b", norm):
        return today + timedelta(days=2)
    if re.search(r"\btomorrow\b", norm):
        return today + timedelta(days=1)
    if re.search(r"\btoday\b", norm):
        return today
    return None


_CLOCK = re.compile(r"\b(\d{1,2}):(\d{2})(?: ?(am|pm))?\b")
_MERIDIEM = re.compile(r"\b(\d{1,2})(?: (\d{2}))? ?(am|pm|oclock)\b")
_HALF_PAST = re.compile(r"\b(half|quarter) past (\d{1,2})\b")
_AT_HOUR = re.compile(r"\b(?:at|make it|around|about) (\d{1,2})(?: (\d{2}))?\b")
_HOUR_MINUTE = re.compile(r"\b(\d{1,2}) (\d{2})\b")
_BARE_HOUR = re.compile(r"^(\d{1,2})(?: (\d{2}))?$")


def _clock_time(hour: int, minute: int, meridiem: str | None) -> time | None:
    """Build a time; without am/pm, 1 to 7 o'clock means afternoon (office hours)."""
    if meridiem in ("am", "pm") and not 1 <= hour <= 12:
        return None
    if meridiem == "pm" and hour < 12:
        hour += 12
    elif meridiem == "am" and hour == 12:
        hour = 0
    elif meridiem not in ("am", "pm") and 1 <= hour <= 7:
        hour += 12
    if hour > 23 or minute > 59:
        return None
    return time(hour, minute)


def parse_time(norm: str, *, bare: bool = False) -> time | None:
    """A time of day in normalised text: "3 pm", "3 30 pm", "15:00", "half past 3",
    "at 4", "noon", "3 30" ("three thirty"). ``bare`` also accepts a lone hour ("4"),
    for when the caller answers "what time?".
    """
    if re.search(r"\b(noon|midday)\b", norm):
        return time(12, 0)
    if m := _CLOCK.search(norm):
        return _clock_time(int(m[1]), int(m[2]), m[3])
    if m := _MERIDIEM.search(norm):
        return _clock_time(int(m[1]), int(m[2] or 0), m[3])
    if m := _HALF_PAST.search(norm):
        return _clock_time(int(m[2]), 30 if m[1] == "half" else 15, None)
    if m := _AT_HOUR.search(norm):
        return _clock_time(int(m[1]), int(m[2] or 0), None)
    if m := _HOUR_MINUTE.search(norm):
        return _clock_time(int(m[1]), int(m[2]), None)
    if bare and (m := _BARE_HOUR.match(norm)):
        return _clock_time(int(m[1]), int(m[2] or 0), None)
    return None


# --- speakable output --------------------------------------------------------


def say_date(d: date) -> str:
    return f"{d:%A}, {d:%B} {ordinal(d.day)}"


def say_time(at: time) -> str:
    hour = at.hour % 12 or 12
    minutes = f":{at.minute:02d}" if at.minute else ""
    return f"{hour}{minutes} {'AM' if at.hour < 12 else 'PM'}"


def say_digits(digits: str) -> str:
    """``12345`` → ``1 2 3 4 5``: TTS reads an order number digit by digit, as people do."""
    return " ".join(digits)


# --- redaction -----------------------------------------------------------------

_SPOKEN_DIGIT = r"(?:zero|oh|one|two|three|four|five|six|seven|eight|nine)"
_NAME_STOP = (
    "and|i|im|to|calling|call|from|my|the|a|id|want|would|like|need|please|here|about|"
    "speaking|for|with|at|on|is"
)
_REDACTIONS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(
        r"\b(date of birth|birth ?date|birthday|born on|born in|dob)\b(?:\s+is)?[\s:,]*[^.,;!?]*",
        re.IGNORECASE), r"\1 [dob]"),
    (re.compile(r"\b\d{1,4}[/.-]\d{1,2}[/.-]\d{1,4}\b"), "[date]"),
    (re.compile(rf"\b(?:{_SPOKEN_DIGIT}[\s,-]+){{6,}}{_SPOKEN_DIGIT}\b", re.IGNORECASE),
     "[phone]"),
    (re.compile(
        rf"\b(my name is|my names|my name's|name is|this is|call me|speaking with)"
        rf"((?:\s+(?!(?:{_NAME_STOP})\b)[a-z][a-z'-]*){{1,3}})",
        re.IGNORECASE), r"\1 [name]"),
]
_PHONE_LIKE = re.compile(r"\+?\(?\d[\d\s().-]*\d")


def _phone(match: re.Match[str]) -> str:
    return "[phone]" if sum(c.isdigit() for c in match[0]) >= 7 else match[0]


def redact(text: str) -> str:
    """``text`` with caller identity removed: names, dates of birth, phone numbers.

    Used for every log line the dialog writes (health data rules forbid identity
    data in logs). It errs on the side of removing too much: order numbers
    (5 digits) survive, anything with 7 or more digits does not.
    """
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return _PHONE_LIKE.sub(_phone, text)


# --- state and replies -----------------------------------------------------------


@dataclass(frozen=True)
class ToolCallMade:
    """A tenant tool the engine ran for this turn.

    Names are the ``tools.TOOL_SPECS`` names, plus ``next_appointment`` for the
    look-up that precedes a move or cancel, so traces read the same on both paths.
    """

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DialogReply:
    text: str
    intent: str
    tool_calls_made: tuple[ToolCallMade, ...] = ()
    done: bool = False
    transfer: bool = False


@dataclass(frozen=True)
class Turn:
    speaker: Literal["caller", "agent"]
    text: str
    interrupted: bool = False
    """The caller cut the agent off: ``text`` is only the part that was played."""


@dataclass
class DialogState:
    """One call's conversation: what is being done, what is known, what was said.

    ``awaiting`` names the slot the last question asked for ("date", "confirm"…),
    so a bare answer ("4", "yes", "Riverside") is read as that slot.
    """

    caller_id: str = "anonymous"
    intent: str | None = None
    slots: dict[str, Any] = field(default_factory=dict)
    awaiting: str | None = None
    question: str = ""
    last_reply: str = ""
    history: list[Turn] = field(default_factory=list)

    def ask(self, awaiting: str, question: str) -> str:
        self.awaiting, self.question = awaiting, question
        return question

    def cut_last_reply(self, played: str) -> None:
        """The caller cut off the last reply: history keeps only what was ``played``.

        ``last_reply`` keeps the whole reply, so "repeat" (``#``) says all of it.
        """
        for index in range(len(self.history) - 1, -1, -1):
            if self.history[index].speaker == "agent":
                self.history[index] = Turn("agent", played, interrupted=True)
                return

    def finish(self) -> None:
        """The pending task is done or abandoned: forget its slots."""
        self.intent, self.awaiting, self.question = None, None, ""
        self.slots = {}


@dataclass
class _Context:
    """What a skill needs for one turn; collects the tools it ran."""

    state: DialogState
    norm: str
    today: date
    calls: list[ToolCallMade] = field(default_factory=list)

    def called(self, name: str, **arguments: Any) -> None:
        self.calls.append(ToolCallMade(name, arguments))


_YES = re.compile(
    r"\b(yes|yeah|yep|yup|sure|correct|right|ok|okay|please do|go ahead|do it|book it|"
    r"confirm|absolutely|definitely|sounds good|perfect)\b"
)
_NO = re.compile(r"\b(no|nope|nah|not|dont|wrong|negative)\b")
_REPEAT = re.compile(r"\b(repeat|say that again|say again|come again|pardon|what did you say)\b")
_OPERATOR = re.compile(
    r"\b(operator|human|real person|live person|speak to a person|talk to a person|"
    r"representative|agent|(?:speak|talk) to (?:someone|somebody))\b"
)
_GOODBYE = re.compile(r"\b(bye|goodbye|good bye|thats all|that is all|nothing else|im done)\b")
_THANKS = re.compile(r"\b(thanks|thank you)\b")
_EMERGENCY = re.compile(
    r"\b(chest pains?|cant breathe|can not breathe|cannot breathe|not breathing|"
    r"trouble breathing|difficulty breathing|bleeding (?:heavily|a lot|badly|wont stop)|"
    r"heavy bleeding|unconscious|passed out|unresponsive|not responding|heart attack|stroke|"
    r"overdose|suicide|suicidal|kill myself|end my life|seizure|choking|emergency)\b"
)


def _answer(norm: str) -> tuple[bool, bool]:
    """(yes, no) for a confirmation; "no" wins so "that's not right" is a no."""
    no = bool(_NO.search(norm))
    return (not no and bool(_YES.search(norm))), no


# --- tenant skills ---------------------------------------------------------------


class _Skill(ABC):
    """One tenant's intents and flows. ``respond`` starts an intent; ``resume``
    continues the pending one and returns ``None`` when the turn said nothing
    useful for it, so the engine can look for a new intent instead.
    """

    help = ""
    screens_emergencies = False

    def __init__(self, db: TenantDB) -> None:
        self.db = db

    @abstractmethod
    def intent_of(self, norm: str) -> str | None:
        """The task the utterance asks for, or ``None``."""

    @abstractmethod
    def respond(self, intent: str, ctx: _Context) -> str:
        """Start ``intent``: answer it, or ask for what is missing."""

    @abstractmethod
    def resume(self, ctx: _Context) -> str | None:
        """Continue the pending task, or ``None`` if this turn did not serve it."""


class _TechStore(_Skill):
    help = (
        "I can check an order status, explain our return policy, or check if a product "
        "is in stock. You can also say operator."
    )

    def intent_of(self, norm: str) -> str | None:
        if re.search(r"\b(return|returns|returning|refund|refunds|exchange|send (it )?back)\b",
                     norm):
            return "return_policy"
        if re.search(r"\b(in stock|stock|available|availability|do you (have|sell|carry))\b",
                     norm):
            return "product_availability"
        if re.search(r"\b(order|orders|package|parcel|delivery|shipment|shipping|track|"
                     r"tracking)\b", norm) or digit_run(norm):
            return "order_status"
        return None

    def respond(self, intent: str, ctx: _Context) -> str:
        state = ctx.state
        if intent == "return_policy":
            ctx.called("return_policy")
            return t.return_policy(self.db)
        state.intent = intent
        if intent == "order_status":
            return self._order(ctx) or state.ask(
                "order_number", "Sure. What is your order number? You can say it digit by digit."
            )
        return self._product(ctx) or state.ask(
            "product", "Which product? We carry laptops, phones, headphones and monitors."
        )

    def resume(self, ctx: _Context) -> str | None:
        if ctx.state.intent == "order_status":
            return self._order(ctx)
        return self._product(ctx)

    def _order(self, ctx: _Context) -> str | None:
        number = digit_run(ctx.norm)
        if number is None:
            return None
        ctx.called("order_status", order_number=number)
        try:
            order = t.order_status(self.db, number)
        except t.NotFoundError:
            return ctx.state.ask(
                "order_number",
                f"I couldn't find order {say_digits(number)}. Please check the number and "
                "say it again, or say operator.",
            )
        ctx.state.finish()
        head = f"Order {say_digits(number)}, your {order.item},"
        if order.status == "shipped" and order.delivery_date:
            return f"{head} has shipped and should arrive on {say_date(order.delivery_date)}."
        if order.status == "delivered" and order.delivery_date:
            return f"{head} was delivered on {say_date(order.delivery_date)}."
        return f"{head} is being prepared and will ship soon."

    def _product(self, ctx: _Context) -> str | None:
        try:
            product = t.find_product(self.db, ctx.norm)
        except t.NotFoundError:
            return None
        ctx.called("product_availability", product=product.name)
        ctx.state.finish()
        if product.stock == 0:
            return f"Sorry, we're out of the {product.name} right now."
        return (f"Yes, the {product.name} is in stock: we have {product.stock}, "
                f"at {product.price_cents // 100} dollars.")


_CLINICS = {"Downtown": re.compile(r"\bdown ?town\b"), "Riverside": re.compile(r"\briver ?side\b")}
_APPOINTMENT_QUESTIONS = {
    "date": "What day would you like?",
    "time": "What time would you like?",
    "clinic": "Which clinic: Downtown or Riverside?",
}


class _HealthPlus(_Skill):
    help = (
        "I can book, move or cancel an appointment, or tell you our clinic hours. "
        "You can also say operator."
    )
    screens_emergencies = True

    def intent_of(self, norm: str) -> str | None:
        if re.search(r"\bcancel\b", norm):
            return "cancel_appointment"
        if re.search(r"\b(move|reschedule|change|postpone|push back)\b", norm):
            return "move_appointment"
        if re.search(r"\b(book|schedule|make an appointment|see (a|the) (doctor|nurse))\b", norm):
            return "book_appointment"
        if re.search(
            r"\b(symptoms?|pain|aches?|headache|fever|cough|rash|dizzy|nausea|sick|medicine|"
            r"medications?|pills?|dose|dosage|prescription|ibuprofen|paracetamol|aspirin|"
            r"antibiotics?|diagnos\w*|treat|treatment|infection|should i take|is it serious)\b",
            norm,
        ):
            return "medical_advice"
        if re.search(r"\bappointment\b", norm):
            return "book_appointment"
        if re.search(r"\b(hours|open|opening|close|closing|closed)\b", norm):
            return "clinic_hours"
        return None

    def respond(self, intent: str, ctx: _Context) -> str:
        state = ctx.state
        if intent == "medical_advice":
            return ("I'm sorry, I can't give medical advice. Please speak with a clinician; "
                    "I can book you an appointment if you like.")
        if intent == "clinic_hours":
            ctx.called("clinic_hours")
            wanted = self._clinic(ctx.norm)
            return " ".join(
                f"{c.name} clinic, at {c.address}, is open {c.hours_text}."
                for c in t.clinics(self.db) if wanted in (None, c.name)
            )
        if intent == "book_appointment":
            state.intent = intent
            self._fill(ctx)
            return self._next_step(ctx)
        ctx.called("next_appointment")
        try:
            current = t.next_appointment(self.db, state.caller_id, ctx.today)
        except t.NotFoundError:
            return ("I couldn't find an upcoming appointment for this phone number. "
                    "To make a new one, say book an appointment.")
        state.intent = intent
        state.slots = {"id": current.id, "clinic": current.clinic, "current": current}
        booked = f"{say_date(current.day)} at {say_time(current.time)} at {current.clinic} clinic"
        if intent == "cancel_appointment":
            return state.ask("confirm", f"You have an appointment on {booked}. "
                                        "Shall I cancel it?")
        self._fill(ctx)
        step = self._next_step(ctx)
        return step if state.awaiting == "confirm" else f"Your appointment is on {booked}. {step}"

    def resume(self, ctx: _Context) -> str | None:
        state = ctx.state
        changed = self._fill(ctx) if state.intent != "cancel_appointment" else False
        if changed:
            return ("Okay. " if state.awaiting in ("confirm", "change") else "") + self._next_step(
                ctx)
        if state.awaiting != "confirm":
            return None
        yes, no = _answer(ctx.norm)
        if no:
            if state.intent == "cancel_appointment":
                state.finish()
                return "Okay, I've kept your appointment."
            return state.ask("change", "Okay. What would you like to change: the day, the time "
                                       "or the clinic?")
        return self._execute(ctx) if yes else None

    def _clinic(self, norm: str) -> str | None:
        return next((name for name, pattern in _CLINICS.items() if pattern.search(norm)), None)

    def _fill(self, ctx: _Context) -> bool:
        """Take every appointment slot the caller mentioned; True if any changed."""
        slots, awaiting = ctx.state.slots, ctx.state.awaiting
        found = {
            "date": parse_date(ctx.norm, ctx.today, bare=awaiting == "date"),
            "time": parse_time(ctx.norm, bare=awaiting == "time"),
            "clinic": self._clinic(ctx.norm),
        }
        changed = {k: v for k, v in found.items() if v is not None and slots.get(k) != v}
        slots.update(changed)
        return bool(changed)

    def _next_step(self, ctx: _Context) -> str:
        """Ask for the first missing slot, refuse an impossible one, or ask to confirm."""
        state, slots = ctx.state, ctx.state.slots
        for slot in ("date", "time", "clinic"):
            if slot not in slots:
                return state.ask(slot, _APPOINTMENT_QUESTIONS[slot])
        if slots["date"] < ctx.today:
            del slots["date"]
            return state.ask("date", "That date has already passed. What day would you like?")
        try:
            t.check_slot(self.db, slots["clinic"], slots["date"], slots["time"], slots.get("id"))
        except t.ClinicClosedError as exc:
            del slots["time"]
            hours = next(c.hours_text for c in t.clinics(self.db) if c.name == slots["clinic"])
            return state.ask("time", f"Sorry, {exc}. It's open {hours}. What time would you like?")
        except t.SlotTakenError:
            del slots["time"]
            return state.ask("time", "Sorry, that time is already taken. What other time "
                                     "would you like?")
        when = (f"{say_date(slots['date'])} at {say_time(slots['time'])} "
                f"at {slots['clinic']} clinic")
        if state.intent == "move_appointment":
            return state.ask("confirm", f"So I'll move it to {when}. Shall I go ahead?")
        return state.ask("confirm", f"So that's {when}. Shall I book it?")

    def _execute(self, ctx: _Context) -> str:
        state, slots = ctx.state, ctx.state.slots
        args = {"clinic": slots.get("clinic"), "date": slots.get("date"),
                "time": slots.get("time")}
        try:
            if state.intent == "cancel_appointment":
                ctx.called("cancel_appointment")
                t.cancel_appointment(self.db, slots["id"])
                current = slots["current"]
                state.finish()
                return (f"Done. Your appointment on {say_date(current.day)} at "
                        f"{say_time(current.time)} is cancelled.")
            if state.intent == "move_appointment":
                ctx.called("move_appointment", **args)
                t.move_appointment(self.db, slots["id"], slots["clinic"], slots["date"],
                                   slots["time"])
                done = "Done. Your appointment is now on"
            else:
                ctx.called("book_appointment", **args)
                t.book_appointment(self.db, state.caller_id, slots["clinic"], slots["date"],
                                   slots["time"])
                done = "You're booked for"
        except (t.SlotTakenError, t.ClinicClosedError) as exc:
            slots.pop("time", None)
            return state.ask("time", f"Sorry, {exc}. What other time would you like?")
        state.finish()
        return (f"{done} {say_date(args['date'])} at {say_time(args['time'])} "
                f"at {args['clinic']} clinic.")


class _EduLearn(_Skill):
    help = (
        "I can tell you about our courses and their schedules, or enrol you in a course. "
        "You can also say operator."
    )

    def intent_of(self, norm: str) -> str | None:
        if re.search(r"\b(enrol|enroll|enrolling|enrolment|enrollment|sign up|sign me up|"
                     r"signup|register|registration|join)\b", norm):
            return "enrol"
        if re.search(r"\b(schedule|when|what time|what days|start|starts|starting|timetable)\b",
                     norm):
            return "course_schedule"
        if re.search(r"\b(courses|catalog|catalogue|classes|offer|programs)\b", norm):
            return "list_courses"
        if self._course(norm) is not None:
            return "course_schedule"
        return None

    def respond(self, intent: str, ctx: _Context) -> str:
        if intent == "list_courses":
            ctx.called("list_courses")
            titles = [c.title for c in t.courses(self.db)]
            return (f"We offer {len(titles)} courses: {', '.join(titles[:-1])}, and "
                    f"{titles[-1]}. I can tell you a schedule or enrol you.")
        ctx.state.intent = intent
        return self.resume(ctx) or ctx.state.ask("course", self._which())

    def resume(self, ctx: _Context) -> str | None:
        state = ctx.state
        course = self._course(ctx.norm)
        if course is None and state.awaiting == "course":
            course = self._picked(ctx.norm)
        if course is not None and course != state.slots.get("course"):
            return self._with_course(course, ctx)
        if state.awaiting != "confirm":
            return None
        yes, no = _answer(ctx.norm)
        if no:
            state.finish()
            return "Okay, I won't enrol you. Anything else?"
        if not yes:
            return None
        chosen = state.slots["course"]
        ctx.called("enrol", course=chosen.code)
        try:
            t.enrol(self.db, state.caller_id, chosen.code)
        except t.ToolError as exc:
            state.finish()
            return f"Sorry, {exc}."
        state.finish()
        return f"You're enrolled in {chosen.title}. It starts {say_date(chosen.start_date)}."

    def _course(self, norm: str) -> t.Course | None:
        try:
            return t.find_course(self.db, norm)
        except t.NotFoundError:
            return None

    def _picked(self, norm: str) -> t.Course | None:
        """"The first one", "the last", or key 1: a pick from the list :meth:`_which` read out.

        Course names are where speech recognition fails most; a position (or a key
        press, which arrives here as the digit) is more robust."""
        courses = t.courses(self.db)
        if re.search(r"\blast\b", norm):
            return courses[-1]
        match = re.fullmatch(r"(\d)", norm) or re.search(r"\b(\d+)(?:st|nd|rd|th)\b", norm)
        if match and 1 <= int(match.group(1)) <= len(courses):
            return courses[int(match.group(1)) - 1]
        return None

    def _which(self) -> str:
        titles = [c.title for c in t.courses(self.db)]
        return f"Which course: {', '.join(titles[:-1])}, or {titles[-1]}?"

    def _with_course(self, course: t.Course, ctx: _Context) -> str:
        state = ctx.state
        summary = f"{course.title} runs {course.schedule}, starting {say_date(course.start_date)}."
        if state.intent == "course_schedule":
            ctx.called("list_courses")
            state.finish()
            return f"{summary} There are {course.seats_left} seats left."
        if course.seats_left == 0:
            open_titles = [c.title for c in t.courses(self.db) if c.seats_left]
            return state.ask("course", f"Sorry, {course.title} is full. "
                                       f"{' and '.join(open_titles)} still have seats. "
                                       "Would you like one of those?")
        state.slots["course"] = course
        return state.ask("confirm", f"{summary} Shall I enrol you?")


_SKILLS: dict[str, type[_Skill]] = {
    "techstore": _TechStore, "healthplus": _HealthPlus, "edulearn": _EduLearn,
}


class DialogEngine:
    """Answers one caller turn at a time for one tenant; state lives in :class:`DialogState`.

    ``today`` is injectable so relative dates ("tomorrow") are testable.
    """

    def __init__(
        self, tenant: Tenant, db: TenantDB, today: Callable[[], date] = date.today
    ) -> None:
        try:
            self._skill = _SKILLS[tenant.name](db)
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
        ctx = _Context(state, normalize(raw), self._today())
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

    def _converse(self, ctx: _Context) -> tuple[str, str]:
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
