"""Redaction of identity data (names, birth dates, phone numbers) before text is logged."""

from __future__ import annotations

import re

_SPOKEN_DIGIT = r"(?:zero|oh|one|two|three|four|five|six|seven|eight|nine)"
_NAME_STOP = (
    "and|i|im|to|calling|call|from|my|the|a|id|want|would|like|need|please|here|about|"
    "speaking|for|with|at|on|is"
)
_MONTH = (r"(?:jan(?:uary)?|feb(?:ruary)?|march|april|may|june|july|aug(?:ust)?|"
          r"sep(?:tember)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)")
_TENS = r"(?:twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety)"
_TEENS = r"(?:ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen)"
#: A birth year: 1900-2015 in digits, or spoken ("nineteen eighty four", "two thousand
#: and five"). Booking dates carry this year or none, so a past year is identity.
_BIRTH_YEAR = (rf"(?:19\d\d|20(?:0\d|1[0-5])|nineteen[\s-]+(?:{_TEENS}|{_TENS}"
               rf"(?:[\s-]+{_SPOKEN_DIGIT})?|oh[\s-]+{_SPOKEN_DIGIT})|two thousand"
               rf"(?:\s+and)?(?:[\s-]+(?:{_SPOKEN_DIGIT}|{_TEENS}))?)")
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
    # after the rules above (their "[dob]" must not be matched again): a date with a
    # birth year, however it was heard ("date of birth" may be misheard, the date not):
    # "the fourth of July 1980", "July 4th, 1980"
    (re.compile(
        rf"\b(?:(?:the\s+)?[a-z0-9-]+\s+of\s+)?{_MONTH}(?:\s+(?:the\s+)?[a-z0-9-]+)?"
        rf"[\s,]+{_BIRTH_YEAR}\b", re.IGNORECASE), "[dob]"),
    (re.compile(rf"\b{_BIRTH_YEAR}\b", re.IGNORECASE), "[year]"),
]
_PHONE_LIKE = re.compile(r"\+?\(?\d[\d\s().-]*\d")


def _phone(match: re.Match[str]) -> str:
    return "[phone]" if sum(c.isdigit() for c in match[0]) >= 7 else match[0]


def redact(text: str) -> str:
    """``text`` with caller identity removed: names, dates of birth, phone numbers.

    Used for every log line the dialog writes and every stored transcript (health
    data rules forbid identity data there). It errs on the side of removing too
    much: reference numbers (5 digits) survive, anything with 7 or more digits does
    not, nor does a year a caller could be born in, with the date around it.
    """
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return _PHONE_LIKE.sub(_phone, text)
