"""Which call a log line belongs to, and the JSON log format that says so.

A call's work runs in its own asyncio task (and the tasks and worker threads it
starts inherit its context), so a context variable set when the call starts
tags every line logged on its behalf, in any module, without passing ids
around. ``VOICE_AGENT_LOG_FORMAT=json`` writes one JSON object per line with
``call_id`` and ``tenant`` when there is a call; the text format stays as it
was. Caller identity is redacted where it is logged (the dialog engine's
``redact``), not here: this module never sees what a message means.
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar

#: (call id, tenant) of the call whose work is running, if any.
current_call: ContextVar[tuple[str, str] | None] = ContextVar("current_call", default=None)


def in_call(call_id: str, tenant: str) -> None:
    """Tag everything logged from now on in this task (and what it starts) with the call."""
    current_call.set((call_id, tenant))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, call_id, tenant, exc."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        if (call := current_call.get()) is not None:
            line["call_id"], line["tenant"] = call
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)
