"""Transcripts into one normal form, and replies into words TTS reads well.

Input is what speech recognition produces: lowercase, no punctuation, numbers
as words or digits. :func:`normalize` maps all of that onto one form ("order one
two three four five" and "Order 54321." both carry ``5 4 3 2 1`` / ``54321``), so
the dialog patterns only have to handle digits.
"""

from __future__ import annotations

import re
from datetime import date, time

_UNITS = {
    w: i for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen "
        "fourteen fifteen sixteen seventeen eighteen nineteen".split()
    )
}
_TENS = {w: 10 * i for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety"
                                          .split(), start=2)}
_ORDINALS = {
    w: i for i, w in enumerate(
        "first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth "
        "thirteenth fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth".split(),
        start=1,
    )
} | {"twentieth": 20, "thirtieth": 30}
#: "double five" is 5 5, "triple oh" is 0 0 0.
_REPEATS = {"double": 2, "triple": 3}


def ordinal(n: int) -> str:
    """``3`` → ``3rd``: the form both the normaliser and spoken replies use."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def normalize(text: str) -> str:
    """Lowercase words and digits only; number words become digits, ordinals ``3rd``.

    Colons between digits survive (``15:00``), ``p m``/``p.m.`` become ``pm`` and
    ``o'clock`` becomes ``oclock``. Spoken digit strings stay separate tokens
    (``1 2 3``) so that :func:`digit_run` can tell a reference number from a time.
    """
    text = re.sub(r"(?<=\d):(?=\d)", "\0", text.lower())
    text = re.sub(r"['’.]", "", text)
    text = re.sub(r"[^a-z0-9\0]+", " ", text).replace("\0", ":")
    words = text.split()
    out: list[str] = []
    i = 0
    while i < len(words):
        word, nxt = words[i], words[i + 1] if i + 1 < len(words) else ""
        previous_is_number = bool(out) and out[-1].isdigit()
        if word in ("a", "p") and nxt == "m" and previous_is_number:
            out.append(word + "m")
            i += 2
            continue
        if word in _REPEATS and (nxt in _UNITS and _UNITS[nxt] < 10 or nxt == "oh"
                                  or (len(nxt) == 1 and nxt.isdigit())):
            # "double five", "triple oh": how people say repeated digits of a number.
            digit = "0" if nxt == "oh" else str(_UNITS.get(nxt, nxt))
            out.extend([digit] * _REPEATS[word])
            i += 2
            continue
        if word == "o" and nxt == "clock":
            out.append("oclock")
            i += 2
            continue
        if word in _TENS:
            if nxt in _UNITS and 0 < _UNITS[nxt] < 10:
                out.append(str(_TENS[word] + _UNITS[nxt]))
                i += 2
                continue
            if nxt in _ORDINALS and _ORDINALS[nxt] < 10:
                out.append(ordinal(_TENS[word] + _ORDINALS[nxt]))
                i += 2
                continue
            out.append(str(_TENS[word]))
        elif word in _UNITS:
            out.append(str(_UNITS[word]))
        elif word in _ORDINALS:
            out.append(ordinal(_ORDINALS[word]))
        elif word == "oh" and previous_is_number:
            out.append("0")
        else:
            out.append(word)
        i += 1
    return " ".join(out)


#: Words speech recognition writes for a spoken digit inside a digit string.
_HOMOPHONE_DIGITS = {"to": "2", "too": "2", "for": "4"}


def digit_run(norm: str, min_len: int = 4) -> str | None:
    """The first run of digit tokens with at least ``min_len`` digits, joined.

    "order 5 4 3 2 1" and "order 543 21" both give ``54321``. Between two
    spoken digits, "to"/"too" and "for" are read as 2 and 4: phone-line
    speech recognition hears "one two three" as "1 to 3" (measured with
    Whisper tiny.en over µ-law), and nobody says "to" inside a reference number.
    """
    run: list[str] = []
    tokens = [*norm.split(), ""]
    for i, token in enumerate(tokens):
        between_digits = (0 < i < len(tokens) - 1 and len(tokens[i - 1]) == 1
                          and tokens[i - 1].isdigit() and len(tokens[i + 1]) == 1
                          and tokens[i + 1].isdigit())
        if between_digits and token in _HOMOPHONE_DIGITS:
            token = _HOMOPHONE_DIGITS[token]
        if token.isdigit():
            run.append(token)
            continue
        if len(joined := "".join(run)) >= min_len:
            return joined
        run = []
    return None


def say_date(d: date) -> str:
    return f"{d:%A}, {d:%B} {ordinal(d.day)}"


def say_time(at: time) -> str:
    hour = at.hour % 12 or 12
    minutes = f":{at.minute:02d}" if at.minute else ""
    return f"{hour}{minutes} {'AM' if at.hour < 12 else 'PM'}"


def say_digits(digits: str) -> str:
    """``54321`` → ``5 4 3 2 1``: TTS reads a reference number digit by digit, as people do."""
    return " ".join(digits)
