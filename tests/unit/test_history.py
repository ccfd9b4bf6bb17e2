"""Call history: stored off the call path, redacted, kept through a bad database, expired."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest

from tests.helpers import eventually
from voice_agent.calls.record import CallRecord, CallState
from voice_agent.config import Settings
from voice_agent.history import CallHistory, call_history, history_url
from voice_agent.tenants import TenantRegistry


def ended(tenant: str = "techstore", reason: str = "agent ended the call",
          started_at: float | None = None) -> CallRecord:
    record = CallRecord(session_id=f"s{time.monotonic_ns()}", channel_id="c",
                        channel_name="PJSIP/x-1", caller="+15551234567", tenant=tenant,
                        end_reason=reason)
    if started_at is not None:
        record.started_at = started_at
    record.transitions += [(record.started_at, CallState.STARTING),
                           (record.started_at + 1, CallState.GREETING)]
    record.turns.append({"heard": "my name is John Smith and my order is 1 2 3 4 5",
                         "reply": "Order 1 2 3 4 5 has shipped.", "speech_end": 1.0,
                         "first_audio": 1.5})
    record.ended_at = record.started_at + 30
    return record


async def test_ended_calls_are_stored_with_outcome_turns_and_identity_redacted(
        tmp_path: Path) -> None:
    history = CallHistory(f"sqlite:///{tmp_path / 'h.sqlite3'}", TenantRegistry.load())
    try:
        history.submit(ended("techstore"), "ari")
        history.submit(ended("healthplus", reason="service shutdown"), "agi")
        await eventually(lambda: history.stored == 2, what="two calls stored")
        clinic, shop = history.recent()
    finally:
        history.close()
    assert shop["tenant"] == "techstore" and shop["outcome"] == "completed"
    assert shop["caller"] == "+15551234567" and shop["entry"] == "ari"
    assert clinic["caller"] == "[redacted]"  # healthplus: redact_caller
    assert clinic["outcome"] == "interrupted"  # SIGTERM mid-call is not lost
    (turn,) = shop["detail"]["turns"]
    assert "John Smith" not in turn["heard"] and "[name]" in turn["heard"]
    assert turn["reply"] == "Order 1 2 3 4 5 has shipped."
    assert shop["answered_at"] == pytest.approx(shop["started_at"] + 1)
    assert shop["detail"]["transitions"][1][1] == "greeting"


def test_records_wait_in_memory_while_the_database_cannot_be_written(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("voice_agent.history.RETRY_SECONDS", 0.05)
    locked = tmp_path / "ro"
    locked.mkdir()
    url = f"sqlite:///{locked / 'h.sqlite3'}"
    locked.chmod(0o500)  # no new files: the database cannot be created
    if os.access(locked, os.W_OK):  # root ignores the mode: use a path that is a directory
        locked.chmod(0o700)
        (locked / "h.sqlite3").mkdir()
    with caplog.at_level(logging.ERROR, logger="voice_agent.history"):
        history = CallHistory(url, TenantRegistry.load())
        for _ in range(3):
            history.submit(ended(), "ari")
        time.sleep(0.5)  # several retries: one error line, not one per retry
        assert history.stored == 0
        errors = [r for r in caplog.records if "cannot be written" in r.getMessage()]
        assert len(errors) == 1 and "3 record(s) kept in memory" in errors[0].getMessage()
        history.close(timeout=1)
    locked.chmod(0o700)


def test_old_calls_expire_and_off_turns_history_off(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'h.sqlite3'}"
    history = CallHistory(url, TenantRegistry.load(), retention_days=1)
    history.submit(ended(started_at=time.time() - 3 * 86400), "ari")
    history.submit(ended(), "ari")
    history.close()
    reopened = CallHistory(url, TenantRegistry.load(), retention_days=1)
    reopened.submit(ended(), "ari")  # the writer expires old calls as it starts writing
    reopened.close()
    reader = CallHistory(url, TenantRegistry.load())
    assert len(reader.recent()) == 2  # the 3-day-old call is gone
    reader.close()
    off = Settings(_env_file=None, history_url="off")
    assert history_url(off) is None
    with call_history(off, TenantRegistry.load()) as none:
        assert none is None
    assert history_url(Settings(_env_file=None, data_dir=tmp_path)) == \
        f"sqlite:///{tmp_path / 'history.sqlite3'}"
