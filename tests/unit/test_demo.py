"""The demo checks outcomes, not only that calls were answered."""

from __future__ import annotations

import asyncio
from pathlib import Path

from voice_agent.calls.admission import Admission
from voice_agent.calls.record import CallRecord
from voice_agent.cli.devtools import demo_scripts, task_done
from voice_agent.tenants.data import TenantDatabases


def record(caller: str, reply: str = "") -> CallRecord:
    call = CallRecord(session_id="s", channel_id="c", channel_name="SIP/c", caller=caller,
                      tenant="t")
    if reply:
        call.turns.append({"reply": reply})
    return call


def test_each_demo_task_holds_only_once_its_outcome_is_true(tmp_path: Path) -> None:
    tasks = demo_scripts()
    assert set(tasks) == {"18005551234", "18005555678", "18005559999"}
    order, booking, enrolment = tasks["18005551234"], tasks["18005555678"], tasks["18005559999"]
    assert task_done(order, record("555", "Order 12345 has shipped."), tmp_path)
    assert not task_done(order, record("555", "What is your order number?"), tmp_path)
    assert not task_done(booking, record("555"), tmp_path)
    assert not task_done(enrolment, record("555"), tmp_path)
    databases = TenantDatabases(tmp_path)
    with databases.of("healthplus").transaction() as connection:
        connection.execute("INSERT INTO appointments (caller_id, clinic, day, time) "
                           "VALUES ('555', 'Downtown', '2026-12-07', '15:00')")
    with databases.of("edulearn").transaction() as connection:
        connection.execute("INSERT INTO enrolments (course_code, caller_id) "
                           "SELECT code, '555' FROM courses LIMIT 1")
    assert task_done(booking, record("555"), tmp_path)
    assert task_done(enrolment, record("555"), tmp_path)
    assert not task_done(enrolment, record("777"), tmp_path)  # someone else's enrolment


async def test_wait_idle_waits_for_the_calls_then_says_whether_they_ended() -> None:
    admission = Admission(5, "busy")
    admission.spawn(asyncio.sleep(0.05), "short")
    assert await admission.wait_idle(1.0)
    admission.spawn(asyncio.sleep(10), "long")
    assert not await admission.wait_idle(0.05)
    await admission.end_all()
