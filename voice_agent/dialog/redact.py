"""Redaction of identity data (names, birth dates, phone numbers) before text is logged."""

from __future__ import annotations

import re

_SPOKEN_DIGIT = r"(?:zero|oh|one|two|three|four|five|six|seven|eight|nine)"
_NAME_STOP = (
    "and|i|im|to|calling|call|from|my|the|a|id|want|would|like|need|please|here|about|"
    "speaking|for|with|at|on|is"
)
_REDACTIONS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(
        r"\b(date of birth|birth ?date|birthday|born on|born in|dob)\b(?:\s+is)?[\s:,]*[^.,;!?]*",
        re.IGNORECASE), r"\1 [dob]"),
    (re.compile(r"\b\d{1,4}[/.-]\d{1,2}[/.-]\d{1,4}\b"), "[date]"),
    (re.compile(rf"\b(?:{_SPOKEN_DIGIT}[\s,-]+){{6,}}{_SPOKEN_DIGIT}\b", re.IGNORECASE),
     "[phone]"),
    (re.compile(
        rf"\b(my name is|my names|my name's|name is|this is|call me|speaking with)"
        rf"((?:\s+(?!(?:{_NAME_STOP})\b)[a-z][a-z'-]*){{1,3}})",
        re.IGNORECASE), r"\1 [name]"),
]
_PHONE_LIKE = re.compile(r"\+?\(?\d[\d\s().-]*\d")


def _phone(match: re.Match[str]) -> str:
    return "[phone]" if sum(c.isdigit() for c in match[0]) >= 7 else match[0]


def redact(text: str) -> str:
    """``text`` with caller identity removed: names, dates of birth, phone numbers.

    Used for every log line the dialog writes (health data rules forbid identity
    data in logs). It errs on the side of removing too much: order numbers
    (5 digits) survive, anything with 7 or more digits does not.
    """
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return _PHONE_LIKE.sub(_phone, text)
