"""The tenants' tools: typed functions over :mod:`voice_agent.tenants.data`.

Both dialog paths use the same functions: the deterministic engine calls them
directly, and a capable LLM calls them through :data:`TOOL_SPECS` and
:func:`run_tool`. Business rules (clinic hours, taken slots, full courses) live
here, not in either dialog path, so neither can book what the other would refuse.
Failures are :class:`ToolError` subclasses whose message is safe to say to a caller.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, time
from typing import Any

from voice_agent.providers.llm import ToolSpec
from voice_agent.tenants.data import TenantDB


class ToolError(Exception):
    """A tool refused; the message explains why in words a caller can hear."""


class NotFoundError(ToolError):
    """The order, product, appointment or course does not exist."""


class ClinicClosedError(ToolError):
    """The requested time is outside the clinic's opening hours."""


class SlotTakenError(ToolError):
    """Another appointment already holds that clinic, day and time."""


class CourseFullError(ToolError):
    """Every seat of the course is taken."""


class AlreadyEnrolledError(ToolError):
    """The caller is already enrolled in the course."""


@dataclass(frozen=True)
class Order:
    order_number: str
    item: str
    status: str
    delivery_date: date | None


@dataclass(frozen=True)
class Product:
    sku: str
    name: str
    stock: int
    price_cents: int


@dataclass(frozen=True)
class Clinic:
    name: str
    address: str
    hours_text: str


@dataclass(frozen=True)
class Appointment:
    id: int
    caller_id: str
    clinic: str
    day: date
    time: time


@dataclass(frozen=True)
class Course:
    code: str
    title: str
    schedule: str
    start_date: date
    seats: int
    enrolled: int

    @property
    def seats_left(self) -> int:
        return max(0, self.seats - self.enrolled)


def _words(text: str) -> set[str]:
    return set(text.lower().split())


# --- techstore ---------------------------------------------------------------


def order_status(db: TenantDB, order_number: str) -> Order:
    with db.transaction() as conn:
        row = conn.execute(
            "SELECT * FROM orders WHERE order_number = ?", (order_number,)
        ).fetchone()
    if row is None:
        raise NotFoundError(f"no order {order_number}")
    delivery = date.fromisoformat(row["delivery_date"]) if row["delivery_date"] else None
    return Order(row["order_number"], row["item"], row["status"], delivery)


def return_policy(db: TenantDB) -> str:
    with db.transaction() as conn:
        return str(conn.execute("SELECT text FROM policies WHERE name = 'returns'").fetchone()[0])


def find_product(db: TenantDB, text: str) -> Product:
    """The product whose keywords occur in ``text`` (an ASR transcript or a name)."""
    spoken = _words(text)
    with db.transaction() as conn:
        rows = conn.execute("SELECT * FROM products ORDER BY sku").fetchall()
    for row in rows:
        if spoken & _words(row["keywords"]):
            return Product(row["sku"], row["name"], row["stock"], row["price_cents"])
    raise NotFoundError(f"no product matching {text!r}")


# --- healthplus --------------------------------------------------------------


def clinics(db: TenantDB) -> list[Clinic]:
    with db.transaction() as conn:
        rows = conn.execute("SELECT * FROM clinics ORDER BY name").fetchall()
    return [Clinic(r["name"], r["address"], r["hours_text"]) for r in rows]


def _row_to_appointment(row: Any) -> Appointment:
    return Appointment(
        row["id"], row["caller_id"], row["clinic"],
        date.fromisoformat(row["day"]), time.fromisoformat(row["time"]),
    )


def _check_slot(conn: Any, clinic: str, day: date, at: time, ignore_id: int | None) -> None:
    hours = conn.execute(
        "SELECT opens, closes FROM clinic_hours WHERE clinic = ? AND weekday = ?",
        (clinic, day.weekday()),
    ).fetchone()
    if hours is None:
        raise ClinicClosedError(f"{clinic} clinic is closed on {day:%A}s")
    if not time.fromisoformat(hours["opens"]) <= at < time.fromisoformat(hours["closes"]):
        raise ClinicClosedError(f"{clinic} clinic is not open at that time on {day:%A}s")
    taken = conn.execute(
        "SELECT id FROM appointments WHERE clinic = ? AND day = ? AND time = ? "
        "AND status = 'booked' AND id IS NOT ?",
        (clinic, day.isoformat(), at.strftime("%H:%M"), ignore_id),
    ).fetchone()
    if taken is not None:
        raise SlotTakenError("that time is already taken")


def check_slot(
    db: TenantDB, clinic: str, day: date, at: time, ignore_id: int | None = None
) -> None:
    """Raise unless ``clinic`` is open and free then; lets a dialog refuse before confirming."""
    with db.transaction() as conn:
        _check_slot(conn, clinic, day, at, ignore_id)


def book_appointment(db: TenantDB, caller_id: str, clinic: str, day: date, at: time) -> Appointment:
    with db.transaction() as conn:
        _check_slot(conn, clinic, day, at, None)
        cursor = conn.execute(
            "INSERT INTO appointments (caller_id, clinic, day, time) VALUES (?, ?, ?, ?)",
            (caller_id, clinic, day.isoformat(), at.strftime("%H:%M")),
        )
        new_id = cursor.lastrowid
    assert new_id is not None
    return Appointment(new_id, caller_id, clinic, day, at)


def next_appointment(db: TenantDB, caller_id: str, today: date) -> Appointment:
    """The caller's earliest booked appointment from ``today`` on."""
    with db.transaction() as conn:
        row = conn.execute(
            "SELECT * FROM appointments WHERE caller_id = ? AND status = 'booked' AND day >= ? "
            "ORDER BY day, time LIMIT 1",
            (caller_id, today.isoformat()),
        ).fetchone()
    if row is None:
        raise NotFoundError("no upcoming appointment for this number")
    return _row_to_appointment(row)


def move_appointment(
    db: TenantDB, appointment_id: int, clinic: str, day: date, at: time
) -> Appointment:
    with db.transaction() as conn:
        _check_slot(conn, clinic, day, at, appointment_id)
        conn.execute(
            "UPDATE appointments SET clinic = ?, day = ?, time = ? WHERE id = ?",
            (clinic, day.isoformat(), at.strftime("%H:%M"), appointment_id),
        )
        row = conn.execute("SELECT * FROM appointments WHERE id = ?", (appointment_id,)).fetchone()
    if row is None:
        raise NotFoundError("that appointment no longer exists")
    return _row_to_appointment(row)


def cancel_appointment(db: TenantDB, appointment_id: int) -> None:
    with db.transaction() as conn:
        changed = conn.execute(
            "UPDATE appointments SET status = 'cancelled' WHERE id = ? AND status = 'booked'",
            (appointment_id,),
        ).rowcount
    if not changed:
        raise NotFoundError("that appointment is not booked")


# --- edulearn ----------------------------------------------------------------

_COURSE_QUERY = (
    "SELECT c.*, (SELECT COUNT(*) FROM enrolments e WHERE e.course_code = c.code) AS enrolled "
    "FROM courses c"
)


def _row_to_course(row: Any) -> Course:
    return Course(
        row["code"], row["title"], row["schedule"],
        date.fromisoformat(row["start_date"]), row["seats"], row["enrolled"],
    )


def courses(db: TenantDB) -> list[Course]:
    with db.transaction() as conn:
        rows = conn.execute(f"{_COURSE_QUERY} ORDER BY c.start_date").fetchall()
    return [_row_to_course(r) for r in rows]


def find_course(db: TenantDB, text: str) -> Course:
    """The course whose code or keywords occur in ``text``."""
    spoken = _words(text)
    with db.transaction() as conn:
        rows = conn.execute(f"{_COURSE_QUERY} ORDER BY c.start_date").fetchall()
    for row in rows:
        if row["code"].lower() in spoken or spoken & _words(row["keywords"]):
            return _row_to_course(row)
    raise NotFoundError(f"no course matching {text!r}")


def enrol(db: TenantDB, caller_id: str, course_code: str) -> Course:
    with db.transaction() as conn:
        row = conn.execute(f"{_COURSE_QUERY} WHERE c.code = ?", (course_code,)).fetchone()
        if row is None:
            raise NotFoundError(f"no course {course_code}")
        course = _row_to_course(row)
        if conn.execute(
            "SELECT 1 FROM enrolments WHERE course_code = ? AND caller_id = ?",
            (course_code, caller_id),
        ).fetchone():
            raise AlreadyEnrolledError(f"you are already enrolled in {course.title}")
        if course.seats_left == 0:
            raise CourseFullError(f"{course.title} is full")
        conn.execute(
            "INSERT INTO enrolments (course_code, caller_id) VALUES (?, ?)",
            (course_code, caller_id),
        )
    return Course(**{**asdict(course), "enrolled": course.enrolled + 1})


# --- LLM function calling ----------------------------------------------------

_DATE = {"type": "string", "description": "Date as YYYY-MM-DD."}
_TIME = {"type": "string", "description": "24-hour time as HH:MM."}
_CLINIC = {"type": "string", "enum": ["Downtown", "Riverside"]}


def _spec(
    name: str, description: str, optional: tuple[str, ...] = (), **properties: dict[str, Any]
) -> ToolSpec:
    required = [k for k in properties if k not in optional]
    return ToolSpec(name, description, {
        "type": "object", "properties": properties, "required": required,
    })


TOOL_SPECS: dict[str, tuple[ToolSpec, ...]] = {
    "techstore": (
        _spec("order_status", "Status and delivery date of an order.",
              order_number={"type": "string", "pattern": "^[0-9]{4,}$"}),
        _spec("return_policy", "The store's return and refund policy."),
        _spec("product_availability", "Whether a product is in stock.",
              product={"type": "string", "description": "Product name as the caller said it."}),
    ),
    "healthplus": (
        _spec("clinic_hours", "Opening hours and address of every clinic."),
        _spec("book_appointment", "Book an appointment for the caller.",
              clinic=_CLINIC, date=_DATE, time=_TIME),
        _spec("move_appointment", "Move the caller's next appointment.",
              optional=("clinic",), date=_DATE, time=_TIME, clinic=_CLINIC),
        _spec("cancel_appointment", "Cancel the caller's next appointment."),
    ),
    "edulearn": (
        _spec("list_courses", "The course catalogue with schedules and free seats."),
        _spec("enrol", "Enrol the caller in a course.",
              course={"type": "string", "description": "Course title or code."}),
    ),
}


def run_tool(
    db: TenantDB, name: str, arguments: dict[str, Any], caller_id: str, today: date
) -> dict[str, Any]:
    """Execute an LLM tool call; the JSON-able result (or ``error``) goes back to the model."""
    try:
        result: Any
        if name == "order_status":
            result = order_status(db, str(arguments["order_number"]))
        elif name == "return_policy":
            result = {"policy": return_policy(db)}
        elif name == "product_availability":
            result = find_product(db, str(arguments["product"]))
        elif name == "clinic_hours":
            result = {"clinics": [asdict(c) for c in clinics(db)]}
        elif name == "book_appointment":
            result = book_appointment(
                db, caller_id, arguments["clinic"],
                date.fromisoformat(arguments["date"]), time.fromisoformat(arguments["time"]),
            )
        elif name == "move_appointment":
            current = next_appointment(db, caller_id, today)
            result = move_appointment(
                db, current.id, arguments.get("clinic") or current.clinic,
                date.fromisoformat(arguments["date"]), time.fromisoformat(arguments["time"]),
            )
        elif name == "cancel_appointment":
            current = next_appointment(db, caller_id, today)
            cancel_appointment(db, current.id)
            result = {"cancelled": asdict(current)}
        elif name == "list_courses":
            result = {"courses": [{**asdict(c), "seats_left": c.seats_left} for c in courses(db)]}
        elif name == "enrol":
            result = enrol(db, caller_id, find_course(db, str(arguments["course"])).code)
        else:
            return {"error": f"unknown tool {name}"}
    except ToolError as exc:
        return {"error": str(exc)}
    except (KeyError, ValueError) as exc:
        return {"error": f"bad arguments for {name}: {exc}"}
    return _jsonable(result if isinstance(result, dict) else asdict(result))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value.isoformat() if isinstance(value, date | time) else value
