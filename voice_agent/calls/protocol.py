"""What an agent needs from a call, and what a call needs from an agent.

The conversation layer is written against :class:`Call`, not against the ARI
session, so the turn loop can be unit tested with a plain object and any entry
point that can offer streamed audio (ARI today) can host it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Protocol

from voice_agent.calls.record import CallRecord, CallState
from voice_agent.media.call_audio import CallAudio


class Call(Protocol):
    """One answered call as an agent sees it.

    ``audio``: the call's streamed audio (None when no media is attached);
    ``record``: what happened, for logs and history; ``dtmf``: keys the caller
    pressed, in order; ``transfer_to``: set to (context, extension) to hand the
    caller to a person when the agent returns; ``gave_up``: set to the reason when
    the agent cannot go on (it cannot speak at all), so the call says sorry with
    the PBX's own sounds and goes to ``transfer_to`` or ends.
    """

    audio: CallAudio | None
    record: CallRecord
    dtmf: asyncio.Queue[str]
    transfer_to: tuple[str, str] | None
    gave_up: str | None

    @property
    def state(self) -> CallState: ...

    def transition(self, state: CallState) -> None:
        """Enter ``state`` (recorded and logged); staying in a state is a no-op."""
        ...


class CallAgent(Protocol):
    """What talks to the caller once the call is set up (echo, conversation).

    Called with the session (its ``audio``, ``record``, ``dtmf`` queue and
    ``transfer_to``); runs until the call ends (it is cancelled on hang-up).
    ``speaks_greeting``: the agent greets the caller itself, so the session
    does not play the tenant's greeting sound first, and the agent moves the
    call on from GREETING (:meth:`Call.transition`) once it was heard.
    """

    speaks_greeting: bool

    def __call__(self, call: Call) -> Awaitable[None]: ...
