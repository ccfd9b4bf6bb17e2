"""What happened on a call, whichever way it reached us: its states and its record.

Shared by the ARI call session and the AGI fallback, so both keep the same
record and every later consumer (logs, call history, benchmarks) reads one shape.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

#: Channel variable the session sets so callers, CDRs and the dialplan can see the tenant.
TENANT_VARIABLE = "VOICE_AGENT_TENANT"


class CallState(StrEnum):
    """Where a call is; an agent that converses drives the states after GREETING.

    GREETING → LISTENING → THINKING (transcribing, deciding) → SPEAKING (its
    audio queued) → LISTENING (reply played, or cut off by a barge-in) → …
    """

    STARTING = "starting"
    GREETING = "greeting"
    LISTENING = "listening"
    THINKING = "thinking"
    SPEAKING = "speaking"
    CLOSED = "closed"


@dataclass
class CallRecord:
    """What happened on one call: kept after the call for status, tests and logs."""

    session_id: str
    channel_id: str
    channel_name: str
    caller: str
    tenant: str
    #: The number the caller dialled (the extension that routed them here).
    number: str = ""
    started_at: float = field(default_factory=time.time)
    transitions: list[tuple[float, CallState]] = field(default_factory=list)
    dtmf: list[tuple[float, str]] = field(default_factory=list)
    prompts: list[tuple[str, str]] = field(default_factory=list)
    bridges: list[str] = field(default_factory=list)
    #: Conversation turns and barge-ins with their timestamps (monotonic clock).
    turns: list[dict[str, Any]] = field(default_factory=list)
    barge_ins: list[dict[str, Any]] = field(default_factory=list)
    #: Provider failures and watchdog firings: stage, provider, error, when (monotonic).
    errors: list[dict[str, Any]] = field(default_factory=list)
    ended_at: float | None = None
    end_reason: str = ""

    @property
    def states(self) -> list[CallState]:
        return [state for _, state in self.transitions]


@dataclass
class RejectedCall:
    """A call turned away before a session existed."""

    channel_id: str
    channel_name: str
    reason: str
    prompt: str
    at: float = field(default_factory=time.time)
    prompt_state: str = ""
