"""Reading a slot's value out of a caller's words, by the slot's type.

Types (``docs/tenants.md``): ``digits`` (a number said digit by digit,
tolerant of "to"/"for" heard for 2/4), ``date`` and ``time`` (spoken forms,
relative days), ``choice`` (a row of the tenant's database named by its words,
or picked by position), ``yes_no`` and ``text``. A bare answer ("4",
a name from a list, "yes", anything at all for ``text``) counts only when the agent
has just asked for that slot, so a stray word elsewhere does not fill it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import date, time
from typing import Any

from voice_agent.dialog.dates import parse_date, parse_time
from voice_agent.dialog.state import yes_or_no
from voice_agent.dialog.text import digit_run
from voice_agent.tenants.spec import Choices, Slot


class Choice(dict[str, Any]):
    """A row chosen for a ``choice`` slot; ``key`` is what queries receive for it."""

    def __init__(self, row: Mapping[str, Any], key_column: str, *,
                 by_position: bool = False) -> None:
        super().__init__(row)
        self.key = row[key_column]
        #: Picked as "the second one" or a key press rather than by name.
        self.by_position = by_position

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Choice) and other.key == self.key

    __hash__ = None  # type: ignore[assignment]


def _tokens(norm: str) -> set[str]:
    """The words, plus each two neighbours written as one ("post code" → "postcode")."""
    words = norm.split()
    return {*words, *(a + b for a, b in zip(words, words[1:], strict=False))}


def _words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9 ]", " ", text.lower()).split()


def _row_words(row: Mapping[str, Any], columns: Sequence[str]) -> set[str]:
    return {w for column in columns for w in _words(str(row[column] or ""))}


def _near(pattern: str, norm: str) -> list[str]:
    """The numbers in ``norm`` said right before or after ``pattern`` ("for 4", "4 people")."""
    found = re.finditer(rf"(?:\b(?:{pattern})\s+(\d+)\b)|(?:\b(\d+)\s+(?:{pattern})\b)", norm)
    return [m.group(1) or m.group(2) for m in found]


def pick(choices: Choices, rows: Sequence[Mapping[str, Any]], norm: str, *,
         awaited: bool) -> Choice | None:
    """The row the words name, or (when asked) the one picked by position or key press."""
    spoken = _tokens(norm)
    for row in rows:
        if spoken & _row_words(row, choices.match):
            return Choice(row, choices.key)
    if not (awaited and choices.by_position and rows):
        return None
    # A position is more robust than a name that speech recognition mangles.
    if re.search(r"\blast\b", norm):
        return Choice(rows[-1], choices.key, by_position=True)
    match = re.fullmatch(r"(\d)", norm) or re.search(r"\b(\d+)(?:st|nd|rd|th)\b", norm)
    if match and 1 <= int(match.group(1)) <= len(rows):
        return Choice(rows[int(match.group(1)) - 1], choices.key, by_position=True)
    return None


def answers_only_itself(slot: Slot, value: Any) -> bool:
    """Whether a value given for the awaited slot uses up the turn's words: a pick by
    position ("the first one" is not the 1st of the month) and free text or a yes/no
    (a number plate's digits are not a count)."""
    return slot.type in ("text", "yes_no") or (isinstance(value, Choice) and value.by_position)


def parse(slot: Slot, norm: str, raw: str, today: date, *, awaited: bool,
          rows: Sequence[Mapping[str, Any]] = ()) -> Any:
    """The value of ``slot`` in the normalised words ``norm``, or ``None``."""
    if slot.type == "digits":
        if slot.near is not None and not awaited:
            norm = " ".join(_near(slot.near, norm))
        digits = digit_run(norm, min_len=slot.min_length)
        if digits is not None and slot.max_length and len(digits) > slot.max_length:
            return None
        return digits
    if slot.type == "date":
        return parse_date(norm, today, bare=awaited)
    if slot.type == "time":
        return parse_time(norm, bare=awaited)
    if slot.type == "choice":
        assert slot.choices is not None
        return pick(slot.choices, rows, norm, awaited=awaited)
    if not awaited:
        return None
    if slot.type == "yes_no":
        yes, no = yes_or_no(norm)
        return True if yes else False if no else None
    return raw.strip() or None


def coerce(slot: Slot, value: Any, rows: Sequence[Mapping[str, Any]] = ()) -> Any:
    """A value from outside the words (a default, an LLM tool argument) as the slot's type.

    Raises ``ValueError`` with a message for the model when it does not fit.
    """
    if value is None:
        return None
    if slot.type == "choice":
        assert slot.choices is not None
        if isinstance(value, Choice):
            return value
        wanted = str(value).lower()
        for row in rows:
            if str(row[slot.choices.key]).lower() == wanted:
                return Choice(row, slot.choices.key)
        found = pick(slot.choices, rows, " ".join(_words(str(value))), awaited=False)
        if found is None:
            raise ValueError(f"no option matches {value!r}")
        return found
    if slot.type == "date":
        return value if isinstance(value, date) else date.fromisoformat(str(value))
    if slot.type == "time":
        return value if isinstance(value, time) else time.fromisoformat(str(value))
    if slot.type == "yes_no":
        return bool(value)
    text = str(value)
    if slot.type == "digits" and not (text.isdigit() and len(text) >= slot.min_length):
        raise ValueError(f"{text!r} is not a number of at least {slot.min_length} digits")
    return text
