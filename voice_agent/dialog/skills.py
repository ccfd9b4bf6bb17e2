"""The three seed tenants' intents and flows (techstore, healthplus, edulearn).

Each skill reads the normalised transcript and the call's state, calls the
tenant tools and answers with a template; the engine handles what every tenant
shares (repeat, operator, goodbye, emergencies).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod

from voice_agent.dialog import tools as t
from voice_agent.dialog.dates import parse_date, parse_time
from voice_agent.dialog.state import TurnContext, yes_or_no
from voice_agent.dialog.text import digit_run, say_date, say_digits, say_time
from voice_agent.tenants.data import TenantDB


class Skill(ABC):
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
    def respond(self, intent: str, ctx: TurnContext) -> str:
        """Start ``intent``: answer it, or ask for what is missing."""

    @abstractmethod
    def resume(self, ctx: TurnContext) -> str | None:
        """Continue the pending task, or ``None`` if this turn did not serve it."""


class _TechStore(Skill):
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

    def respond(self, intent: str, ctx: TurnContext) -> str:
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

    def resume(self, ctx: TurnContext) -> str | None:
        if ctx.state.intent == "order_status":
            return self._order(ctx)
        return self._product(ctx)

    def _order(self, ctx: TurnContext) -> str | None:
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

    def _product(self, ctx: TurnContext) -> str | None:
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


class _HealthPlus(Skill):
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

    def respond(self, intent: str, ctx: TurnContext) -> str:
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

    def resume(self, ctx: TurnContext) -> str | None:
        state = ctx.state
        changed = self._fill(ctx) if state.intent != "cancel_appointment" else False
        if changed:
            return ("Okay. " if state.awaiting in ("confirm", "change") else "") + self._next_step(
                ctx)
        if state.awaiting != "confirm":
            return None
        yes, no = yes_or_no(ctx.norm)
        if no:
            if state.intent == "cancel_appointment":
                state.finish()
                return "Okay, I've kept your appointment."
            return state.ask("change", "Okay. What would you like to change: the day, the time "
                                       "or the clinic?")
        return self._execute(ctx) if yes else None

    def _clinic(self, norm: str) -> str | None:
        return next((name for name, pattern in _CLINICS.items() if pattern.search(norm)), None)

    def _fill(self, ctx: TurnContext) -> bool:
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

    def _next_step(self, ctx: TurnContext) -> str:
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

    def _execute(self, ctx: TurnContext) -> str:
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


class _EduLearn(Skill):
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

    def respond(self, intent: str, ctx: TurnContext) -> str:
        if intent == "list_courses":
            ctx.called("list_courses")
            titles = [c.title for c in t.courses(self.db)]
            return (f"We offer {len(titles)} courses: {', '.join(titles[:-1])}, and "
                    f"{titles[-1]}. I can tell you a schedule or enrol you.")
        ctx.state.intent = intent
        return self.resume(ctx) or ctx.state.ask("course", self._which())

    def resume(self, ctx: TurnContext) -> str | None:
        state = ctx.state
        course = self._course(ctx.norm)
        if course is None and state.awaiting == "course":
            course = self._picked(ctx.norm)
        if course is not None and course != state.slots.get("course"):
            return self._with_course(course, ctx)
        if state.awaiting != "confirm":
            return None
        yes, no = yes_or_no(ctx.norm)
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

    def _with_course(self, course: t.Course, ctx: TurnContext) -> str:
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


SKILLS: dict[str, type[Skill]] = {
    "techstore": _TechStore, "healthplus": _HealthPlus, "edulearn": _EduLearn,
}
