"""Barge-in: pause the agent the moment the caller talks over it, then decide.

While the agent talks (greeting or reply), the caller's line carries four
kinds of sound that a voice activity detector may score as speech: the caller
interrupting, the caller backchannelling ("uh-huh", "okay"), the agent's own
voice coming back as echo (delayed and attenuated), and line noise, clicks and
coughs. Only a real interruption may cut the agent off. :class:`BargeInDetector`
is the rule, a pure per-frame policy (no clock, no I/O), so it is tested and
tuned offline; the conversation supplies the one thing it cannot know, what the
words were.

**Which frames count.** A 20 ms caller frame counts as caller speech when

1. its speech probability is at least ``speech_threshold``, and
2. its RMS level is at least ``energy_floor_dbfs`` (≈ -45 dBFS: quiet line
   noise and comfort noise the VAD scores as speech stay below), and
3. it is louder than the echo of the agent could be: no more than the call's
   *echo margin* below the agent's current output level.

**The echo margin is measured per call** (:class:`EchoMargin`), not assumed.
Lines differ by ±10 dB and a Local channel is 6 dB quieter, so a fixed 12 dB
margin made a caller 12 dB quieter than the agent wait a second to be heard
(README, ``bench barge-in``). While the agent talks and is not paused, every
caller frame's level is compared with the agent's; the 10th percentile of that
difference over the last 10 s is how far below the agent the line's echo at
its loudest stays. Caller speech only lowers the percentile (it is louder than
echo), which makes the margin stricter, never looser, and it must cover a
tenth of the window to move it at all. The margin is that figure minus a 6 dB
safety, kept between ``echo_return_loss_db`` (12 dB, the old fixed rule, also
used until 1 s of evidence exists) and ``max_echo_margin_db`` (30 dB).

**Pause, then decide.** Counting speech held ``pause_ms`` (60 ms) *pauses* the
agent: the caller hears silence at once, and the reply's audio is kept. Then:

* the sound stops within ``min_speech_ms`` of counted speech (a cough, a
  click): after ``judge_after_ms`` of quiet the reply *resumes* where it
  paused;
* the caller keeps talking for ``interrupt_ms`` (700 ms, longer than any
  backchannel): a :class:`BargeIn`, the reply is flushed and the words become
  the next turn;
* in between, after ``judge_after_ms`` of quiet the detector asks for a
  *judgement* (:class:`Judge`): the conversation transcribes the words, and
  :meth:`BargeInDetector.verdict` resumes on a backchannel or noise and
  interrupts on anything else ("stop", "no, wait");
* a pause never lasts more than ``max_pause_ms``: then it is an interruption.

A 60 ms hold pauses on some coughs and noise bursts that the old 150 ms hold
ignored; they cost a pause of ≈ 0.3 s in the reply, never the reply itself.
"""

from __future__ import annotations

import math
import re
from collections import deque
from dataclasses import dataclass
from enum import Enum

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from voice_agent.audio.frames import FRAME_MS, Pcm16
from voice_agent.audio.levels import level_dbfs


class BargeInConfig(BaseModel):
    """How sure the agent must be that the caller talks before it pauses and stops."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pause_ms: int = Field(
        60, ge=FRAME_MS,
        description="Consecutive counting speech that pauses the agent. Adds exactly this "
        "delay to every barge-in stop.",
    )
    min_speech_ms: int = Field(
        150, ge=FRAME_MS,
        description="Counted speech below which a pause was noise (a cough, a click): the "
        "reply resumes without asking what was said.",
    )
    interrupt_ms: int = Field(
        700, ge=FRAME_MS,
        description="Counted speech that is an interruption whatever the words: longer than "
        "any backchannel.",
    )
    judge_after_ms: int = Field(
        200, ge=FRAME_MS,
        description="Quiet after the caller's words before they are judged (or the pause "
        "ended as noise).",
    )
    max_pause_ms: int = Field(
        2000, ge=FRAME_MS,
        description="Longest the agent stays paused; then it is an interruption.",
    )
    speech_threshold: float = Field(
        0.5, gt=0, le=1, description="VAD probability a frame needs to count.",
    )
    energy_floor_dbfs: float = Field(
        -45.0, le=0,
        description="RMS level a frame needs to count: line noise scored as speech stays below.",
    )
    echo_return_loss_db: float = Field(
        12.0, ge=0,
        description="The smallest echo margin: a frame this far below the agent's output "
        "level never counts (and the margin until the call's own echo was measured).",
    )
    max_echo_margin_db: float = Field(
        30.0, ge=0,
        description="The largest echo margin, however little echo the line has.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> BargeInConfig:
        if not self.pause_ms <= self.min_speech_ms <= self.interrupt_ms:
            raise ValueError("need pause_ms <= min_speech_ms <= interrupt_ms, got "
                             f"{self.pause_ms}, {self.min_speech_ms}, {self.interrupt_ms}")
        if self.max_echo_margin_db < self.echo_return_loss_db:
            raise ValueError("max_echo_margin_db must be at least echo_return_loss_db")
        return self


@dataclass(frozen=True)
class Pause:
    """Silence the agent now (keep its audio): caller speech began at ``onset``."""

    onset: float
    at: float


@dataclass(frozen=True)
class Resume:
    """It was noise or a backchannel: play the paused reply on."""

    onset: float
    at: float
    reason: str


@dataclass(frozen=True)
class Judge:
    """The caller's words over the agent ended: what were they? Answer with ``verdict``."""

    onset: float
    at: float


@dataclass(frozen=True)
class BargeIn:
    """The caller interrupted: times on the clock the frames were stamped with."""

    onset: float
    """Time of the first frame of the run that paused the agent."""
    detected: float
    """Time the interruption was decided."""


Event = Pause | Resume | Judge | BargeIn


class EchoMargin:
    """How far below the agent's level this call's echo stays (module docstring)."""

    WINDOW = 500  # frames: 10 s of the agent talking
    MIN_EVIDENCE = 50  # frames: 1 s
    EVERY = 25  # recompute the percentile every 0.5 s
    SAFETY_DB = 6.0

    def __init__(self, config: BargeInConfig) -> None:
        self._low = config.echo_return_loss_db
        self._high = config.max_echo_margin_db
        self._gaps: deque[float] = deque(maxlen=self.WINDOW)
        self._since = 0
        self.db = self._low

    def observe(self, agent_dbfs: float, caller_dbfs: float) -> None:
        """One frame heard while the agent's audio was playing at ``agent_dbfs``."""
        self._gaps.append(agent_dbfs - caller_dbfs)
        self._since += 1
        if len(self._gaps) >= self.MIN_EVIDENCE and self._since >= self.EVERY:
            self._since = 0
            loudest_echo = float(np.percentile(np.fromiter(self._gaps, float), 10))
            self.db = min(self._high, max(self._low, loudest_echo - self.SAFETY_DB))


class _Phase(Enum):
    IDLE = "idle"  # the agent plays; counting runs are measured
    PAUSED = "paused"  # caller speech paused the agent
    JUDGING = "judging"  # the words ended; waiting for the verdict


class BargeInDetector:
    """The rule of the module docstring, fed one caller frame at a time.

    Feed it only while the agent talks and :meth:`reset` it otherwise, so a run
    never spans a moment when there was nothing to interrupt. The echo margin
    survives :meth:`reset`: it belongs to the line, not to one reply.
    """

    def __init__(self, config: BargeInConfig | None = None) -> None:
        self.config = config if config is not None else BargeInConfig()
        self.echo = EchoMargin(self.config)
        self._pause = _frames(self.config.pause_ms)
        self._min_speech = _frames(self.config.min_speech_ms)
        self._interrupt = _frames(self.config.interrupt_ms)
        self._judge_after = _frames(self.config.judge_after_ms)
        self._max_pause = self.config.max_pause_ms / 1000
        self.reset()

    def reset(self) -> None:
        self._phase = _Phase.IDLE
        self._run = 0  # consecutive counting frames (idle), counted frames (paused)
        self._quiet = 0  # consecutive frames that did not count, while paused
        self._onset = 0.0

    @property
    def paused(self) -> bool:
        """The agent is paused: caller speech over it is being decided on."""
        return self._phase is not _Phase.IDLE

    def counts(self, pcm: Pcm16, speech_probability: float,
               agent_level_dbfs: float | None) -> bool:
        """Whether one frame is caller speech by the rule (``None``: the agent is silent)."""
        return self._counts(level_dbfs(pcm), speech_probability, agent_level_dbfs)

    def _counts(self, level: float, probability: float, agent: float | None) -> bool:
        if probability < self.config.speech_threshold:
            return False
        gate = self.config.energy_floor_dbfs
        if agent is not None:
            gate = max(gate, agent - self.echo.db)
        return level >= gate

    def process(self, pcm: Pcm16, speech_probability: float,
                agent_level_dbfs: float | None, at: float) -> Event | None:
        """Advance by one frame stamped ``at``; the event it causes, if any."""
        level = level_dbfs(pcm)
        counts = self._counts(level, speech_probability, agent_level_dbfs)
        if self._phase is _Phase.IDLE:
            if agent_level_dbfs is not None:
                self.echo.observe(agent_level_dbfs, level)
            if not counts:
                self._run = 0
                return None
            if self._run == 0:
                self._onset = at
            self._run += 1
            if self._run < self._pause:
                return None
            self._phase, self._quiet = _Phase.PAUSED, 0
            return Pause(self._onset, at)
        if counts:
            self._run += 1
            self._quiet = 0
        else:
            self._quiet += 1
        if self._run >= self._interrupt or at - self._onset >= self._max_pause:
            return self._interrupted(at)
        if self._phase is _Phase.PAUSED and self._quiet == self._judge_after:
            if self._run < self._min_speech:
                return self._resumed(at, "noise")
            self._phase = _Phase.JUDGING
            return Judge(self._onset, at)
        return None

    def verdict(self, backchannel: bool, at: float, *,
                reason: str = "backchannel") -> Resume | BargeIn | None:
        """The words of a :class:`Judge` were a backchannel (or nothing, or noise) or not.

        ``None`` when the question is moot (the pause already ended). A caller
        who is talking again when the answer comes interrupts either way.
        """
        if self._phase is not _Phase.JUDGING:
            return None
        if backchannel and self._quiet > 0:
            return self._resumed(at, reason)
        return self._interrupted(at)

    def _interrupted(self, at: float) -> BargeIn:
        cut = BargeIn(self._onset, at)
        self.reset()
        return cut

    def _resumed(self, at: float, reason: str) -> Resume:
        resume = Resume(self._onset, at, reason)
        self.reset()
        return resume


#: Words of a backchannel: the caller is listening, not taking the turn.
BACKCHANNEL_WORDS = frozenset({
    "uh", "huh", "uhhuh", "mhm", "mm", "mmhmm", "hmm", "hm", "ah", "oh", "okay", "ok",
    "right", "yeah", "yes", "yep", "yup", "sure", "alright", "all", "i", "see", "got", "it",
})
_WORD = re.compile(r"[a-z]+")


def is_backchannel(text: str) -> bool:
    """Whether a transcript is only a backchannel ("Uh-huh.", "okay", "I see") or nothing."""
    words = _WORD.findall(text.lower().replace("-", ""))
    return len(words) <= 4 and all(word in BACKCHANNEL_WORDS for word in words)


def _frames(ms: int) -> int:
    return math.ceil(round(ms / FRAME_MS, 9))
