"""A stored call as a timeline: who spoke when, barge-ins, and each turn's stages.

The call record keeps state transitions in wall time and turn and barge-in
stamps on the media clock (monotonic); the stored row carries the offset
between the two (``monotonic_to_wall``), so both land on one axis: seconds
from the call's start.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: The stages of one answered turn, in the order they follow each other.
STAGES = ("end_of_turn", "stt", "reply", "tts_first_audio")


@dataclass(frozen=True)
class Bar:
    """Someone speaking: ``lane`` is ``caller`` or ``agent``; seconds from the start."""

    lane: str
    start: float
    end: float
    label: str


@dataclass(frozen=True)
class Mark:
    """A moment on the timeline (a barge-in, a provider error)."""

    kind: str
    at: float
    label: str


@dataclass(frozen=True)
class Turn:
    """One answered turn: what was heard and said, and where its time went."""

    index: int
    heard: str
    reply: str
    #: Seconds per stage of :data:`STAGES` (those the turn went through).
    stages: dict[str, float]
    #: Caller's end of speech to the agent's first audio, at the agent (no network).
    response_s: float | None
    interrupted: bool
    tools: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Timeline:
    duration: float
    bars: list[Bar]
    marks: list[Mark]
    turns: list[Turn]


def build(row: dict[str, Any]) -> Timeline:
    """The timeline of one stored call (a row of the history's ``calls`` table)."""
    detail = row.get("detail") or {}
    origin = float(row["started_at"])
    offset = float(detail.get("monotonic_to_wall", 0.0))

    def wall(at: float) -> float:
        return round(at - origin, 3)

    def mono(at: float | None) -> float | None:
        return None if at is None else wall(float(at) + offset)

    end = wall(row["ended_at"]) if row.get("ended_at") else 0.0
    bars: list[Bar] = []
    transitions = [(wall(at), state) for at, state in detail.get("transitions", [])]
    for (at, state), (until, _) in zip(transitions, [*transitions[1:], (end, "")], strict=True):
        if state == "greeting":
            bars.append(Bar("agent", at, until, "greeting"))
    barge_ins = detail.get("barge_ins", [])
    stops = sorted(s for s in (mono(b.get("stopped")) for b in barge_ins) if s is not None)
    turns: list[Turn] = []
    for turn in detail.get("turns", []):
        start, stop = mono(turn.get("speech_start")), mono(turn.get("speech_end"))
        if start is not None and stop is not None:
            bars.append(Bar("caller", start, stop, turn.get("heard") or ""))
        first = mono(turn.get("first_audio"))
        if first is not None:
            ended = mono(turn.get("played"))
            if ended is None:  # cut short: by a barge-in, or the call's end
                ended = next((s for s in stops if s >= first), end)
            label = "apology" if turn.get("apology") else turn.get("reply", "")
            bars.append(Bar("agent", first, max(first, ended), label))
        if "reply" in turn and "speech_end" in turn:
            turns.append(_turn(len(turns) + 1, turn))
    marks = [Mark("barge-in", at, "barge-in") for at in
             (mono(b.get("onset")) for b in barge_ins) if at is not None]
    marks += [Mark("error", at, f"{e.get('stage')}: {e.get('error')}") for e in
              detail.get("errors", []) if (at := mono(e.get("at"))) is not None]
    last = max([end, *(b.end for b in bars), *(m.at for m in marks)], default=0.0)
    return Timeline(duration=last, bars=sorted(bars, key=lambda b: b.start),
                    marks=sorted(marks, key=lambda m: m.at), turns=turns)


def _turn(index: int, turn: dict[str, Any]) -> Turn:
    """Stages laid end to end from the caller's end of speech; a stage that was
    hidden in an earlier one (speculative STT) counts 0."""
    stages: dict[str, float] = {}
    at = float(turn["speech_end"])
    decided = at + float(turn.get("end_of_turn_s", 0.0))
    stages["end_of_turn"] = decided - at
    at = decided
    for name, key in (("stt", "stt_final"), ("reply", "reply_ready"),
                      ("tts_first_audio", "first_audio")):
        if key in turn:
            stages[name] = max(0.0, float(turn[key]) - at)
            at = max(at, float(turn[key]))
    first = turn.get("first_audio")
    return Turn(index=index, heard=turn.get("heard", ""), reply=turn.get("reply", ""),
                stages={k: round(v, 3) for k, v in stages.items()},
                response_s=round(float(first) - float(turn["speech_end"]), 3)
                if first is not None else None,
                interrupted=bool(turn.get("interrupted")),
                tools=[str(t) for t in turn.get("tools", [])])
