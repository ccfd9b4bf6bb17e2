"""The embedded dialog engine: normaliser, redaction and each tenant's tasks from text."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date, time

import pytest

from voice_agent.dialog.dates import parse_date, parse_time
from voice_agent.dialog.engine import DialogEngine
from voice_agent.dialog.redact import redact
from voice_agent.dialog.state import DialogReply, DialogState
from voice_agent.dialog.text import digit_run, normalize, say_date, say_time
from voice_agent.tenants import Tenant, TenantRegistry
from voice_agent.tenants.data import TenantDatabases, TenantDB

TODAY = date(2026, 12, 1)  # a Tuesday
CALLER = "+15551234567"
#: The caller who owns healthplus's seeded appointment (its data.sql).
SEED_CALLER = "+15550100"


# --- normaliser ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "norm"),
    [("Order 12345.", "order 12345"),
     ("order one two three four five", "order 1 2 3 4 5"),
     ("twenty five", "25"),
     ("the twenty first", "the 21st"),
     ("December third", "december 3rd"),
     ("three thirty P.M.", "3 30 pm"),
     ("3 p m", "3 pm"),
     ("at four o'clock", "at 4 oclock"),
     ("It's 15:00!", "its 15:00"),
     ("one oh one", "1 0 1"),
     ("six double five two one", "6 5 5 2 1"), ("triple oh 7", "0 0 0 7"),
     ("a double room", "a double room"),
     ("oh I can't breathe", "oh i cant breathe")],
)
def test_normalize(text: str, norm: str) -> None:
    assert normalize(text) == norm


@pytest.mark.parametrize(
    ("norm", "digits"),
    [("order 1 2 3 4 5", "12345"), ("order 123 45 please", "12345"), ("12345", "12345"),
     ("order 1 2 3", None), ("at 3 pm", None),
     # what Whisper writes for "one two three four five" over a phone line
     ("where in my order 1 to 3 4 5", "12345"), ("order 9 8 7 for 3", "98743"),
     ("from 3 to 5 pm", None), ("order 12 to 34", None)],
)
def test_digit_run(norm: str, digits: str | None) -> None:
    assert digit_run(norm) == digits


@pytest.mark.parametrize(
    ("text", "expected"),
    [("today", TODAY), ("tomorrow", date(2026, 12, 2)),
     ("the day after tomorrow", date(2026, 12, 3)),
     ("next monday", date(2026, 12, 7)), ("on monday", date(2026, 12, 7)),
     ("tuesday", date(2026, 12, 8)),  # today is Tuesday: the next one
     ("december 3rd", date(2026, 12, 3)), ("3rd of december", date(2026, 12, 3)),
     ("December the third", date(2026, 12, 3)),
     ("january fifth", date(2027, 1, 5)),  # no year: the next January
     ("november 2nd", date(2027, 11, 2)),  # already past this year
     ("the 5th", date(2026, 12, 5)), ("on the first", TODAY),
     ("march 3 2027", date(2027, 3, 3)),
     ("february thirtieth", None), ("some day", None)],
)
def test_parse_date(text: str, expected: date | None) -> None:
    assert parse_date(normalize(text), TODAY) == expected


def test_parse_date_day_of_month_rolls_into_next_month() -> None:
    assert parse_date("the 5th", date(2026, 12, 10)) == date(2027, 1, 5)
    assert parse_date("the 31st", date(2026, 11, 10)) == date(2026, 12, 31)  # no Nov 31st


def test_parse_date_bare_ordinal_only_when_asked() -> None:
    assert parse_date("5th", TODAY) is None
    assert parse_date("5th", TODAY, bare=True) == date(2026, 12, 5)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("3 pm", time(15)), ("3pm", time(15)), ("three p m", time(15)),
     ("three thirty", time(15, 30)), ("three thirty am", time(3, 30)),
     ("15:00", time(15)), ("9:45", time(9, 45)), ("12 am", time(0)), ("12 pm", time(12)),
     ("noon", time(12)), ("half past ten", time(10, 30)), ("at 10", time(10)),
     ("make it 4", time(16)), ("four o'clock", time(16)),
     ("december 3rd at 11 am", time(11)), ("13 pm", None), ("25:00", None),
     ("december 3rd", None), ("order 12345", None)],
)
def test_parse_time(text: str, expected: time | None) -> None:
    assert parse_time(normalize(text)) == expected


def test_parse_time_bare_hour_only_when_asked() -> None:
    assert parse_time("4") is None
    assert parse_time("4", bare=True) == time(16)
    assert parse_time("10", bare=True) == time(10)


def test_speakable_dates_and_times() -> None:
    assert say_date(date(2026, 12, 3)) == "Thursday, December 3rd"
    assert say_date(date(2026, 12, 11)) == "Friday, December 11th"
    assert say_time(time(15)) == "3 PM"
    assert say_time(time(9, 5)) == "9:05 AM"
    assert say_time(time(12)) == "12 PM"


# --- redaction -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "secret", "kept"),
    [("My name is John Smith and I need a booking", "John", "I need a booking"),
     ("this is jane doe calling about my appointment", "jane", "calling about"),
     ("my date of birth is March 3rd 1980", "1980", "date of birth"),
     ("born on 03/04/1985", "1985", "born on"),
     ("call me on 555-123-4567", "4567", "call me on"),
     ("my number is +1 (555) 010-0123", "010", "my number is"),
     ("five five five one two three four five six seven", "five", ""),
     # a birth date heard without "date of birth" (the words misheard, the date not)
     ("my name is I'm working before I'm July 1980.", "july", "I'm"),
     ("it's the fourth of July nineteen eighty", "july", "it's"),
     ("March 3rd, nineteen eighty four", "eighty", ""),
     ("I was born in two thousand and five", "thousand", "I was"),
     ("that's 1975", "1975", "that's")],
)
def test_redact_removes_identity(text: str, secret: str, kept: str) -> None:
    cleaned = redact(text)
    assert secret.lower() not in cleaned.lower()
    assert kept in cleaned


def test_redact_keeps_order_numbers_and_plain_text() -> None:
    assert redact("order 12345 please") == "order 12345 please"
    # appointment dates (no year, or this year) are not identity
    assert redact("next Monday at 3 PM, December 3rd") == "next Monday at 3 PM, December 3rd"
    assert redact("on July 4th 2026 please") == "on July 4th 2026 please"
    assert redact("order one two three four five") == "order one two three four five"


# --- engine fixtures -------------------------------------------------------------


class Call:
    """One simulated call: say lines, keep the replies."""

    def __init__(self, engine: DialogEngine, caller: str = CALLER) -> None:
        self.engine = engine
        self.state = DialogState(caller_id=caller)
        self.greeting = engine.greet(self.state)

    def say(self, text: str) -> DialogReply:
        return self.engine.reply(self.state, text)


@pytest.fixture
def call(db: TenantDatabases, registry: TenantRegistry) -> Callable[..., Call]:
    def start(tenant: str, caller: str = CALLER) -> Call:
        return Call(DialogEngine(registry.resolve([tenant]), db, today=lambda: TODAY), caller)
    return start


def _rows(db: TenantDB, sql: str, *args: object) -> list[tuple[object, ...]]:
    with db.transaction() as conn:
        return [tuple(r) for r in conn.execute(sql, args).fetchall()]


def test_a_tenant_without_intents_still_greets_helps_and_transfers(db: TenantDatabases) -> None:
    engine = DialogEngine(Tenant(name="acme", display_name="ACME", greeting_prompt="x",
                                 operator_extension="1"), db)
    state = DialogState()
    assert "ACME" in engine.greet(state).text
    assert engine.reply(state, "what can you do").intent == "unclear"
    assert engine.reply(state, "operator").transfer


# --- common behaviour ----------------------------------------------------------


@pytest.mark.parametrize("tenant", ["techstore", "healthplus", "edulearn"])
def test_greeting_operator_repeat_goodbye(call, tenant: str) -> None:
    c = call(tenant)
    assert c.greeting.text and c.state.last_reply == c.greeting.text
    assert c.say("#").text == c.greeting.text
    unclear = c.say("purple monkey dishwasher")
    assert unclear.intent == "unclear" and "operator" in unclear.text
    again = c.say("can you say that again")
    assert (again.intent, again.text) == ("repeat", unclear.text)
    for text in ("I want to talk to a human", "operator please", "0"):
        reply = c.say(text)
        assert reply.transfer and not reply.done
    bye = c.say("no that's all goodbye")
    assert bye.done and not bye.transfer and "Goodbye" in bye.text
    assert [turn.speaker for turn in c.state.history[:3]] == ["agent", "caller", "agent"]


def test_replies_are_speakable(call) -> None:
    c = call("healthplus")
    for text in ("book an appointment", "tomorrow", "10 am", "downtown"):
        reply = c.say(text).text
        assert not any(mark in reply for mark in "*#_`[]\n")


def test_logs_are_redacted(call, caplog: pytest.LogCaptureFixture) -> None:
    c = call("healthplus")
    with caplog.at_level(logging.INFO, logger="voice_agent.dialog.engine"):
        c.say("my name is Maria Lopez, born on 4/5/1970, call me back on 555 987 6543")
    logged = caplog.text
    assert "Maria" not in logged and "1970" not in logged and "6543" not in logged
    assert CALLER not in logged and "[name]" in logged


# --- techstore -------------------------------------------------------------------


@pytest.mark.parametrize("said", ["what's the status of order 12345",
                                  "order one two three four five", "12345"])
def test_order_status_in_one_turn(call, said: str) -> None:
    reply = call("techstore").say(said)
    assert reply.intent == "order_status"
    assert "shipped" in reply.text and "Thursday, December 3rd" in reply.text
    assert [(t.name, t.arguments) for t in reply.tool_calls_made] == [
        ("order_status", {"order_number": "12345"})]


def test_order_status_asks_for_the_number_then_retries_unknown(call) -> None:
    c = call("techstore")
    assert "order number" in c.say("where is my package").text
    missing = c.say("nine nine nine nine nine")
    assert "couldn't find order 9 9 9 9 9" in missing.text
    processing = c.say("sorry it's six seven eight nine zero")
    assert "being prepared" in processing.text and "Nova 8 phone" in processing.text
    assert c.state.intent is None
    delivered = c.say("and order 55555")
    assert "was delivered on Friday, November 20th" in delivered.text


def test_return_policy(call) -> None:
    reply = call("techstore").say("how do I return something")
    assert reply.intent == "return_policy" and "30 days" in reply.text


def test_availability(call) -> None:
    c = call("techstore")
    assert "in stock: we have 12" in c.say("do you have the nova phone in stock").text
    assert "out of the Pulse wireless headphones" in c.say("are headphones available").text
    assert "Which product" in c.say("is something available").text
    monitor = c.say("a monitor")
    assert monitor.intent == "product_availability" and "we have 3" in monitor.text


# --- healthplus ------------------------------------------------------------------


def test_book_with_missing_slots_then_confirm(call, db: TenantDatabases) -> None:
    c = call("healthplus")
    assert c.say("I'd like to book an appointment").text == "What day would you like?"
    assert c.say("next monday").text == "What time would you like?"
    assert c.say("three thirty").text == "Which clinic: Downtown or Riverside?"
    confirm = c.say("riverside please")
    assert confirm.text == ("So that's Monday, December 7th at 3:30 PM at Riverside clinic. "
                            "Shall I book it?")
    assert _rows(db.of("healthplus"),
                 "SELECT * FROM appointments WHERE caller_id = ?", CALLER) == []
    booked = c.say("yes please")
    assert booked.text == "You're booked for Monday, December 7th at 3:30 PM at Riverside clinic."
    assert [t.name for t in booked.tool_calls_made] == ["book_appointment"]
    assert _rows(db.of("healthplus"),
                 "SELECT clinic, day, time, status FROM appointments WHERE caller_id = ?",
                 CALLER) == [("Riverside", "2026-12-07", "15:30", "booked")]


def test_book_corrections_reconfirm(call, db: TenantDatabases) -> None:
    c = call("healthplus")
    first = c.say("book an appointment on december 3rd at 3 pm at downtown")
    assert first.text == (
        "So that's Thursday, December 3rd at 3 PM at Downtown clinic. Shall I book it?")
    assert "at 4 PM at Downtown" in c.say("no, make it 4 pm").text
    assert "at 4 PM at Riverside" in c.say("actually Riverside").text
    change = c.say("no")
    assert "What would you like to change" in change.text
    assert "Friday, December 4th at 4 PM at Riverside" in c.say("the 4th").text
    c.say("yes")
    assert _rows(db.of("healthplus"),
                 "SELECT clinic, day, time FROM appointments WHERE caller_id = ?",
                 CALLER) == [("Riverside", "2026-12-04", "16:00")]


def test_book_refuses_closed_and_taken_times(call) -> None:
    c = call("healthplus")
    closed = c.say("book sunday at 10 am at riverside")
    assert "closed on Sundays" in closed.text and c.state.awaiting == "time"
    c = call("healthplus")
    taken = c.say("book december 4th at 3 pm at riverside")  # seeded appointment
    assert "already taken" in taken.text
    assert "Friday, December 4th at 3:30 PM" in c.say("3 30 pm").text
    late = call("healthplus").say("book tomorrow at 8 pm at downtown")
    assert "not open at that time" in late.text and "8 AM to 6 PM" in late.text


def test_unclear_answer_reprompts_the_pending_question(call) -> None:
    c = call("healthplus")
    c.say("book an appointment")
    reply = c.say("hmm well")
    assert reply.text == "Sorry, I didn't catch that. What day would you like?"
    assert reply.intent == "book_appointment"


def test_move_appointment(call, db: TenantDatabases) -> None:
    c = call("healthplus", caller=SEED_CALLER)
    first = c.say("I need to reschedule my appointment")
    assert "Thursday, December 10th at 10 AM at Downtown" in first.text
    assert "What day" in first.text
    assert "move it to Friday, December 11th at 2 PM at Downtown" in c.say(
        "friday the 11th at 2 pm").text
    done = c.say("yes")
    assert "now on Friday, December 11th at 2 PM" in done.text
    assert _rows(db.of("healthplus"),
                 "SELECT clinic, day, time FROM appointments WHERE caller_id = ? "
                     "AND status = 'booked'", SEED_CALLER) == [("Downtown", "2026-12-11", "14:00")]


def test_cancel_appointment(call, db: TenantDatabases) -> None:
    c = call("healthplus", caller=SEED_CALLER)
    assert "Shall I cancel it" in c.say("cancel my appointment").text
    assert c.say("no").text == "Okay, I've kept your appointment."
    c.say("please cancel my appointment")
    assert "is cancelled" in c.say("yes").text
    assert _rows(db.of("healthplus"),
                 "SELECT status FROM appointments WHERE caller_id = ?", SEED_CALLER) == [
        ("cancelled",)]
    assert "couldn't find an upcoming appointment" in c.say("cancel my appointment").text


def test_clinic_hours(call) -> None:
    c = call("healthplus")
    both = c.say("what are your opening hours")
    assert "Downtown" in both.text and "Riverside" in both.text
    one = c.say("when is riverside open")
    assert "Riverside" in one.text and "Downtown" not in one.text


@pytest.mark.parametrize("said", ["should I take ibuprofen for my headache",
                                  "what medication is good for a fever",
                                  "is this rash serious"])
def test_medical_advice_is_refused(call, said: str) -> None:
    reply = call("healthplus").say(said)
    assert reply.intent == "medical_advice"
    assert "can't give medical advice" in reply.text and "clinician" in reply.text


@pytest.mark.parametrize("said", ["I have chest pain", "my husband can't breathe",
                                  "she is bleeding heavily", "he's unconscious",
                                  "I'm thinking about suicide"])
def test_emergency_mention_sends_caller_to_emergency_services(call, said: str) -> None:
    c = call("healthplus")
    c.say("book an appointment")
    reply = c.say(said)
    assert reply.intent == "emergency"
    assert "hang up" in reply.text and "911" in reply.text and "112" in reply.text
    assert c.state.intent is None  # the booking is abandoned


def test_emergency_screening_is_healthplus_only(call) -> None:
    assert call("techstore").say("my laptop screen is bleeding heavily").intent != "emergency"


# --- edulearn --------------------------------------------------------------------


def test_catalogue_and_schedule(call) -> None:
    c = call("edulearn")
    catalogue = c.say("what courses do you offer")
    assert all(t in catalogue.text for t in ("Python Basics", "Data Science 101",
                                              "Web Development"))
    schedule = c.say("when does python basics start")
    assert "Mondays and Wednesdays, 6 to 8 PM" in schedule.text
    assert "Monday, January 11th" in schedule.text and "19 seats" in schedule.text
    assert "Which course" in c.say("what's the schedule").text
    assert "Saturdays" in c.say("web development").text


def test_enrol_with_correction(call, db: TenantDatabases) -> None:
    c = call("edulearn")
    assert "Which course" in c.say("I want to enrol").text
    assert "Shall I enrol you" in c.say("python").text
    assert "Data Science 101" in c.say("actually data science").text
    done = c.say("yes")
    assert done.text == "You're enrolled in Data Science 101. It starts Tuesday, January 12th."
    assert _rows(db.of("edulearn"),
                 "SELECT course_code FROM enrolments WHERE caller_id = ?", CALLER) == [
        ("DS101",)]
    # Refused before asking to confirm, not after the caller said yes.
    assert "already enrolled" in c.say("sign me up for data science").text


def test_enrol_by_position_in_the_list(call, db: TenantDatabases) -> None:
    c = call("edulearn")
    assert "Which course: Python Basics, Data Science 101, or Web Development" in \
        c.say("I want to enrol").text
    assert c.say("the second one").text.startswith("Data Science 101 runs")
    assert c.say("yes").text.startswith("You're enrolled in Data Science 101")
    c = call("edulearn")
    c.say("sign me up")
    assert "Web Development is full" in c.say("the last one").text
    assert "5th" not in c.say("the fifth one").text  # out of range: re-asked, not crashed
    c = call("edulearn")
    c.say("I would like to register for a course")
    assert c.say("1").text.startswith("Python Basics runs")  # key 1 on the phone


def test_enrol_full_course(call, db: TenantDatabases) -> None:
    c = call("edulearn")
    full = c.say("sign me up for web development")
    assert "Web Development is full" in full.text and "Python Basics" in full.text
    assert c.state.awaiting == "course"
    assert "Python Basics" in c.say("ok python then").text
    assert c.say("no").text.startswith("Okay, I won't enrol you")
    assert _rows(db.of("edulearn"),
                 "SELECT * FROM enrolments WHERE caller_id = ?", CALLER) == []


# --- end of turn ---------------------------------------------------------------


@pytest.mark.parametrize(("tenant", "said", "verdict"), [
    ("techstore", "Where is my order one two three four five?", "complete"),
    ("techstore", "Where is my order 1 to 3 4 5", "complete"),  # a homophone inside
    ("techstore", "My order number is one two", "incomplete"),
    ("techstore", "My order number is", "incomplete"),
    ("techstore", "Where is my order", "incomplete"),  # the number usually follows
    ("techstore", "My order, I'm very.", "incomplete"),  # misheard, but still no number
    ("techstore", "What is your return policy?", "complete"),
    ("techstore", "I was wondering whether", "incomplete"),
    ("techstore", "Hello there", "unsure"),
    ("healthplus", "I would like to book an appointment for", "incomplete"),
    ("healthplus", "I would like an appointment next Monday at three PM at the downtown "
                   "clinic.", "complete"),
    ("healthplus", "I have chest pains", "complete"),  # the emergency screen
    ("edulearn", "Can I talk to a real person?", "complete"),
    # every shared request the engine acts on ends a turn, not a narrower copy of them
    ("edulearn", "A human, please.", "complete"),
    ("techstore", "Pardon?", "complete"),
    ("healthplus", "I'm done.", "complete"),
    ("healthplus", "Thanks a lot.", "complete"),
    ("edulearn", "um", "incomplete"),
    ("edulearn", "", "unsure"),
])
def test_the_words_say_whether_the_turn_is_over(call, tenant: str, said: str,
                                                verdict: str) -> None:
    c = call(tenant)
    assert c.engine.turn_end(c.state, said).value == verdict


def test_an_awaited_number_is_complete_at_its_length_and_a_confirmation_at_yes_or_no(
        call) -> None:
    order = call("techstore")
    order.say("I want to track an order")
    assert order.state.awaiting == "order_number"
    assert order.engine.turn_end(order.state, "one two three").value == "incomplete"
    assert order.engine.turn_end(order.state, "one two three four five").value == "complete"
    assert order.engine.turn_end(order.state, "hmm let me see").value == "incomplete"
    course = call("edulearn")
    course.say("I would like to register for a course.")
    course.say("1")
    assert course.state.awaiting == "confirm"
    assert course.engine.turn_end(course.state, "Yes.").value == "complete"
    assert course.engine.turn_end(course.state, "No.").value == "complete"
    assert course.engine.turn_end(course.state, "Yes please.").value == "complete"  # the demo
    before = (len(course.state.history), course.state.awaiting, dict(course.state.slots))
    course.engine.turn_end(course.state, "Yes.")
    after = (len(course.state.history), course.state.awaiting, dict(course.state.slots))
    assert after == before  # judging changes nothing


def test_a_silent_caller_is_asked_twice_then_told_goodbye_and_speaking_resets_it(call) -> None:
    """The one silence policy both loops use (seconds in ARI, empty recordings in AGI)."""
    c = call("healthplus")
    first, second = c.engine.silence(c.state), c.engine.silence(c.state)
    assert "still there" in first.text.lower() and not first.done and not second.done
    c.say("What are your opening hours?")  # the caller spoke: the count starts again
    assert [c.engine.silence(c.state).done for _ in range(3)] == [False, False, True]
    assert c.state.silences == 3
