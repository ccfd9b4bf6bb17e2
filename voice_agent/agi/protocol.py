"""The AGI wire protocol, without I/O: environment block, commands, responses.

AGI is line based. On connect Asterisk sends the environment, ``agi_xxx: value``
lines ended by an empty line; then the script sends one command per line and
Asterisk answers each with a response:

* ``200 result=N [(data)] [key=value ...]`` — done; ``result=-1`` means the
  command failed, nearly always because the caller hung up (``RECORD FILE``
  says so: ``200 result=-1 (hangup) endpos=N``);
* ``510 Invalid or unknown command``;
* ``511 Command Not Permitted on a dead channel`` — the caller is gone;
* ``520 ...`` or the multi-line ``520-...`` usage text ended by a ``520 ...`` line;
* ``100 ...`` — provisional, the real response follows.

Independently of any command, FastAGI writes a bare ``HANGUP`` line when the
caller hangs up (unless the dialplan set ``AGISIGHUP=no``). It can arrive
between two commands or right after a response, so the parser reports it as an
event of its own instead of mistaking it for a response.

Everything here is pure so it can be tested line by line;
:mod:`voice_agent.agi.asterisk_agi` does the socket I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

#: Keys that stop playback or recording: '#' repeats the last reply, '0' asks for a person.
ESCAPE_DIGITS = "#0"


class AgiError(Exception):
    """Base class of every AGI failure."""


class AgiProtocolError(AgiError):
    """Asterisk sent something that is not AGI (or the connection is not FastAGI)."""


class AgiHangup(AgiError):
    """The caller hung up (``HANGUP`` line, ``511``, ``result=-1`` or the socket closed)."""


class AgiCommandError(AgiError):
    """Asterisk rejected a command (``510`` unknown, ``520`` bad syntax, other codes)."""

    def __init__(self, command: str, response: AgiResponse) -> None:
        self.command = command
        self.response = response
        super().__init__(f"AGI command {command!r} failed: {response.text}")


# ---------------------------------------------------------------------------
# Environment
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AgiRequest:
    """The environment Asterisk sends on connect (``agi_`` prefix kept off the keys)."""

    variables: dict[str, str]

    def get(self, name: str, default: str = "") -> str:
        return self.variables.get(name, default)

    @property
    def script(self) -> str:
        """The URL path after host:port, e.g. ``acme`` for ``agi://h:4573/acme``."""
        return self.get("network_script").strip("/")

    @property
    def tenant_name(self) -> str:
        """First path segment of the script: the dialplan names the tenant there."""
        return self.script.split("/", 1)[0].split("?", 1)[0]

    @property
    def caller(self) -> str:
        """Caller number, empty when Asterisk says ``unknown``."""
        number = self.get("callerid")
        return "" if number == "unknown" else number


def parse_environment(lines: list[str]) -> AgiRequest:
    """The ``agi_xxx: value`` lines of the environment block (without the empty line)."""
    variables: dict[str, str] = {}
    for line in lines:
        key, sep, value = line.partition(":")
        if not sep or not key.startswith("agi_"):
            raise AgiProtocolError(f"not an AGI environment line: {line!r}")
        variables[key.removeprefix("agi_")] = value.removeprefix(" ")
    if "network_script" not in variables and "request" not in variables:
        raise AgiProtocolError("AGI environment has neither agi_request nor agi_network_script")
    return AgiRequest(variables)


# ---------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------

_NEEDS_QUOTES = re.compile(r'[\s"\\]')


def format_command(*words: str) -> str:
    """One command line; arguments with spaces, quotes or backslashes are quoted.

    Asterisk splits arguments on blanks and honours ``"..."`` and backslash
    escapes, so ``""`` is an empty argument (no escape digits). A newline would
    end the command early and let the rest run as another command, so it is refused.
    """
    parts = []
    for word in words:
        if "\n" in word or "\r" in word:
            raise ValueError(f"AGI arguments cannot contain line breaks: {word!r}")
        if word == "" or _NEEDS_QUOTES.search(word):
            word = '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
        parts.append(word)
    return " ".join(parts) + "\n"


# ---------------------------------------------------------------------------
# Responses
# ---------------------------------------------------------------------------

_RESPONSE = re.compile(r"^(?P<code>\d{3})(?P<sep>[ -]|$)(?P<rest>.*)$")
_RESULT = re.compile(r"^result=(?P<result>\S*)\s*(?:\((?P<data>[^)]*)\))?\s*(?P<extra>.*)$")


@dataclass(frozen=True)
class AgiResponse:
    """One parsed response; ``text`` is the raw line(s), for logs and errors."""

    code: int
    text: str
    result: int | None = None
    """``result=N`` as an int; None when absent or not a number (``result= (timeout)``)."""
    data: str = ""
    """The parenthesised part: ``hangup``, ``dtmf``, ``timeout``, a variable's value..."""
    extra: dict[str, str] = field(default_factory=dict)
    """Trailing ``key=value`` pairs, e.g. ``endpos``."""

    @property
    def digit(self) -> str | None:
        """The key that ended a ``STREAM FILE`` / ``RECORD FILE`` (``result`` is its code)."""
        if self.result is not None and self.result > 0 and (
                self.data in ("", "dtmf") and "endpos" in self.extra):
            return chr(self.result)
        return None

    @property
    def endpos(self) -> int:
        """Samples played or recorded (8000 per second for ``wav``)."""
        return int(self.extra.get("endpos", "0") or 0)

    def raise_for_error(self, command: str) -> AgiResponse:
        """This response, or the error it means for ``command``."""
        if self.code == 511 or (self.code == 200 and self.result == -1):
            raise AgiHangup(f"caller hung up ({command!r} -> {self.text!r})")
        if self.code != 200:
            raise AgiCommandError(command, self)
        return self


def parse_response(text: str) -> AgiResponse:
    """One complete response (a multi-line ``520-`` response joined with newlines)."""
    first = text.split("\n", 1)[0]
    match = _RESPONSE.match(first)
    if match is None:
        raise AgiProtocolError(f"not an AGI response: {first!r}")
    code, rest = int(match["code"]), match["rest"].strip()
    if code != 200:
        return AgiResponse(code, text)
    result = _RESULT.match(rest)
    if result is None:
        raise AgiProtocolError(f"200 response without result=: {first!r}")
    extra = dict(pair.split("=", 1) for pair in result["extra"].split() if "=" in pair)
    value = result["result"]
    number = int(value) if re.fullmatch(r"-?\d+", value) else None
    return AgiResponse(code, text, number, result["data"] or "", extra)


class HangupNotice:
    """The ``HANGUP`` line FastAGI sends when the caller hangs up."""

    def __repr__(self) -> str:
        return "HANGUP"


HANGUP = HangupNotice()


class ResponseParser:
    """Turns the lines Asterisk sends after the environment into events.

    :meth:`feed` returns an :class:`AgiResponse` once a response is complete,
    :data:`HANGUP` for the hang-up notice, and None for lines that are only part
    of a response (``100`` provisional lines, the body of a ``520-`` usage text).
    """

    def __init__(self) -> None:
        self._usage: list[str] | None = None

    def feed(self, line: str) -> AgiResponse | HangupNotice | None:
        line = line.rstrip("\r\n")
        if self._usage is not None:
            self._usage.append(line)
            if line.startswith("520 "):
                text, self._usage = "\n".join(self._usage), None
                return AgiResponse(520, text)
            return None
        if line == "HANGUP":
            return HANGUP
        if line.startswith("520-"):
            self._usage = [line]
            return None
        if line.startswith("100"):
            return None
        return parse_response(line)
