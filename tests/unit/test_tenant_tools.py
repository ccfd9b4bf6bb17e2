"""Tenant data and tools: the SQLite file, the business rules, the LLM tool specs."""

from __future__ import annotations

import json
import sqlite3
from datetime import date, time
from pathlib import Path

import pytest

from voice_agent.dialog import tools as t
from voice_agent.tenants.data import (
    DATA_DIR_ENV,
    DB_FILENAME,
    SEED_CALLER,
    TenantDB,
    open_db,
    resolve_db_path,
)

TODAY = date(2026, 12, 1)
MONDAY = date(2026, 12, 7)
SUNDAY = date(2026, 12, 6)


def _count(db: TenantDB, sql: str, *args: object) -> int:
    with db.transaction() as conn:
        return int(conn.execute(sql, args).fetchone()[0])


# --- data ----------------------------------------------------------------------


def test_file_is_created_and_seeded_on_first_use(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "dir" / "t.sqlite3"
    open_db(path)
    assert path.exists()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT status FROM orders WHERE order_number = '12345'").fetchone() \
            == ("shipped",)
        assert conn.execute("SELECT COUNT(*) FROM clinics").fetchone() == (2,)


def test_open_db_shares_one_connection_per_path(tmp_path: Path) -> None:
    assert open_db(tmp_path / "a.db") is open_db(tmp_path / "a.db")
    assert open_db(tmp_path / "a.db") is not open_db(tmp_path / "b.db")


def test_reopening_keeps_changes_and_does_not_reseed(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite3"
    first = TenantDB(path)
    t.book_appointment(first, "+15551112222", "Riverside", MONDAY, time(11, 0))
    first.close()
    again = TenantDB(path)
    assert _count(again, "SELECT COUNT(*) FROM appointments WHERE caller_id = '+15551112222'") == 1
    assert _count(again, "SELECT COUNT(*) FROM orders") == 3
    again.close()


def test_db_path_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert resolve_db_path(tmp_path / "x.db") == tmp_path / "x.db"
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    assert resolve_db_path() == tmp_path / DB_FILENAME
    monkeypatch.delenv(DATA_DIR_ENV)
    assert resolve_db_path() == Path.home() / ".local/share/voice-agent" / DB_FILENAME


def test_failed_transaction_rolls_back(db: TenantDB) -> None:
    with pytest.raises(RuntimeError), db.transaction() as conn:
        conn.execute("DELETE FROM orders")
        raise RuntimeError("boom")
    assert _count(db, "SELECT COUNT(*) FROM orders") == 3


# --- techstore -----------------------------------------------------------------


def test_order_status(db: TenantDB) -> None:
    assert t.order_status(db, "12345") == t.Order(
        "12345", "AeroBook 14 laptop", "shipped", date(2026, 12, 3))
    assert t.order_status(db, "67890").delivery_date is None
    with pytest.raises(t.NotFoundError):
        t.order_status(db, "99999")


def test_find_product_matches_whole_words(db: TenantDB) -> None:
    assert t.find_product(db, "do you have headphones").sku == "PLS1"
    assert t.find_product(db, "a new phone").sku == "NOV8"
    assert t.find_product(db, "the pulse headphones").stock == 0
    with pytest.raises(t.NotFoundError):
        t.find_product(db, "a toaster")


def test_return_policy_mentions_the_window(db: TenantDB) -> None:
    assert "30 days" in t.return_policy(db)


# --- healthplus ----------------------------------------------------------------


def test_book_appointment_writes_a_row(db: TenantDB) -> None:
    booked = t.book_appointment(db, "+15551234567", "Downtown", MONDAY, time(15, 0))
    with db.transaction() as conn:
        row = conn.execute("SELECT * FROM appointments WHERE id = ?", (booked.id,)).fetchone()
    assert (row["caller_id"], row["clinic"], row["day"], row["time"], row["status"]) == (
        "+15551234567", "Downtown", "2026-12-07", "15:00", "booked")


@pytest.mark.parametrize(
    ("clinic", "day", "at"),
    [("Downtown", SUNDAY, time(10, 0)), ("Downtown", MONDAY, time(7, 30)),
     ("Downtown", MONDAY, time(18, 0)), ("Downtown", date(2026, 12, 5), time(14, 0))],
)
def test_booking_outside_hours_is_refused(db: TenantDB, clinic: str, day: date, at: time) -> None:
    with pytest.raises(t.ClinicClosedError):
        t.book_appointment(db, "x", clinic, day, at)
    assert _count(db, "SELECT COUNT(*) FROM appointments WHERE caller_id = 'x'") == 0


def test_taken_slot_is_refused(db: TenantDB) -> None:
    t.book_appointment(db, "a", "Riverside", MONDAY, time(9, 0))
    with pytest.raises(t.SlotTakenError):
        t.book_appointment(db, "b", "Riverside", MONDAY, time(9, 0))
    t.book_appointment(db, "b", "Downtown", MONDAY, time(9, 0))  # other clinic is free


def test_next_move_and_cancel(db: TenantDB) -> None:
    seeded = t.next_appointment(db, SEED_CALLER, TODAY)
    assert (seeded.clinic, seeded.day, seeded.time) == ("Downtown", date(2026, 12, 10), time(10))
    moved = t.move_appointment(db, seeded.id, "Riverside", MONDAY, time(16, 30))
    assert (moved.id, moved.clinic, moved.day, moved.time) == (
        seeded.id, "Riverside", MONDAY, time(16, 30))
    # Moving onto its own slot is not a clash with itself.
    t.check_slot(db, "Riverside", MONDAY, time(16, 30), ignore_id=seeded.id)
    t.cancel_appointment(db, seeded.id)
    with pytest.raises(t.NotFoundError):
        t.next_appointment(db, SEED_CALLER, TODAY)
    with pytest.raises(t.NotFoundError):
        t.cancel_appointment(db, seeded.id)


def test_past_appointments_are_not_next(db: TenantDB) -> None:
    with pytest.raises(t.NotFoundError):
        t.next_appointment(db, SEED_CALLER, date(2026, 12, 11))


# --- edulearn ------------------------------------------------------------------


def test_courses_count_seats(db: TenantDB) -> None:
    by_code = {c.code: c for c in t.courses(db)}
    assert by_code["PY101"].seats_left == 19
    assert by_code["WEB101"].seats_left == 0
    assert t.find_course(db, "data science 1 0 1").code == "DS101"
    assert t.find_course(db, "web101").code == "WEB101"


def test_enrol_adds_a_row_and_refuses_duplicates(db: TenantDB) -> None:
    course = t.enrol(db, "+15559990000", "DS101")
    assert course.enrolled == 1
    assert _count(db, "SELECT COUNT(*) FROM enrolments WHERE caller_id = '+15559990000' "
                      "AND course_code = 'DS101'") == 1
    with pytest.raises(t.AlreadyEnrolledError):
        t.enrol(db, "+15559990000", "DS101")


def test_full_course_is_refused(db: TenantDB) -> None:
    with pytest.raises(t.CourseFullError, match="Web Development is full"):
        t.enrol(db, "+15559990000", "WEB101")
    assert _count(db, "SELECT COUNT(*) FROM enrolments WHERE course_code = 'WEB101'") == 2


# --- LLM tools -------------------------------------------------------------------


def test_tool_specs_are_openai_functions() -> None:
    names = {tenant: [s.name for s in specs] for tenant, specs in t.TOOL_SPECS.items()}
    assert names == {
        "techstore": ["order_status", "return_policy", "product_availability"],
        "healthplus": ["clinic_hours", "book_appointment", "move_appointment",
                       "cancel_appointment"],
        "edulearn": ["list_courses", "enrol"],
    }
    book = next(s for s in t.TOOL_SPECS["healthplus"] if s.name == "book_appointment")
    assert book.to_openai()["function"]["parameters"]["required"] == ["clinic", "date", "time"]
    move = next(s for s in t.TOOL_SPECS["healthplus"] if s.name == "move_appointment")
    assert move.parameters["required"] == ["date", "time"]


def test_run_tool_books_and_returns_json(db: TenantDB) -> None:
    result = t.run_tool(db, "book_appointment",
                        {"clinic": "Riverside", "date": "2026-12-07", "time": "10:00"},
                        caller_id="+15553334444", today=TODAY)
    assert result["day"] == "2026-12-07" and result["time"] == "10:00:00"
    assert _count(db, "SELECT COUNT(*) FROM appointments WHERE caller_id = '+15553334444'") == 1
    json.dumps(t.run_tool(db, "list_courses", {}, caller_id="x", today=TODAY))


@pytest.mark.parametrize(
    ("name", "arguments", "error"),
    [("order_status", {"order_number": "99999"}, "no order 99999"),
     ("book_appointment", {"clinic": "Downtown", "date": "2026-12-06", "time": "10:00"},
      "closed on Sundays"),
     ("book_appointment", {"clinic": "Downtown"}, "bad arguments"),
     ("enrol", {"course": "web development"}, "is full"),
     ("nope", {}, "unknown tool")],
)
def test_run_tool_errors_go_back_to_the_model(
    db: TenantDB, name: str, arguments: dict[str, str], error: str
) -> None:
    result = t.run_tool(db, name, arguments, caller_id="x", today=TODAY)
    assert error in result["error"]


def test_run_tool_moves_and_cancels_the_callers_appointment(db: TenantDB) -> None:
    moved = t.run_tool(db, "move_appointment", {"date": "2026-12-08", "time": "09:00"},
                       caller_id=SEED_CALLER, today=TODAY)
    assert (moved["clinic"], moved["day"]) == ("Downtown", "2026-12-08")
    cancelled = t.run_tool(db, "cancel_appointment", {}, caller_id=SEED_CALLER, today=TODAY)
    assert cancelled["cancelled"]["day"] == "2026-12-08"
    assert _count(db, "SELECT COUNT(*) FROM appointments WHERE caller_id = ? "
                      "AND status = 'booked'", SEED_CALLER) == 0
