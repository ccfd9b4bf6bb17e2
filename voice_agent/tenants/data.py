"""The tenants' business data: one small SQLite file, created and seeded on first use.

The three demo businesses need data that *changes* during a call (a booked
appointment, an enrolment) and must still be there afterwards, so a real database
file is used rather than in-memory fixtures. SQLite keeps it dependency-free and
inspectable with the ``sqlite3`` shell.

Calls run the dialog engine in worker threads, so one connection per process and
path is shared (``check_same_thread=False``) and every access goes through
:meth:`TenantDB.transaction`, which serialises writers with a lock: a call's
check-then-book is atomic, and two callers cannot take the same appointment slot.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DB_FILENAME = "tenants.sqlite3"
DEFAULT_DATA_DIR = Path.home() / ".local" / "share" / "voice-agent"
#: Overrides :data:`DEFAULT_DATA_DIR`, so containers can put the file on a volume.
DATA_DIR_ENV = "VOICE_AGENT_DATA_DIR"

SCHEMA = """
CREATE TABLE IF NOT EXISTS policies (name TEXT PRIMARY KEY, text TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS orders (
    order_number TEXT PRIMARY KEY, item TEXT NOT NULL, status TEXT NOT NULL,
    delivery_date TEXT
);
CREATE TABLE IF NOT EXISTS products (
    sku TEXT PRIMARY KEY, name TEXT NOT NULL, keywords TEXT NOT NULL,
    stock INTEGER NOT NULL, price_cents INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS clinics (
    name TEXT PRIMARY KEY, address TEXT NOT NULL, hours_text TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS clinic_hours (
    clinic TEXT NOT NULL REFERENCES clinics(name), weekday INTEGER NOT NULL,
    opens TEXT NOT NULL, closes TEXT NOT NULL, PRIMARY KEY (clinic, weekday)
);
CREATE TABLE IF NOT EXISTS appointments (
    id INTEGER PRIMARY KEY AUTOINCREMENT, caller_id TEXT NOT NULL,
    clinic TEXT NOT NULL REFERENCES clinics(name), day TEXT NOT NULL, time TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'booked'
);
CREATE TABLE IF NOT EXISTS courses (
    code TEXT PRIMARY KEY, title TEXT NOT NULL, keywords TEXT NOT NULL,
    schedule TEXT NOT NULL, start_date TEXT NOT NULL, seats INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS enrolments (
    id INTEGER PRIMARY KEY AUTOINCREMENT, course_code TEXT NOT NULL REFERENCES courses(code),
    caller_id TEXT NOT NULL, UNIQUE (course_code, caller_id)
);
"""

RETURN_POLICY = (
    "You can return most items within 30 days of delivery for a full refund, as long as "
    "they are in their original packaging. Opened headphones can only be exchanged. "
    "Returns are free: we email you a prepaid label."
)

#: Caller id that owns the seeded appointments, so move and cancel work in demos.
SEED_CALLER = "+15550100"

_SEED: dict[str, list[tuple[object, ...]]] = {
    "policies": [("returns", RETURN_POLICY)],
    "orders": [
        ("12345", "AeroBook 14 laptop", "shipped", "2026-12-03"),
        ("67890", "Nova 8 phone", "processing", None),
        ("55555", "Lumen 4K monitor", "delivered", "2026-11-20"),
    ],
    "products": [
        ("AB14", "AeroBook 14 laptop", "aerobook laptop laptops notebook", 7, 89900),
        ("PLS1", "Pulse wireless headphones", "pulse headphones headphone headset", 0, 14900),
        ("NOV8", "Nova 8 phone", "nova phone phones smartphone mobile", 12, 59900),
        ("LUM4", "Lumen 4K monitor", "lumen monitor monitors screen display", 3, 32900),
    ],
    "clinics": [
        ("Downtown", "12 Main Street",
         "Monday to Friday 8 AM to 6 PM, and Saturday 9 AM to 1 PM"),
        ("Riverside", "40 River Road", "Monday to Saturday 9 AM to 5 PM"),
    ],
    "clinic_hours": [
        *[("Downtown", day, "08:00", "18:00") for day in range(5)],
        ("Downtown", 5, "09:00", "13:00"),
        *[("Riverside", day, "09:00", "17:00") for day in range(6)],
    ],
    "appointments": [
        (1, SEED_CALLER, "Downtown", "2026-12-10", "10:00", "booked"),
        (2, "+15550199", "Riverside", "2026-12-04", "15:00", "booked"),
    ],
    "courses": [
        ("PY101", "Python Basics", "python", "Mondays and Wednesdays, 6 to 8 PM",
         "2027-01-11", 20),
        ("DS101", "Data Science 101", "data science", "Tuesdays and Thursdays, 7 to 9 PM",
         "2027-01-12", 15),
        ("WEB101", "Web Development", "web website websites", "Saturdays, 10 AM to 1 PM",
         "2027-01-16", 2),
    ],
    "enrolments": [
        (1, "PY101", "+15550111"),
        (2, "WEB101", "+15550112"),
        (3, "WEB101", "+15550113"),
    ],
}


def resolve_db_path(path: Path | None = None) -> Path:
    """``path`` if given, else the file in ``$VOICE_AGENT_DATA_DIR`` or the user data dir."""
    if path is not None:
        return path
    directory = os.environ.get(DATA_DIR_ENV)
    return (Path(directory) if directory else DEFAULT_DATA_DIR) / DB_FILENAME


class TenantDB:
    """One SQLite connection shared by a process's calls, guarded by a lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
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
        with self._lock:
            self._conn.close()

    def _create_and_seed(self) -> None:
        # INSERT OR IGNORE keeps seeding idempotent: reopening never duplicates rows
        # nor undoes what callers changed.
        with self.transaction() as conn:
            conn.executescript(f"BEGIN;\n{SCHEMA}\nCOMMIT;")
            for table, rows in _SEED.items():
                marks = ", ".join("?" * len(rows[0]))
                conn.executemany(f"INSERT OR IGNORE INTO {table} VALUES ({marks})", rows)


_open: dict[tuple[int, Path], TenantDB] = {}
_open_lock = threading.Lock()


def open_db(path: Path | None = None) -> TenantDB:
    """The process's shared :class:`TenantDB` for ``path`` (see :func:`resolve_db_path`).

    Keyed by process id as well, so a forked worker opens its own connection
    instead of sharing its parent's file handle.
    """
    key = (os.getpid(), resolve_db_path(path).resolve())
    with _open_lock:
        if key not in _open:
            _open[key] = TenantDB(key[1])
        return _open[key]
