"""The conversation agent: listen, understand, answer — and stop when interrupted.

Per call, one loop reads the caller's 20 ms frames, runs them through the VAD
and the endpointer, and reacts to two events:

* ``SpeechEnd`` (the caller finished a turn): start a *turn task* — transcribe
  the utterance, ask the dialog engine, speak the reply clause by clause. The
  frame loop keeps running, so the caller can interrupt at any moment.
* ``SpeechStart`` while the agent is speaking (caller held speech for the
  endpointer's ``min_speech_ms``, so a cough does not count): barge-in — the
  turn task is cancelled and every queued frame flushed, so the caller hears
  silence within a frame or two; the interrupting speech (with its pre-roll)
  becomes the next utterance.

Every turn records its timestamps (speech end, transcript, reply, first audio
queued) in the call record, for the latency benchmarks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import numpy as np

from voice_agent.llm.dialog import DialogEngine, DialogState
from voice_agent.speech.stt import SpeechToText
from voice_agent.speech.tts import PromptCache, TextToSpeech
from voice_agent.speech.vad import (
    Endpointer,
    EndpointerConfig,
    SileroVad,
    SpeechEnd,
    SpeechStart,
    VoiceActivityDetector,
)
from voice_agent.telephony.audio_bridge import INTERNAL_RATE
from voice_agent.telephony.call_audio import FRAME_SAMPLES, FRAME_SECONDS, CallAudio
from voice_agent.telephony.call_session import CallSession
from voice_agent.tenants import TenantRegistry
from voice_agent.tenants.data import TenantDB

log = logging.getLogger(__name__)

IDLE_TICK = 0.1  # how long without a frame before the silence is accounted for
SILENT_FRAME = np.zeros(FRAME_SAMPLES, dtype=np.int16)


class ConversationAgent:
    """Turn-taking with barge-in on top of STT, the dialog engine and TTS."""

    speaks_greeting = True

    def __init__(
        self,
        tenants: TenantRegistry,
        db: TenantDB,
        stt: SpeechToText,
        tts: TextToSpeech,
        *,
        endpointer: EndpointerConfig | None = None,
        prompts: PromptCache | None = None,
    ) -> None:
        self._tenants = tenants
        self._db = db
        self._stt = stt
        self._tts = tts
        self._endpointer = endpointer or EndpointerConfig()
        self._prompts = prompts or PromptCache()

    async def warm_up(self) -> None:
        """Load the models once, at service start, not on the first call."""
        for model in (self._stt, self._tts):
            load = getattr(model, "load", None)
            if load is not None:
                await load()
        SileroVad()  # builds the shared ONNX session

    async def __call__(self, call: CallSession) -> None:
        assert call.audio is not None
        await _Call(self, call, call.audio).run()


class _Call:
    """One call's conversation state (the agent object is shared by all calls)."""

    def __init__(self, agent: ConversationAgent, call: CallSession, audio: CallAudio) -> None:
        self.agent = agent
        self.call = call
        self.audio = audio
        self.record = call.record
        self.tenant = agent._tenants.resolve([self.record.tenant])
        self.engine = DialogEngine(self.tenant, agent._db)
        self.state = DialogState(caller_id=self.record.caller or "anonymous")
        self.vad: VoiceActivityDetector = SileroVad()
        self.endpointer = Endpointer(agent._endpointer)
        self.turn: asyncio.Task[None] | None = None
        self.finished = asyncio.Event()

    async def run(self) -> None:
        greeting = self.engine.greet(self.state)
        self.turn = asyncio.create_task(self._say(greeting.text, cached=True, turn={}))
        reader = asyncio.create_task(self._listen())
        keys = asyncio.create_task(self._keys())
        finished = asyncio.create_task(self.finished.wait())
        try:
            await asyncio.wait({reader, finished}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            tasks = [t for t in (reader, keys, finished, self.turn) if t is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _keys(self) -> None:
        """DTMF is a turn too: '#' repeats, '0' asks for a person, digits fill slots."""
        while True:
            digit = await self.call.dtmf.get()
            if self._speaking():
                self._barge_in(time.monotonic())
            if self.turn is not None and not self.turn.done():
                self.turn.cancel()
            self.turn = asyncio.create_task(self._respond(digit, {"dtmf": digit}))

    async def _listen(self) -> None:
        last = time.monotonic()
        while True:
            try:
                frame = await self.audio.next_frame(timeout=IDLE_TICK)
            except EOFError:
                return
            if frame is None:
                # Asterisk sends nothing while the caller is silent, but silence is
                # exactly what ends a turn: feed the time that passed as silence.
                now = time.monotonic()
                missing = int((now - last) / FRAME_SECONDS)
                for _ in range(missing):
                    self._hear(SILENT_FRAME, now)
                last += missing * FRAME_SECONDS
                continue
            last = frame.arrival
            self._hear(frame.pcm, frame.arrival)

    def _hear(self, pcm: np.ndarray, arrival: float) -> None:
        event = self.endpointer.process(pcm, self.vad.speech_probability(pcm))
        if isinstance(event, SpeechStart) and self._speaking():
            self._barge_in(arrival)
        elif isinstance(event, SpeechEnd):
            self._start_turn(event, arrival)

    def _speaking(self) -> bool:
        return (self.turn is not None and not self.turn.done()) or self.audio.queued_frames > 0

    def _barge_in(self, detected: float) -> None:
        if self.turn is not None:
            self.turn.cancel()
        dropped = self.audio.flush()
        self.record.barge_ins.append({"detected": detected, "dropped_frames": dropped})
        log.info("call %s: barge-in, %d frames of agent audio dropped",
                 self.record.session_id, dropped)

    def _start_turn(self, utterance: SpeechEnd, speech_end: float) -> None:
        if self.turn is not None and not self.turn.done():
            self.turn.cancel()  # the caller went on talking: answer the newest words
        self.turn = asyncio.create_task(self._answer(utterance, speech_end))

    async def _answer(self, utterance: SpeechEnd, speech_end: float) -> None:
        turn: dict[str, Any] = {"speech_end": speech_end}
        transcript = await self.agent._stt.transcribe(utterance.audio)
        turn["stt_final"] = time.monotonic()
        turn["heard"] = transcript.text
        if transcript.text.strip():
            await self._respond(transcript.text, turn)

    async def _respond(self, said: str, turn: dict[str, Any]) -> None:
        self.record.turns.append(turn)
        reply = await asyncio.to_thread(self.engine.reply, self.state, said)
        turn["reply_ready"] = time.monotonic()
        turn["reply"] = reply.text
        turn["intent"] = reply.intent
        await self._say(reply.text, cached=False, turn=turn)
        if reply.transfer and self.tenant.operator_extension:
            self.call.transfer_to = (self.tenant.operator_context,
                                     self.tenant.operator_extension)
            self.finished.set()
        elif reply.done:
            self.record.end_reason = "agent ended the call"
            self.finished.set()

    async def _say(self, text: str, *, cached: bool, turn: dict[str, Any]) -> None:
        """Speak ``text``; returns when the caller has heard all of it."""
        chunks = (self.agent._prompts.stream(self.agent._tts, text) if cached
                  else self.agent._tts.stream(text))
        async with contextlib.aclosing(chunks) as stream:
            async for chunk in stream:
                turn.setdefault("first_audio", time.monotonic())
                self.audio.write(chunk, INTERNAL_RATE)
        self.audio.finish()
        await self.audio.wait_played()  # still "speaking" until the caller heard it all
