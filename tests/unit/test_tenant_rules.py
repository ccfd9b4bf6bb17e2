"""The rule engine's generic parts, on tenants written here: webhooks, business hours,
counts said next to a word, text slots, and the fourth tenant that ships only as files."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.fakes import CannedHttpServer
from voice_agent.dialog.engine import DialogEngine, is_open
from voice_agent.dialog.examples import rehearse
from voice_agent.dialog.slots import parse
from voice_agent.dialog.state import DialogState
from voice_agent.dialog.tenant_check import check_directory
from voice_agent.tenants import Tenant, TenantRegistry
from voice_agent.tenants.data import TenantDatabases
from voice_agent.tenants.spec import Hours, Slot

BISTRO = Path(__file__).parents[1] / "tenants"
TODAY = date(2026, 12, 1)


def garage(url: str, timeout: float = 2.0) -> Tenant:
    """A garage whose bookings live in its own system, reached by a webhook."""
    return Tenant.model_validate({
        "name": "garage", "display_name": "Garage", "greeting_prompt": "x",
        "intents": {"repair": {
            "match": ["repair", "service"],
            "slots": {"plate": {"type": "text", "ask": "What is the number plate?"},
                      "day": {"type": "date", "ask": "Which day?"}},
            "confirm": "Book {{ plate }} on {{ day | say_date }}?",
            "action": [{"webhook": {"url": url, "timeout": timeout,
                                    "failure": "Sorry, our booking system is down. "
                                               "Please call back later."},
                        "as": "booking"}],
            "reply": "Booked. Your reference is {{ booking.reference }}."}}})


def test_a_webhook_action_posts_the_slots_and_speaks_its_answer(tmp_path: Path) -> None:
    server = CannedHttpServer(body=json.dumps({"reference": "R42"}).encode())
    try:
        engine = DialogEngine(garage(server.base_url), TenantDatabases(tmp_path),
                              today=lambda: TODAY)
        state = DialogState(caller_id="+1555")
        assert engine.reply(state, "I need a repair").text == "What is the number plate?"
        assert engine.reply(state, "AB 123 CD").text == "Which day?"
        assert engine.reply(state, "friday").text == "Book AB 123 CD on Friday, December 4th?"
        done = engine.reply(state, "yes")
        assert done.text == "Booked. Your reference is R42."
        assert [t.name for t in done.tool_calls_made] == ["repair"]
        [request] = server.requests
        assert json.loads(request.body) == {"caller": "+1555", "plate": "AB 123 CD",
                                            "day": "2026-12-04"}
    finally:
        server.close()


@pytest.mark.parametrize("failure", ["status", "timeout", "not json"])
def test_a_failed_webhook_says_the_tenants_failure_message(tmp_path: Path, failure: str) -> None:
    server = CannedHttpServer(status=500 if failure == "status" else 200,
                              delay=1.0 if failure == "timeout" else 0.0,
                              body=b"<html>" if failure == "not json" else b"{}")
    try:
        engine = DialogEngine(garage(server.base_url, timeout=0.2), TenantDatabases(tmp_path),
                              today=lambda: TODAY)
        state = DialogState()
        for said in ("a service please", "XY 9", "on friday"):
            engine.reply(state, said)
        assert state.awaiting == "confirm"
        reply = engine.reply(state, "yes")
        assert reply.text == "Sorry, our booking system is down. Please call back later."
        assert state.intent is None  # the task ended; the caller can ask again
    finally:
        server.close()


def test_business_hours_decide_between_a_transfer_and_the_closed_message(
        tmp_path: Path) -> None:
    hours = Hours(timezone="Europe/Rome", open={"mon": "09:00-17:00"}, closed="We're closed.")
    rome = ZoneInfo("Europe/Rome")
    assert is_open(hours, datetime(2026, 12, 7, 9, 0, tzinfo=rome))  # a Monday
    assert not is_open(hours, datetime(2026, 12, 7, 17, 0, tzinfo=rome))
    assert not is_open(hours, datetime(2026, 12, 8, 10, 0, tzinfo=rome))  # Tuesday
    assert is_open(hours, datetime(2026, 12, 7, 8, 30))  # naive = UTC: 9:30 in Rome
    tenant = Tenant(name="shop", display_name="Shop", greeting_prompt="x",
                    operator_extension="1", hours=hours)
    for when, transfer in ((datetime(2026, 12, 7, 10, 0, tzinfo=rome), True),
                           (datetime(2026, 12, 6, 10, 0, tzinfo=rome), False)):
        engine = DialogEngine(tenant, TenantDatabases(tmp_path), now=lambda w=when: w)
        reply = engine.reply(DialogState(), "operator")
        assert reply.transfer is transfer
        assert (reply.text == "We're closed.") is not transfer


def test_a_count_is_taken_only_next_to_its_word_unless_it_was_asked_for() -> None:
    party = Slot(type="digits", max_length=2, near="people|party of", ask="How many?")
    assert parse(party, "a table for 4 people at 7 pm", "", TODAY, awaited=False) == "4"
    assert parse(party, "make it 8 pm", "", TODAY, awaited=False) is None
    assert parse(party, "6", "", TODAY, awaited=True) == "6"
    assert parse(party, "a party of 120", "", TODAY, awaited=False) is None  # too long


def test_the_fourth_tenant_is_only_files_and_passes_its_checks_and_examples() -> None:
    assert check_directory(BISTRO) == (1, [])
    [bistro] = TenantRegistry.load(BISTRO)
    assert bistro.name == "bistro" and bistro.numbers == ["18005550101"]
    for example in bistro.conversations:
        assert rehearse(bistro, example) == []


def test_the_reference_pages_example_tenant_checks_and_books(tmp_path: Path) -> None:
    """docs/tenants.md's garage, as written there, against a stand-in for its CRM; "the
    first one" picks from the list and is not read as the 1st of the month."""
    import re

    doc = (Path(__file__).parents[2] / "docs" / "tenants.md").read_text()
    tenant_yaml, intents_yaml, _ = re.findall(r"```yaml\n(.*?)```", doc, re.S)
    server = CannedHttpServer(body=b'{"reference": "G7"}')
    try:
        garage_dir = tmp_path / "garage"
        garage_dir.mkdir()
        (garage_dir / "tenant.yaml").write_text(tenant_yaml)
        (garage_dir / "intents.yaml").write_text(
            intents_yaml.replace("https://crm.example.net/bookings", server.base_url))
        (garage_dir / "data.sql").write_text(
            "CREATE TABLE IF NOT EXISTS bays (name TEXT PRIMARY KEY, keywords TEXT);\n"
            "INSERT OR IGNORE INTO bays VALUES ('North', 'north'), ('South', 'south');\n"
            "CREATE TABLE IF NOT EXISTS bookings (caller TEXT, plate TEXT, bay TEXT, "
            "day TEXT);\n")
        assert check_directory(tmp_path) == (1, [])
        [garage_tenant] = TenantRegistry.load(tmp_path)
        engine = DialogEngine(garage_tenant, TenantDatabases(tmp_path / "data"),
                              today=lambda: TODAY)
        state = DialogState(caller_id="+1555")
        replies = [engine.reply(state, said).text for said in (
            "I need a repair", "AB 12 CDE", "friday", "the first one", "yes")]
        assert replies[3] == "Book AB 12 CDE into North on Friday, December 4th?"
        assert replies[4] == "You're booked, reference G7. See you on Friday, December 4th."
        assert "Which workshop: North or South?" == replies[2]
    finally:
        server.close()


def test_a_failed_webhook_undoes_the_sql_steps_before_it(tmp_path: Path) -> None:
    server = CannedHttpServer(status=503)
    try:
        tenant = Tenant.model_validate({
            "name": "shop", "display_name": "Shop", "greeting_prompt": "x",
            "data_sql": "CREATE TABLE IF NOT EXISTS holds (item TEXT);",
            "intents": {"hold": {
                "match": ["hold"],
                "slots": {"item": {"type": "digits", "min_length": 3, "ask": "Which item?"}},
                "confirm": "Hold item {{ item }}?",
                "action": [{"sql": "INSERT INTO holds VALUES (:item)"},
                           {"webhook": {"url": server.base_url, "failure": "Not now."}}],
                "reply": "Held."}}})
        engine = DialogEngine(tenant, TenantDatabases(tmp_path), today=lambda: TODAY)
        state = DialogState()
        assert engine.reply(state, "hold item 1 2 3").text == "Hold item 123?"
        assert engine.reply(state, "yes").text == "Not now."
        with engine.db.transaction() as conn:
            assert conn.execute("SELECT COUNT(*) FROM holds").fetchone()[0] == 0
        assert len(server.requests) == 1
    finally:
        server.close()


def test_slot_defaults_of_every_type_come_from_a_lookup(tmp_path: Path) -> None:
    tenant = Tenant.model_validate({
        "name": "shop", "display_name": "Shop", "greeting_prompt": "x",
        "data_sql": "CREATE TABLE IF NOT EXISTS last (day TEXT, at TEXT, qty TEXT);\n"
                    "INSERT OR IGNORE INTO last VALUES ('2026-12-04', '10:30', '12');",
        "intents": {"again": {
            "match": ["same again"],
            "lookup": [{"sql": "SELECT * FROM last", "as": "prev"}],
            "slots": {"day": {"type": "date", "default": "prev.day"},
                      "at": {"type": "time", "default": "prev.at"},
                      "qty": {"type": "digits", "min_length": 1, "default": "prev.qty"}},
            "reply": "{{ qty }} on {{ day | say_date }} at {{ at | say_time }}."}}})
    engine = DialogEngine(tenant, TenantDatabases(tmp_path), today=lambda: TODAY)
    assert engine.reply(DialogState(), "same again please").text == \
        "12 on Friday, December 4th at 10:30 AM."
