"""Dates and times as callers say them ("next Monday", "the 4th", "half past 3")."""

from __future__ import annotations

import re
from datetime import date, time, timedelta

_MONTHS = {
    m: i for i, names in enumerate(
        ["january jan", "february feb", "march mar", "april apr", "may", "june jun",
         "july jul", "august aug", "september sept sep", "october oct", "november nov",
         "december dec"], start=1)
    for m in names.split()
}
_WEEKDAYS = "monday tuesday wednesday thursday friday saturday sunday".split()
_MONTH_RE = "|".join(sorted(_MONTHS, key=len, reverse=True))
_DAY_RE = r"(\d{1,2})(?:st|nd|rd|th)?"
_MONTH_DAY = re.compile(rf"\b({_MONTH_RE}) (?:the )?{_DAY_RE}\b(?: (\d{{4}}))?")
_DAY_OF_MONTH = re.compile(rf"\b{_DAY_RE} of ({_MONTH_RE})\b(?: (\d{{4}}))?")
_THE_NTH = re.compile(r"\bthe (\d{1,2})(?:st|nd|rd|th)\b")
_BARE_NTH = re.compile(r"^(?:on )?(?:the )?(\d{1,2})(?:st|nd|rd|th)$")
_WEEKDAY = re.compile(rf"\b({'|'.join(_WEEKDAYS)})\b")


def _safe_date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _month_day(today: date, month: int, day: int, year: str | None) -> date | None:
    """A month and day without a year means the next such date, not one in the past."""
    if year:
        return _safe_date(int(year), month, day)
    found = _safe_date(today.year, month, day)
    if found is not None and found < today:
        found = _safe_date(today.year + 1, month, day)
    return found


def parse_date(norm: str, today: date, *, bare: bool = False) -> date | None:
    """A date in normalised text, resolved against ``today``.

    Understands "today", "tomorrow", "the day after tomorrow", weekdays ("monday",
    "next monday": both the first such day after today), "december 3rd",
    "3rd of december" and "the 5th" (this month, or next month if already past).
    ``bare`` also accepts a lone ordinal ("5th"), for when the caller answers
    "which day?".
    """
    if m := _MONTH_DAY.search(norm):
        return _month_day(today, _MONTHS[m[1]], int(m[2]), m[3])
    if m := _DAY_OF_MONTH.search(norm):
        return _month_day(today, _MONTHS[m[2]], int(m[1]), m[3])
    if (m := _THE_NTH.search(norm)) or (bare and (m := _BARE_NTH.match(norm))):
        day = int(m[1])
        found = _safe_date(today.year, today.month, day)
        if found is None or found < today:
            following = (today.replace(day=1) + timedelta(days=32)).replace(day=1)
            found = _safe_date(following.year, following.month, day)
        return found
    if m := _WEEKDAY.search(norm):
        ahead = (_WEEKDAYS.index(m[1]) - today.weekday() - 1) % 7 + 1
        return today + timedelta(days=ahead)
    if re.search(r"\bday after tomorrow\b", norm):
        return today + timedelta(days=2)
    if re.search(r"\btomorrow\b", norm):
        return today + timedelta(days=1)
    if re.search(r"\btoday\b", norm):
        return today
    return None


_CLOCK = re.compile(r"\b(\d{1,2}):(\d{2})(?: ?(am|pm))?\b")
_MERIDIEM = re.compile(r"\b(\d{1,2})(?: (\d{2}))? ?(am|pm|oclock)\b")
_HALF_PAST = re.compile(r"\b(half|quarter) past (\d{1,2})\b")
_AT_HOUR = re.compile(r"\b(?:at|make it|around|about) (\d{1,2})(?: (\d{2}))?\b")
_HOUR_MINUTE = re.compile(r"\b(\d{1,2}) (\d{2})\b")
_BARE_HOUR = re.compile(r"^(\d{1,2})(?: (\d{2}))?$")


def _clock_time(hour: int, minute: int, meridiem: str | None) -> time | None:
    """Build a time; without am/pm, 1 to 7 o'clock means afternoon (office hours)."""
    if meridiem in ("am", "pm") and not 1 <= hour <= 12:
        return None
    if meridiem == "pm" and hour < 12:
        hour += 12
    elif meridiem == "am" and hour == 12:
        hour = 0
    elif meridiem not in ("am", "pm") and 1 <= hour <= 7:
        hour += 12
    if hour > 23 or minute > 59:
        return None
    return time(hour, minute)


def parse_time(norm: str, *, bare: bool = False) -> time | None:
    """A time of day in normalised text: "3 pm", "3 30 pm", "15:00", "half past 3",
    "at 4", "noon", "3 30" ("three thirty"). ``bare`` also accepts a lone hour ("4"),
    for when the caller answers "what time?".
    """
    if re.search(r"\b(noon|midday)\b", norm):
        return time(12, 0)
    if m := _CLOCK.search(norm):
        return _clock_time(int(m[1]), int(m[2]), m[3])
    if m := _MERIDIEM.search(norm):
        return _clock_time(int(m[1]), int(m[2] or 0), m[3])
    if m := _HALF_PAST.search(norm):
        return _clock_time(int(m[2]), 30 if m[1] == "half" else 15, None)
    if m := _AT_HOUR.search(norm):
        return _clock_time(int(m[1]), int(m[2] or 0), None)
    if m := _HOUR_MINUTE.search(norm):
        return _clock_time(int(m[1]), int(m[2]), None)
    if bare and (m := _BARE_HOUR.match(norm)):
        return _clock_time(int(m[1]), int(m[2] or 0), None)
    return None
