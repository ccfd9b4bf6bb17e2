"""One call's dialog state, the engine's replies, and what a tenant skill sees per turn."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal


@dataclass(frozen=True)
class ToolCallMade:
    """A tenant tool the engine ran for this turn.

    Names are the intents' names (the LLM's function names), or a step's own
    ``tool`` name (a lookup), so traces read the same on both paths.
    """

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DialogReply:
    text: str
    intent: str
    tool_calls_made: tuple[ToolCallMade, ...] = ()
    done: bool = False
    transfer: bool = False


@dataclass(frozen=True)
class Turn:
    speaker: Literal["caller", "agent"]
    text: str
    interrupted: bool = False
    """The caller cut the agent off: ``text`` is only the part that was played."""


@dataclass
class DialogState:
    """One call's conversation: what is being done, what is known, what was said.

    ``awaiting`` names the slot the last question asked for ("date", "confirm"…),
    so a bare answer ("4", "yes", a name from a list) is read as that slot.
    """

    caller_id: str = "anonymous"
    intent: str | None = None
    slots: dict[str, Any] = field(default_factory=dict)
    awaiting: str | None = None
    question: str = ""
    last_reply: str = ""
    history: list[Turn] = field(default_factory=list)
    #: "Are you still there?" asked since the caller last spoke.
    silences: int = 0

    def ask(self, awaiting: str, question: str) -> str:
        self.awaiting, self.question = awaiting, question
        return question

    def cut_last_reply(self, played: str) -> None:
        """The caller cut off the last reply: history keeps only what was ``played``.

        ``last_reply`` keeps the whole reply, so "repeat" (``#``) says all of it.
        """
        for index in range(len(self.history) - 1, -1, -1):
            if self.history[index].speaker == "agent":
                self.history[index] = Turn("agent", played, interrupted=True)
                return

    def finish(self) -> None:
        """The pending task is done or abandoned: forget its slots."""
        self.intent, self.awaiting, self.question = None, None, ""
        self.slots = {}


@dataclass
class TurnContext:
    """What a skill needs for one turn; collects the tools it ran."""

    state: DialogState
    norm: str
    today: date
    calls: list[ToolCallMade] = field(default_factory=list)
    #: The words as heard, for a ``text`` slot.
    raw: str = ""
    #: What the finished task's lookups and action found (an LLM tool's answer).
    results: dict[str, Any] = field(default_factory=dict)

    def called(self, name: str, **arguments: Any) -> None:
        self.calls.append(ToolCallMade(name, arguments))


_YES = re.compile(
    r"\b(yes|yeah|yep|yup|sure|correct|right|ok|okay|please do|go ahead|do it|book it|"
    r"confirm|absolutely|definitely|sounds good|perfect)\b"
)
_NO = re.compile(r"\b(no|nope|nah|not|dont|wrong|negative)\b")


def yes_or_no(norm: str) -> tuple[bool, bool]:
    """(yes, no) for a confirmation; "no" wins so "that's not right" is a no."""
    no = bool(_NO.search(norm))
    return (not no and bool(_YES.search(norm))), no
