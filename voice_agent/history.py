"""Call history that survives a restart: every ended call, stored off the media path.

SQLAlchemy Core, not a home-made layer: one table, one JSON column for what a
call did (turns with transcripts and stage times, barge-ins, provider errors,
state transitions, prompts), and the same code on SQLite (the default, a file
under ``DATA_DIR``) and PostgreSQL (``VOICE_AGENT_HISTORY_URL=postgresql+psycopg://…``).

Writes never block a call: :meth:`CallHistory.submit` only puts the record on
a bounded queue, and one writer thread stores it. When the database cannot be
written (read-only, disk full, server down) the records stay queued, in memory
up to ``MAX_PENDING`` (the oldest are dropped past that, counted), the error is
logged at most once a minute, and the writer retries. :meth:`CallHistory.close`
stores what is queued before the process exits, so a SIGTERM mid-call still
records that call (outcome ``interrupted``).

What is stored is redacted: caller transcripts pass through the dialog's
identity redaction, and a tenant with ``redact_caller: true`` (health data) gets
its callers' numbers replaced.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    delete,
    insert,
    inspect,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from voice_agent.calls.metrics import outcome
from voice_agent.calls.record import CallRecord, CallState
from voice_agent.config import Settings
from voice_agent.dialog.redact import redact
from voice_agent.tenants import TenantRegistry

log = logging.getLogger(__name__)

MAX_PENDING = 10_000
ERROR_LOG_INTERVAL = 60.0
RETRY_SECONDS = 5.0

metadata = MetaData()
calls = Table(
    "calls", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("session_id", String(64), nullable=False, index=True),
    Column("entry", String(8), nullable=False),
    Column("tenant", String(64), nullable=False, index=True),
    Column("caller", String(64), nullable=False),
    Column("started_at", Float, nullable=False, index=True),
    Column("answered_at", Float),
    Column("ended_at", Float),
    Column("outcome", String(32), nullable=False, index=True),
    Column("end_reason", String(512), nullable=False),
    Column("detail", JSON, nullable=False),
)


def history_url(settings: Settings) -> str | None:
    """``HISTORY_URL``, or a SQLite file in the data directory (``None``: ``off``)."""
    if settings.history_url == "off":
        return None
    if settings.history_url:
        return settings.history_url
    return f"sqlite:///{settings.data_directory() / 'history.sqlite3'}"


def stored_form(record: CallRecord, entry: str, redact_caller: bool) -> dict[str, Any]:
    """The row for one ended call: identity redacted, monotonic stamps kept relative."""
    answered = next((at for at, state in record.transitions
                     if state not in (CallState.STARTING, CallState.CLOSED)), None)
    turns = []
    for turn in record.turns:
        turn = dict(turn)
        for key in ("heard", "played_text"):
            if isinstance(turn.get(key), str):
                turn[key] = redact(turn[key])
        turns.append(turn)
    detail = {"turns": turns, "barge_ins": record.barge_ins, "errors": record.errors,
              "transitions": [(at, state.value) for at, state in record.transitions],
              "prompts": record.prompts, "dtmf": len(record.dtmf),
              "channel": record.channel_name, "number": record.number,
              # turn and barge-in stamps are monotonic (the media clock's); this maps
              # them to wall time (taken at the call's end, in the process that ran it)
              "monotonic_to_wall": time.time() - time.monotonic()}
    return {"session_id": record.session_id, "entry": entry, "tenant": record.tenant or "",
            "caller": "[redacted]" if redact_caller else record.caller,
            "started_at": record.started_at, "answered_at": answered,
            "ended_at": record.ended_at, "outcome": outcome(record),
            "end_reason": record.end_reason[:512], "detail": _plain(detail)}


def _plain(value: Any) -> Any:
    """JSON-safe: tuples to lists, numbers and text kept, anything else as text."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


class HistoryReader:
    """Reads stored calls (the dashboard's side); blocking: call it from a thread."""

    def __init__(self, engine: Engine | str) -> None:
        self._engine = create_engine(engine) if isinstance(engine, str) else engine

    def recent(self, limit: int = 100, *, since: float | None = None, until: float | None = None,
               number: str | None = None, **where: str) -> list[dict[str, Any]]:
        """The latest calls (newest first): column equality, the dialled ``number`` (kept
        in the detail, so older databases need no new column), and start time in
        ``[since, until)`` when given. A table not created yet is an empty history."""
        query = select(calls).order_by(calls.c.id.desc()).limit(limit)
        if number:
            query = query.where(calls.c.detail["number"].as_string() == number)
        for column, value in where.items():
            query = query.where(calls.c[column] == value)
        if since is not None:
            query = query.where(calls.c.started_at >= since)
        if until is not None:
            query = query.where(calls.c.started_at < until)
        return self._rows(query)

    def get(self, call_id: int) -> dict[str, Any] | None:
        """One stored call by its row id."""
        rows = self._rows(select(calls).where(calls.c.id == call_id))
        return rows[0] if rows else None

    def _rows(self, query: Any) -> list[dict[str, Any]]:
        if not inspect(self._engine).has_table(calls.name):
            return []
        with self._engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    def close(self) -> None:
        self._engine.dispose()


class CallHistory:
    """Stores ended calls from a writer thread; reads for the dashboard and tests."""

    def __init__(self, url: str, tenants: TenantRegistry, retention_days: float = 30.0) -> None:
        self.url = url
        self._engine: Engine = create_engine(url)
        self._reader = HistoryReader(self._engine)
        self._redact = {tenant.name for tenant in tenants if tenant.redact_caller}
        self._retention = retention_days * 86400
        self._pending: collections.deque[dict[str, Any]] = collections.deque()
        self._lock = threading.Condition()
        self._closing = False
        self.dropped = 0
        self.stored = 0
        self._last_error_log = 0.0
        self._thread = threading.Thread(target=self._run, name="call-history", daemon=True)
        self._thread.start()

    def submit(self, record: CallRecord, entry: str) -> None:
        """Queue an ended call (never blocks, never raises into the call path)."""
        try:
            row = stored_form(record, entry, record.tenant in self._redact)
        except Exception:  # a record we cannot serialise must not break the call's end
            log.exception("call %s: cannot store its record", record.session_id)
            return
        with self._lock:
            if len(self._pending) >= MAX_PENDING:
                self._pending.popleft()
                self.dropped += 1
            self._pending.append(row)
            self._lock.notify()

    def close(self, timeout: float = 10.0) -> None:
        """Store what is queued (up to ``timeout``), then stop the writer."""
        with self._lock:
            self._closing = True
            self._lock.notify()
        self._thread.join(timeout)
        if self._pending:
            log.error("call history: %d record(s) could not be stored before exit",
                      len(self._pending))
        self._engine.dispose()

    def recent(self, limit: int = 100, **where: str) -> list[dict[str, Any]]:
        """The latest calls (newest first), optionally filtered by column equality."""
        return self._reader.recent(limit, **where)

    def _run(self) -> None:
        created = False
        expired_at: float | None = None  # not 0.0: monotonic time starts near 0 at boot
        while True:
            with self._lock:
                while not self._pending and not self._closing:
                    self._lock.wait(timeout=3600)
                if not self._pending and self._closing:
                    return
                batch = list(self._pending)
                self._pending.clear()
            try:
                with self._engine.begin() as connection:
                    if not created:
                        metadata.create_all(connection)
                        created = True
                    connection.execute(insert(calls), batch)
            except SQLAlchemyError as exc:
                with self._lock:  # back in front of newer ones, within the bound
                    self._pending.extendleft(reversed(batch))
                    while len(self._pending) > MAX_PENDING:
                        self._pending.popleft()
                        self.dropped += 1
                self._error(exc)
                if self._closing:
                    return
                time.sleep(RETRY_SECONDS)
                continue
            self.stored += len(batch)
            if expired_at is None or time.monotonic() - expired_at > 3600:
                expired_at = time.monotonic()
                self._expire()

    def _expire(self) -> None:
        """Delete calls older than the retention."""
        if self._retention <= 0:
            return
        try:
            with self._engine.begin() as connection:
                connection.execute(delete(calls).where(
                    calls.c.started_at < time.time() - self._retention))
        except SQLAlchemyError as exc:
            self._error(exc)

    def _error(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._last_error_log >= ERROR_LOG_INTERVAL:
            self._last_error_log = now
            log.error("call history at %s cannot be written (%s); %d record(s) kept in "
                      "memory, retrying", self._engine.url.render_as_string(hide_password=True),
                      str(exc).splitlines()[0], len(self._pending))


@contextlib.contextmanager
def call_history(settings: Settings, tenants: TenantRegistry) -> Iterator[CallHistory | None]:
    """The history for the block (``None`` when it is off); queued calls stored at exit."""
    url = history_url(settings)
    if url is None:
        yield None
        return
    history = CallHistory(url, tenants, settings.history_retention_days)
    log.info("call history in %s", history._engine.url.render_as_string(hide_password=True))
    try:
        yield history
    finally:
        history.close()
