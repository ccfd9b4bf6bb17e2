"""The tenants' business data: one small SQLite file per tenant, made from its data.sql.

Businesses need data that *changes* during a call (a booking, an order) and
must still be there afterwards, so a real database file is used rather than
in-memory fixtures. SQLite keeps it dependency-free and inspectable with the
``sqlite3`` shell. Tenant files name values in SQL as ``:slot`` or
``:result.column``; :func:`bind` turns those into SQLite parameters, so a
caller's words are never pasted into a statement.

Calls run the dialog engine in worker threads, so one connection per process and
path is shared (``check_same_thread=False``) and every access goes through
:meth:`TenantDB.transaction`, which serialises writers with a lock: a call's
check-then-book is atomic, and two callers cannot take the same slot.
"""

from __future__ import annotations

import datetime
import os
import re
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

DEFAULT_DATA_DIR = Path.home() / ".local" / "share" / "voice-agent"
#: Overrides :data:`DEFAULT_DATA_DIR`, so containers can put the files on a volume.
DATA_DIR_ENV = "VOICE_AGENT_DATA_DIR"
#: Each tenant's database is ``<data dir>/tenants/<name>.sqlite3``.
TENANT_DB_DIR = "tenants"


def resolve_data_dir(directory: Path | None = None) -> Path:
    """``directory`` if given, else ``$VOICE_AGENT_DATA_DIR`` or the user data dir."""
    if directory is not None:
        return directory
    configured = os.environ.get(DATA_DIR_ENV)
    return Path(configured) if configured else DEFAULT_DATA_DIR


def tenant_db_path(tenant: str, directory: Path | None = None) -> Path:
    """Where tenant ``tenant``'s database lives under the data directory."""
    return resolve_data_dir(directory) / TENANT_DB_DIR / f"{tenant}.sqlite3"


class TenantDB:
    """One SQLite connection shared by a process's calls, guarded by a lock."""

    def __init__(self, path: Path, data_sql: str = "") -> None:
        self.path = path
        self._data_sql = data_sql
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA foreign_keys = ON")
        # WAL: readers never wait for a writer, and a commit costs one fsync, not several.
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._lock = threading.Lock()
        self._create_and_seed()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Exclusive access; commits on success and rolls back if the block raises."""
        with self._lock, self._conn:
            yield self._conn

    def close(self) -> None:
        """Close the connection; :func:`open_db` opens a new one for this path after."""
        with self._lock:
            self._conn.close()
        with _open_lock:
            for key, db in list(_open.items()):
                if db is self:
                    del _open[key]

    def apply(self, data_sql: str) -> None:
        """Run a (new) ``data.sql``: a reloaded tenant may bring new tables or rows."""
        self._data_sql = data_sql
        self._create_and_seed()

    @property
    def data_sql(self) -> str:
        return self._data_sql

    def _create_and_seed(self) -> None:
        # The tenant's data.sql uses CREATE TABLE IF NOT EXISTS and INSERT OR IGNORE,
        # so running it on every open never duplicates rows nor undoes what callers
        # changed (``tenants check`` insists on both).
        with self.transaction() as conn:
            conn.executescript(f"BEGIN;\n{self._data_sql}\nCOMMIT;")


class TenantDatabases:
    """Each tenant's own database, under one data directory.

    One business never reads another's tables: a tenant's intents run on its
    own file, created from its ``data.sql`` on first use.
    """

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = resolve_data_dir(directory)

    def path(self, tenant: str) -> Path:
        return tenant_db_path(tenant, self.directory)

    def of(self, tenant: str, data_sql: str = "") -> TenantDB:
        """Tenant ``tenant``'s shared :class:`TenantDB` (see :func:`open_db`)."""
        return open_db(self.path(tenant), data_sql)


_open: dict[tuple[int, Path], TenantDB] = {}
_open_lock = threading.Lock()


def open_db(path: Path, data_sql: str = "") -> TenantDB:
    """The process's shared :class:`TenantDB` for ``path``, created from ``data_sql``.

    Keyed by process id as well, so a forked worker opens its own connection
    instead of sharing its parent's file handle.
    """
    key = (os.getpid(), path.resolve())
    with _open_lock:
        if key not in _open:
            _open[key] = TenantDB(key[1], data_sql)
        elif data_sql and _open[key].data_sql != data_sql:  # the tenant was reloaded
            _open[key].apply(data_sql)
        return _open[key]


_NAME = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)(?:\.([A-Za-z_]\w*))?")


def sql_names(sql: str) -> set[tuple[str, str | None]]:
    """The values an SQL statement names: ``:slot`` → ``(slot, None)``, ``:row.col`` → both."""
    return {(m.group(1), m.group(2)) for m in _NAME.finditer(sql)}


def bind(sql: str, values: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """``sql`` with ``:row.col`` names made plain, and the parameters it needs from ``values``.

    A name that is a mapping (a result row, a chosen option) gives its ``key``
    attribute when named alone and its column when named with a dot; dates and
    times are passed in ISO form. A name missing from ``values`` is a ``KeyError``.
    """
    params: dict[str, Any] = {}

    def plain(match: re.Match[str]) -> str:
        name, column = match.group(1), match.group(2)
        value = values[name]
        if column is not None:
            value = value[column] if value is not None else None
        elif isinstance(value, Mapping):
            value = getattr(value, "key", None)
        params[f"{name}__{column}" if column else name] = sql_value(value)
        return f":{name}__{column}" if column else f":{name}"

    return _NAME.sub(plain, sql), params


def sql_value(value: Any) -> Any:
    """A Python value as SQLite stores it: ISO dates, ``HH:MM`` times."""
    if isinstance(value, datetime.time):
        return value.strftime("%H:%M")
    if isinstance(value, datetime.date):
        return value.isoformat()
    return value
