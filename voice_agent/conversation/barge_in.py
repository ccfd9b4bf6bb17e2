"""Barge-in: when the caller's voice over the agent's counts as an interruption.

While the agent talks (greeting or reply), the caller's line carries three
kinds of sound that a voice activity detector may score as speech: the caller
really talking, the agent's own voice coming back as echo (hybrid or acoustic
echo, delayed and attenuated), and line noise, clicks and coughs. Only the
first may cut the agent off. :class:`BargeInDetector` is the rule, a pure
per-frame policy (no clock, no I/O) so it is tested and tuned offline.

The rule, per 20 ms caller frame: the frame *counts* when

1. its speech probability is at least ``speech_threshold``, and
2. its RMS level is at least ``energy_floor_dbfs`` (≈ -45 dBFS: quiet line
   noise and comfort noise that the VAD scores as speech stay below), and
3. its level is at least the agent's current output level minus
   ``echo_return_loss_db`` (12 dB): echo comes back at least that much
   quieter than what the agent sends, a caller talking over it does not.

A *barge-in* is ``min_speech_ms`` (150 ms, i.e. 8 frames) of consecutive
counting frames; one frame that does not count starts the run again. It is
reported once per run, with the onset (first frame of the run) and the
detection time (the frame that completed it), and the conversation then
flushes the agent's queued audio and cancels its reply.

What this does and does not filter, honestly:

* A cough, click or noise burst shorter than 150 ms never cancels.
* Echo 12 dB or more below the agent's level never cancels, however
  speech-like; a caller speaking more than 12 dB softer than the agent is
  treated the same way (the price of the echo margin).
* A backchannel ("uh-huh", "okay", ~0.3–0.4 s) *does* cancel: it is speech,
  loud, and longer than 150 ms, and nothing at the frame level tells it from
  the start of a real interruption before it ends. ``min_speech_ms`` is the
  knob: ~450 ms lets most backchannels through but stops the agent 0.3 s
  later on every real interruption; 150 ms is the chosen trade-off (a peer
  measured here needs 240 ms, see DESIGN.md).

Speech over the agent that does not pass the rule is not an utterance either:
the conversation drops it rather than answer its own echo.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from voice_agent.audio.frames import FRAME_MS, Pcm16
from voice_agent.audio.levels import level_dbfs


class BargeInConfig(BaseModel):
    """How sure the agent must be that the caller talks before it stops talking."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_speech_ms: int = Field(
        150, ge=FRAME_MS,
        description="Consecutive counting speech that interrupts. Shorter sounds (coughs, "
        "clicks) never do; adds exactly this delay to every barge-in.",
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
        description="A frame must be no more than this far below the agent's output level: "
        "echo of the agent's own voice comes back at least this much quieter.",
    )


@dataclass(frozen=True)
class BargeIn:
    """The caller interrupted: times on the clock the frames were stamped with."""

    onset: float
    """Time of the first frame of the held run."""
    detected: float
    """Time of the frame that completed ``min_speech_ms``."""


class BargeInDetector:
    """The barge-in rule of the module docstring, fed one caller frame at a time.

    Feed it only while the agent talks and :meth:`reset` it otherwise, so a run
    never spans a moment when there was nothing to interrupt.
    """

    def __init__(self, config: BargeInConfig | None = None) -> None:
        self.config = config if config is not None else BargeInConfig()
        self._min_frames = math.ceil(round(self.config.min_speech_ms / FRAME_MS, 9))
        self.reset()

    def reset(self) -> None:
        self._run = 0
        self._onset = 0.0

    def counts(self, pcm: Pcm16, speech_probability: float,
               agent_level_dbfs: float | None) -> bool:
        """Whether one frame is caller speech by the rule (``None``: the agent is silent)."""
        if speech_probability < self.config.speech_threshold:
            return False
        gate = self.config.energy_floor_dbfs
        if agent_level_dbfs is not None:
            gate = max(gate, agent_level_dbfs - self.config.echo_return_loss_db)
        return level_dbfs(pcm) >= gate

    def process(self, pcm: Pcm16, speech_probability: float,
                agent_level_dbfs: float | None, at: float) -> BargeIn | None:
        """Advance by one frame stamped ``at``; the barge-in it completes, if any."""
        if not self.counts(pcm, speech_probability, agent_level_dbfs):
            self._run = 0
            return None
        if self._run == 0:
            self._onset = at
        self._run += 1
        return BargeIn(self._onset, at) if self._run == self._min_frames else None
