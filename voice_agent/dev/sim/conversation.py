"""A scripted caller: talks to the agent over a real call and measures it from the caller's side.

The caller speaks each utterance (espeak-ng) into a real call through
Asterisk, listens to what comes back, transcribes the agent's replies with
Whisper and times everything on the caller's side of the line, as a person on
the phone would experience it:

* **voice-to-voice latency**: from the end of the caller's speech (the last
  loud 20 ms of the utterance as it left the phone) to the first loud frame of
  the agent's reply arriving at the phone;
* **barge-in stop delay**: from the onset of the caller's interrupting speech
  to the last loud frame of the agent's interrupted reply.

Normally the caller waits for the agent to finish (``SILENCE_S`` of quiet after
it spoke) before the next step. A step with ``barge_in_after`` is spoken that
many seconds after the agent *started* its previous reply, over it.

Used by ``voice-agent call --say``, ``voice-agent demo``, the latency and
barge-in benchmarks and the conversation integration tests.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import numpy as np

from voice_agent.audio.frames import FRAME_SECONDS
from voice_agent.dev.sim.phone import PhoneCall, SimPhone
from voice_agent.dev.sim.signals import rms_envelope, speech
from voice_agent.providers.stt import SpeechToText, normalize_words
from voice_agent.tenants import TenantRegistry
from voice_agent.tenants.spec import Conversation

#: RMS (PCM16) above which a 20 ms frame counts as someone speaking; line silence is < 50.
LOUD = 300.0
#: Quiet that means the agent finished its reply (longer than any pause between clauses,
#: which grows when a loaded box synthesizes the next clause late).
SILENCE_S = 1.2
#: A gap this long after an interruption means the agent's audio stopped.
STOP_GAP_S = 0.3


class AgentSilent(AssertionError):
    """The agent did not speak (or never finished) within the wait; the message shows levels."""


@dataclass(frozen=True)
class Step:
    """One thing the caller does: say a sentence or press keys."""

    say: str | None = None
    dtmf: str | None = None
    #: Speak this many seconds after the agent started its previous reply (a barge-in).
    barge_in_after: float | None = None
    #: Then, after ``pause_s`` of silence mid-sentence, say this too (one turn).
    then: str | None = None
    pause_s: float = 0.8

    @property
    def label(self) -> str:
        if self.say is None:
            return f"[DTMF {self.dtmf}]"
        return f"{self.say} … {self.then}" if self.then else self.say


@dataclass
class Exchange:
    """What the caller did, what it heard back, and how long things took."""

    said: str
    heard: str = ""
    #: Caller speech end → first agent audio at the caller (None: no reply heard).
    latency_s: float | None = None
    #: For an interrupting step: its speech onset → the agent's interrupted audio stopped.
    barge_in_stop_s: float | None = None
    #: The reply this step interrupted, as far as the caller heard it.
    interrupted_reply: str = ""
    reply_started: float | None = None
    reply_ended: float | None = None


@dataclass
class Ear:
    """Everything the caller hears, frame by frame, with arrival times."""

    call: PhoneCall
    frames: list[tuple[float, float, np.ndarray]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._task = asyncio.create_task(self._listen())

    async def _listen(self) -> None:
        assert self.call.audio is not None, "dial(..., audio=True) to listen"
        async for frame in self.call.audio.frames():
            level = float(rms_envelope(frame.pcm, 16000, FRAME_SECONDS)[0])
            self.frames.append((frame.arrival, level, frame.pcm))

    def close(self) -> None:
        self._task.cancel()

    def audio(self, start: float, end: float | None = None) -> np.ndarray:
        """What arrived between ``start`` and ``end`` (monotonic times)."""
        chunks = [pcm for t, _, pcm in self.frames if t >= start and (end is None or t <= end)]
        return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)

    def loud_times(self, start: float, end: float | None = None) -> list[float]:
        return [t for t, level, _ in self.frames
                if t >= start and (end is None or t <= end) and level > LOUD]

    async def first_speech(self, after: float, timeout: float = 30.0) -> float:
        """When the agent's audio first became loud after ``after``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if loud := self.loud_times(after):
                return loud[0]
            await asyncio.sleep(0.02)
        raise AgentSilent(f"the agent said nothing within {timeout:.0f} s; "
                          f"{self._levels(after)}")

    async def end_of_speech(self, after: float, silence: float = SILENCE_S,
                            timeout: float = 40.0) -> float:
        """Once the agent spoke after ``after`` and then stayed quiet ``silence`` seconds:
        the arrival time of its last loud frame."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            loud = self.loud_times(after)
            if loud and time.monotonic() - loud[-1] > silence:
                return loud[-1]
            await asyncio.sleep(0.05)
        raise AgentSilent(f"the agent never finished speaking within {timeout:.0f} s; "
                          f"{self._levels(after)}")

    def stopped_after(self, onset: float) -> float | None:
        """The last loud frame before the first ``STOP_GAP_S`` gap after ``onset``."""
        last = onset
        for t in self.loud_times(onset):
            if t - last > STOP_GAP_S:
                return last
            last = t
        return last if time.monotonic() - last > STOP_GAP_S else None

    def _levels(self, after: float) -> str:
        levels = [round(level) for t, level, _ in self.frames if t >= after]
        return f"{len(levels)} frames heard, levels {levels[:30]}…"


def _speech_bounds(pcm: np.ndarray) -> tuple[float, float]:
    """Seconds from the clip's start to its first and past its last loud frame."""
    loud = np.flatnonzero(rms_envelope(pcm, 16000, FRAME_SECONDS) > LOUD)
    if not len(loud):
        return 0.0, len(pcm) / 16000
    return float(loud[0] * FRAME_SECONDS), float((loud[-1] + 1) * FRAME_SECONDS)


class ScriptedCaller:
    """Runs a list of :class:`Step` on an answered call and reports each :class:`Exchange`.

    ``stt=None``: replies are timed but not transcribed (a benchmark that must
    not count the caller's own speech recognition as the agent's CPU).
    ``trailing_silence``: seconds of silence sent after each utterance, for
    agents that detect the end of a turn from silent audio *frames* (AGI
    ``RECORD FILE``) rather than from time without packets.
    ``gain_db`` and ``voice``: how loud (relative to espeak-ng's level) and in
    which espeak-ng voice this caller speaks; real lines differ by ±10 dB.
    """

    def __init__(self, call: PhoneCall, stt: SpeechToText | None,
                 trailing_silence: float = 0.0, *, gain_db: float = 0.0,
                 voice: str = "en-us") -> None:
        self.call = call
        self.stt = stt
        self.trailing_silence = trailing_silence
        self.gain = 10 ** (gain_db / 20)
        self.voice = voice
        self.ear = Ear(call)
        self.exchanges: list[Exchange] = []

    async def __aenter__(self) -> ScriptedCaller:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.ear.close()

    async def greeting(self) -> Exchange:
        """Wait for the agent's greeting, transcribed."""
        start = self.call.answered_at or time.monotonic()
        exchange = Exchange(said="")
        exchange.reply_started = await self.ear.first_speech(start)
        exchange.reply_ended = await self.ear.end_of_speech(start)
        exchange.heard = await self._transcribe(exchange.reply_started, exchange.reply_ended)
        self.exchanges.append(exchange)
        return exchange

    async def run(self, steps: list[Step]) -> list[Exchange]:
        """Greeting, then every step; returns all exchanges (greeting first)."""
        if not self.exchanges:
            await self.greeting()
        for step in steps:
            await self.step(step)
        return self.exchanges

    async def step(self, step: Step) -> Exchange:
        previous = self.exchanges[-1] if self.exchanges else None
        exchange = Exchange(said=step.label)
        if step.barge_in_after is not None and previous is not None:
            assert previous.reply_started is not None, "nothing to interrupt"
            await _sleep_until(previous.reply_started + step.barge_in_after)
        elif previous is not None and previous.reply_ended is None:
            assert previous.reply_started is not None
            previous.reply_ended = await self.ear.end_of_speech(previous.reply_started)

        if step.dtmf is not None:
            await self.call.send_dtmf(step.dtmf)
            speech_end = onset = time.monotonic()
        else:
            assert step.say is not None
            pcm = speech(step.say, voice=self.voice)
            if step.then:
                pcm = np.concatenate((pcm, np.zeros(int(step.pause_s * 16000), np.int16),
                                      speech(step.then, voice=self.voice)))
            first, last = _speech_bounds(pcm)  # timed at the nominal level
            pcm = (pcm * self.gain).astype(np.int16) if self.gain != 1 else pcm
            pcm = np.concatenate((pcm, np.zeros(int(self.trailing_silence * 16000), np.int16)))
            sent = time.monotonic()
            done = await self.call.say(pcm)
            onset, speech_end = sent + first, done - (len(pcm) / 16000 - last)

        if step.barge_in_after is not None and previous is not None:
            stopped = self.ear.stopped_after(onset)
            while stopped is None:
                await asyncio.sleep(0.05)
                stopped = self.ear.stopped_after(onset)
            exchange.barge_in_stop_s = max(0.0, stopped - onset)
            previous.reply_ended = stopped
            assert previous.reply_started is not None
            exchange.interrupted_reply = await self._transcribe(previous.reply_started, stopped)
            previous.heard = exchange.interrupted_reply

        exchange.reply_started = await self.ear.first_speech(max(speech_end, onset + 0.001))
        exchange.latency_s = exchange.reply_started - speech_end
        self.exchanges.append(exchange)
        return exchange

    async def finish(self) -> list[Exchange]:
        """Wait for the last reply to end and transcribe every reply not yet transcribed."""
        last = self.exchanges[-1]
        if last.reply_started is not None and last.reply_ended is None:
            last.reply_ended = await self.ear.end_of_speech(last.reply_started)
        for exchange in self.exchanges:
            if not exchange.heard and exchange.reply_started is not None:
                exchange.heard = await self._transcribe(exchange.reply_started,
                                                        exchange.reply_ended)
        return self.exchanges

    async def _transcribe(self, start: float, end: float | None) -> str:
        if self.stt is None:
            return ""
        audio = self.ear.audio(start - 0.1, None if end is None else end + 0.1)
        return (await self.stt.transcribe(audio)).text.strip() if len(audio) else ""


def words_heard(said: str, heard: str) -> float:
    """Share of the words of ``said`` that occur in the transcript ``heard`` (0 to 1).

    How much of a reply reached the caller, as far as speech recognition can
    tell: robust to the single words a small model mishears on phone audio
    ("has shipped" → "how should then"), where checking one keyword is not.
    """
    words = normalize_words(said.replace("-", " "))
    found = set(normalize_words(heard.replace("-", " ")))
    return sum(word in found for word in words) / len(words) if words else 1.0


def word_error_rate(said: str, heard: str) -> float:
    """Word error rate of ``heard`` against ``said``: (substitutions + insertions +
    deletions) / words said, by word-level edit distance (can exceed 1)."""
    ref = normalize_words(said.replace("-", " "))
    hyp = normalize_words(heard.replace("-", " "))
    if not ref:
        return float(bool(hyp))
    row = list(range(len(hyp) + 1))
    for i, word in enumerate(ref, 1):
        previous, row[0] = row[0], i
        for j, other in enumerate(hyp, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1,
                                           previous + (word != other))
    return row[-1] / len(ref)


async def talk(ari_url: str, user: str, password: str, number: str, steps: list[Step],
               stt: SpeechToText, *, via: str = "sip") -> list[Exchange]:
    """Dial ``number``, run ``steps`` after the greeting, hang up; every exchange, measured."""
    async with SimPhone(ari_url, user, password) as phone:
        call = await phone.dial(number, audio=True, via=via)
        try:
            async with ScriptedCaller(call, stt) as caller:
                await caller.run(steps)
                return await caller.finish()
        finally:
            await call.hangup()


async def _sleep_until(when: float) -> None:
    await asyncio.sleep(max(0.0, when - time.monotonic()))


def examples(use: str) -> list[tuple[str, Conversation]]:
    """Every tenant's example conversations marked ``use``, each with the number it dials."""
    return [(t.dials(c), c) for t in TenantRegistry.load() if t.numbers
            for c in t.conversations if use in c.use]


def example(use: str) -> tuple[str, Conversation]:
    """The first example conversation marked ``use``, with the number it dials."""
    found = examples(use)
    if not found:
        raise ValueError(f"no tenant has an example conversation marked 'use: {use}' "
                         "(docs/tenants.md: conversations.yaml)")
    return found[0]


def steps_of(conversation: Conversation) -> list[Step]:
    """A tenant's example conversation as the simulated caller's steps."""
    return [Step(say=s.say or None, dtmf=s.dtmf or None, then=s.then or None)
            for s in conversation.steps]
