"""What the caller has heard of a reply: its clauses mapped onto outbound frames.

The agent writes a reply faster than it plays (synthesis runs ahead), so at
any moment part of it is queued and not yet heard. A :class:`SpokenReply`
remembers where each clause lies in the reply's frame stream; from the number
of frames actually played it answers two questions:

* :meth:`SpokenReply.level_at` — how loud the agent is right now, which the
  barge-in rule needs to tell the caller from the echo of the agent's voice;
* :meth:`SpokenReply.heard` — the text the caller heard before a barge-in, so
  the conversation history keeps what was said, not what was meant to be.

Within a cut clause, words are assumed evenly spread over its audio by
character count, and the text is cut at the last word whose end was played:
a word only half-heard counts as unheard.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from voice_agent.audio.frames import Pcm16
from voice_agent.audio.levels import rms_dbfs

_WORD = re.compile(r"\S+")


@dataclass
class SpokenClause:
    """One clause of a reply and the frames ``[start, end)`` it occupies."""

    text: str
    start: int
    end: int
    energy: float = 0.0
    samples: int = 0

    @property
    def level_dbfs(self) -> float:
        """RMS level of the clause's audio written so far."""
        return rms_dbfs(math.sqrt(self.energy / self.samples) if self.samples else 0.0)


def heard_words(text: str, fraction: float) -> str:
    """The words of ``text`` that end within its first ``fraction`` (by characters)."""
    cut = fraction * len(text)
    ends = [match.end() for match in _WORD.finditer(text) if match.end() <= cut]
    return text[: ends[-1]] if ends else ""


class SpokenReply:
    """The frames of one reply in the outbound stream, clause by clause (frame 0 = its first)."""

    def __init__(self) -> None:
        self.clauses: list[SpokenClause] = []

    @property
    def frames(self) -> int:
        """Frames written so far."""
        return self.clauses[-1].end if self.clauses else 0

    def start_clause(self, text: str) -> None:
        """The audio written from now on speaks ``text``."""
        self.clauses.append(SpokenClause(text, self.frames, self.frames))

    def wrote(self, pcm: Pcm16, frames: int) -> None:
        """``pcm`` was written to the call and became ``frames`` whole frames."""
        clause = self.clauses[-1]
        clause.end += frames
        clause.energy += float(np.sum(np.square(pcm, dtype=np.float64)))
        clause.samples += len(pcm)

    def level_at(self, frame: int) -> float | None:
        """Level of the clause playing at ``frame`` (the last one past the end; None if empty)."""
        for clause in self.clauses:
            if frame < clause.end:
                return clause.level_dbfs
        return self.clauses[-1].level_dbfs if self.clauses else None

    def heard(self, played: int) -> str:
        """The reply's text as far as its first ``played`` frames carried it."""
        parts: list[str] = []
        for clause in self.clauses:
            if played >= clause.end:
                parts.append(clause.text)
                continue
            if played > clause.start:
                parts.append(heard_words(clause.text, (played - clause.start)
                                         / (clause.end - clause.start)))
            break
        return " ".join(part for part in parts if part)
