"""Tenant data and tools: each tenant's SQLite file, SQL binding, the LLM tools from intents."""

from __future__ import annotations

import datetime
import json
import sqlite3
from pathlib import Path

import pytest

from voice_agent.dialog.engine import DialogEngine
from voice_agent.dialog.rules import Rules
from voice_agent.dialog.tools import END_CALL, TRANSFER, run_tool, tool_specs
from voice_agent.tenants import TenantRegistry
from voice_agent.tenants.data import (
    DATA_DIR_ENV,
    TenantDatabases,
    TenantDB,
    bind,
    open_db,
    resolve_data_dir,
    tenant_db_path,
)

TODAY = datetime.date(2026, 12, 1)
SEED_CALLER = "+15550100"  # owns healthplus's seeded appointment


def _count(db: TenantDB, sql: str, *args: object) -> int:
    with db.transaction() as conn:
        return int(conn.execute(sql, args).fetchone()[0])


@pytest.fixture
def rules(db: TenantDatabases, registry: TenantRegistry) -> dict[str, Rules]:
    return {t.name: DialogEngine(t, db).rules for t in registry}


# --- data ----------------------------------------------------------------------


def test_each_tenant_gets_its_own_file_made_from_its_data_sql(
        db: TenantDatabases, registry: TenantRegistry) -> None:
    for tenant in registry:
        DialogEngine(tenant, db)
    store = db.path("techstore")
    assert store == db.directory / "tenants" / "techstore.sqlite3" and store.exists()
    with sqlite3.connect(store) as conn:
        assert conn.execute("SELECT status FROM orders WHERE order_number = '12345'"
                            ).fetchone() == ("shipped",)
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert "appointments" not in tables  # one business never sees another's tables


def test_open_db_shares_one_connection_per_path(tmp_path: Path) -> None:
    assert open_db(tmp_path / "a.db") is open_db(tmp_path / "a.db")
    assert open_db(tmp_path / "a.db") is not open_db(tmp_path / "b.db")


def test_reopening_keeps_changes_and_does_not_reseed(tmp_path: Path) -> None:
    data_sql = ("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT);\n"
                "INSERT OR IGNORE INTO t VALUES (1, 'seed');")
    first = TenantDB(tmp_path / "t.sqlite3", data_sql)
    with first.transaction() as conn:
        conn.execute("UPDATE t SET v = 'changed' WHERE id = 1")
        conn.execute("INSERT INTO t (v) VALUES ('new')")
    first.close()
    again = TenantDB(tmp_path / "t.sqlite3", data_sql)
    assert _count(again, "SELECT COUNT(*) FROM t") == 2
    assert _count(again, "SELECT COUNT(*) FROM t WHERE v = 'changed'") == 1
    again.close()


def test_data_dir_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert resolve_data_dir(tmp_path) == tmp_path
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    assert tenant_db_path("acme") == tmp_path / "tenants" / "acme.sqlite3"
    monkeypatch.delenv(DATA_DIR_ENV)
    assert resolve_data_dir() == Path.home() / ".local/share/voice-agent"


def test_failed_transaction_rolls_back(rules: dict[str, Rules]) -> None:
    db = rules["techstore"].db
    with pytest.raises(RuntimeError), db.transaction() as conn:
        conn.execute("DELETE FROM orders")
        raise RuntimeError("boom")
    assert _count(db, "SELECT COUNT(*) FROM orders") == 3


def test_bind_names_slots_and_result_columns_as_parameters() -> None:
    sql, params = bind("SELECT 1 WHERE a = :day AND b = :current.id AND c = '10:00' "
                       "AND d = :at", {"day": datetime.date(2026, 12, 7), "current": {"id": 4},
                                       "at": datetime.time(9, 30)})
    assert sql == ("SELECT 1 WHERE a = :day AND b = :current__id AND c = '10:00' "
                   "AND d = :at")
    assert params == {"day": "2026-12-07", "current__id": 4, "at": "09:30"}
    with pytest.raises(KeyError):
        bind("SELECT :nothing", {})


# --- LLM tools -------------------------------------------------------------------


def test_every_intent_is_a_function_and_hand_off_tools_are_always_there(
        rules: dict[str, Rules]) -> None:
    names = {tenant: [s.name for s in tool_specs(r)] for tenant, r in rules.items()}
    assert names["healthplus"] == ["cancel_appointment", "move_appointment",
                                   "book_appointment", "medical_advice", "clinic_hours",
                                   TRANSFER.name, END_CALL.name]
    specs = {s.name: s for s in tool_specs(rules["healthplus"])}
    book = specs["book_appointment"].to_openai()["function"]
    assert book["parameters"]["required"] == ["date", "time", "clinic"]
    assert book["parameters"]["properties"]["clinic"]["enum"] == ["Downtown", "Riverside"]
    assert "after the caller said yes" in book["description"]
    # the clinic defaults to the booked one: the model need not pass it
    assert specs["move_appointment"].parameters["required"] == ["date", "time"]
    order = {s.name: s for s in tool_specs(rules["techstore"])}["order_status"]
    assert order.parameters["properties"]["order_number"]["pattern"] == "^[0-9]{5,5}$"


def test_run_tool_books_and_returns_json(rules: dict[str, Rules]) -> None:
    result = run_tool(rules["healthplus"], "book_appointment",
                      {"clinic": "Riverside", "date": "2026-12-07", "time": "10:00"},
                      caller_id="+15553334444", today=TODAY)
    assert result["result"] == ("You're booked for Monday, December 7th at 10 AM at "
                                "Riverside clinic.")
    assert _count(rules["healthplus"].db, "SELECT COUNT(*) FROM appointments "
                  "WHERE caller_id = '+15553334444'") == 1
    courses = run_tool(rules["edulearn"], "list_courses", {}, caller_id="x", today=TODAY)
    assert [c["title"] for c in json.loads(json.dumps(courses))["courses"]][0] == \
        "Python Basics"


@pytest.mark.parametrize(
    ("tenant", "name", "arguments", "error"),
    [("techstore", "order_status", {"order_number": "99999"}, "couldn't find order 9 9 9 9 9"),
     ("healthplus", "book_appointment",
      {"clinic": "Downtown", "date": "2026-12-06", "time": "10:00"}, "closed on Sundays"),
     ("healthplus", "book_appointment", {"clinic": "Downtown"}, "missing date, time"),
     ("healthplus", "book_appointment",
      {"clinic": "Nowhere", "date": "2026-12-07", "time": "10:00"}, "bad arguments"),
     ("healthplus", "book_appointment",
      {"clinic": "Downtown", "date": "Monday", "time": "10:00"}, "bad arguments"),
     ("edulearn", "enrol", {"course": "web development"}, "is full"),
     ("techstore", "nope", {}, "unknown tool")],
)
def test_run_tool_refusals_go_back_to_the_model(
    rules: dict[str, Rules], tenant: str, name: str, arguments: dict[str, str], error: str
) -> None:
    result = run_tool(rules[tenant], name, arguments, caller_id="x", today=TODAY)
    assert error in result["error"]


def test_run_tool_moves_and_cancels_the_callers_appointment(rules: dict[str, Rules]) -> None:
    health = rules["healthplus"]
    moved = run_tool(health, "move_appointment", {"date": "2026-12-08", "time": "09:00"},
                     caller_id=SEED_CALLER, today=TODAY)
    assert "now on Tuesday, December 8th at 9 AM at Downtown clinic" in moved["result"]
    assert moved["current"]["day"] == "2026-12-10"  # what the lookup found
    cancelled = run_tool(health, "cancel_appointment", {}, caller_id=SEED_CALLER, today=TODAY)
    assert "December 8th" in cancelled["result"] and "cancelled" in cancelled["result"]
    assert _count(health.db, "SELECT COUNT(*) FROM appointments WHERE caller_id = ? "
                             "AND status = 'booked'", SEED_CALLER) == 0
    again = run_tool(health, "cancel_appointment", {}, caller_id=SEED_CALLER, today=TODAY)
    assert "couldn't find an upcoming appointment" in again["error"]


def test_a_reloaded_data_sql_adds_its_new_tables_to_the_open_database(tmp_path: Path) -> None:
    first = ("CREATE TABLE IF NOT EXISTS a (x TEXT PRIMARY KEY); "
             "INSERT OR IGNORE INTO a VALUES ('kept');")
    db = open_db(tmp_path / "t.sqlite3", first)
    with db.transaction() as conn:
        conn.execute("INSERT INTO a VALUES ('a caller''s row')")
    again = open_db(tmp_path / "t.sqlite3", first + " CREATE TABLE IF NOT EXISTS b (y TEXT);")
    assert again is db
    assert _count(db, "SELECT COUNT(*) FROM b") == 0
    assert _count(db, "SELECT COUNT(*) FROM a") == 2
