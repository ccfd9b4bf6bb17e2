"""The conversation agent: listen, understand, answer — and stop when interrupted.

Per call, one loop reads the caller's 20 ms frames, scores them with the VAD
and feeds the endpointer and, while the agent talks, the barge-in rule:

* ``SpeechEnd`` (the caller finished a turn): start a *turn task* — transcribe
  the utterance, ask the dialog engine (or the server LLM, when one is
  configured: :mod:`~voice_agent.dialog.llm_dialog`), speak the reply clause by
  clause. The frame loop keeps running, so the caller can interrupt at any moment.
  Transcription starts early, after ``speculate_after_ms`` of trailing silence;
  if the caller stays silent until the endpointer ends the turn, that
  transcript is the turn's (its cost is hidden in the end-of-turn wait). The
  dialog reads it too (:mod:`~voice_agent.dialog.turn_end`): words that already
  make a whole answer end the turn at once, words that stop mid-sentence make
  the endpointer wait ``wait_longer_ms`` instead of its fixed silence.
* Caller speech over the agent (:mod:`~voice_agent.conversation.barge_in`):
  60 ms of it, loud enough not to be the line's echo, *pauses* the agent's
  audio, so the caller hears silence within a few frames. A cough resumes the
  reply; words are transcribed when they end, and a backchannel ("uh-huh")
  resumes it too. Anything else, or speech held 0.7 s, is a barge-in: the turn
  task is cancelled and every queued frame flushed; the endpointer goes on
  collecting the interrupting speech (with its pre-roll), which becomes the
  next utterance, its transcript already taken. The history keeps only the
  part of the reply that was played, marked interrupted.
* Speech over the agent that did not interrupt it (echo, noise, a
  backchannel) is dropped when it ends: answering it would answer the agent
  itself.

The agent drives the call's state: GREETING until the greeting was heard, then
LISTENING → THINKING (turn started) → SPEAKING (first audio queued) → LISTENING
(reply played, or cut). Every turn records its timestamps (speech end,
transcript, reply, first audio queued, all played, pauses resumed) and every
barge-in its onset, pause, decision, stop and dropped frames, in the call record.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from typing import Any

import numpy as np

from voice_agent.audio.frames import FRAME_SAMPLES, FRAME_SECONDS, INTERNAL_RATE
from voice_agent.calls.protocol import Call
from voice_agent.calls.record import CallState
from voice_agent.conversation.barge_in import (
    BargeIn,
    BargeInConfig,
    BargeInDetector,
    Event,
    Judge,
    Pause,
    Resume,
    is_backchannel,
)
from voice_agent.conversation.spoken_reply import SpokenReply
from voice_agent.dialog.engine import DialogEngine
from voice_agent.dialog.llm_dialog import APOLOGY, LlmDialog
from voice_agent.dialog.state import DialogState
from voice_agent.dialog.turn_end import TurnEnd
from voice_agent.media.call_audio import CallAudio
from voice_agent.providers.errors import ProviderError, call_failures, report_failure
from voice_agent.providers.factory import ProviderSet
from voice_agent.providers.llm import LanguageModel
from voice_agent.providers.stt import SpeechToText, Transcript
from voice_agent.providers.tts import PromptCache, TextToSpeech, split_for_speech
from voice_agent.providers.vad import (
    BatchedSileroVad,
    Endpointer,
    EndpointerConfig,
    SpeechEnd,
    VoiceActivityDetector,
    score,
)
from voice_agent.providers.workers import turn_ended_at
from voice_agent.tenants import TenantRegistry
from voice_agent.tenants.data import TenantDatabases

log = logging.getLogger(__name__)

IDLE_TICK = 0.1  # how long without a frame before the silence is accounted for
#: An utterance this long that transcribes to nothing gets "sorry, I didn't catch that".
REPROMPT_AFTER_SAMPLES = int(0.6 * INTERNAL_RATE)
SILENT_FRAME = np.zeros(FRAME_SAMPLES, dtype=np.int16)
#: States in which the agent's voice is on the line and the caller may barge in.
TALKING = frozenset({CallState.GREETING, CallState.SPEAKING})


class ConversationAgent:
    """Turn-taking with barge-in on top of STT, the dialog engine and TTS.

    ``vad`` makes one detector per call (it has per-call state); tests pass a
    scripted one. ``clock`` gives every timestamp the loop records and the
    silence it accounts for; it must be the clock of the frames' arrival times
    (``time.monotonic`` for the transports, the event loop's virtual time in tests).
    """

    speaks_greeting = True

    def __init__(
        self,
        tenants: TenantRegistry,
        db: TenantDatabases,
        stt: SpeechToText,
        tts: TextToSpeech,
        *,
        endpointer: EndpointerConfig | None = None,
        prompts: PromptCache | None = None,
        barge_in: BargeInConfig | None = None,
        vad: Callable[[], VoiceActivityDetector] = BatchedSileroVad,
        speculate_after_ms: int = 200,
        wait_longer_ms: int = 1000,
        llm: LanguageModel | None = None,
        per_tenant: Mapping[str, ProviderSet] | None = None,
        watchdog_seconds: float = 20.0,
        silence_reprompt_seconds: float = 8.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._tenants = tenants
        self._db = db
        self._default = ProviderSet(stt, tts, llm)
        #: Tenants whose files name their own model servers.
        self._per_tenant = dict(per_tenant or {})
        #: A turn stuck this long (THINKING, or SPEAKING with nothing playing) is abandoned.
        self._watchdog_seconds = watchdog_seconds
        #: A caller silent this long while the agent listens is asked again (the
        #: dialog engine says goodbye once it asked enough).
        self._silence_reprompt_seconds = silence_reprompt_seconds
        self._endpointer = endpointer or EndpointerConfig()
        self._prompts = prompts or PromptCache()
        self._barge_in = barge_in or BargeInConfig()
        self._vad = vad
        #: Start transcribing after this much trailing silence, before the turn's end
        #: is decided (0: never). A pause the caller talks on through costs one
        #: wasted transcription; a real end of turn gets its transcript that much sooner.
        self._speculate_frames = speculate_after_ms // 20
        #: The silence that ends a turn whose words stop mid-sentence ("my number is").
        self._wait_longer_ms = wait_longer_ms
        #: Where turn and barge-in timestamps come from; the same clock as the frames'
        #: arrival times (tests pass the event loop's virtual time).
        self._clock = clock

    def _providers(self) -> list[object]:
        """Every distinct provider object of every tenant (chains included)."""
        seen: dict[int, object] = {}
        for pset in (self._default, *self._per_tenant.values()):
            for provider in (pset.stt, pset.tts, pset.llm):
                if provider is not None:
                    seen.setdefault(id(provider), provider)
        return list(seen.values())

    async def aclose(self) -> None:
        """Release every provider client's connections (the service calls this at shutdown)."""
        for provider in self._providers():
            if (close := getattr(provider, "aclose", None)) is not None:
                await close()

    async def warm_up(self) -> None:
        """Load the models once, at service start, not on the first call, and have each
        tenant's greeting and the apology (what a caller hears when a provider fails)
        synthesized in its voice: no caller waits for those."""
        for provider in self._providers():
            if (load := getattr(provider, "load", None)) is not None:
                await load()
        self._vad()  # Silero: builds the shared ONNX session
        for tenant in self._tenants:
            tts = self._per_tenant.get(tenant.name, self._default).tts
            greeting = DialogEngine(tenant, self._db).greet(DialogState()).text
            for text in (APOLOGY, *split_for_speech(greeting)):
                try:
                    await self._prompts.get(tts, text)
                except ProviderError as exc:
                    log.error("cannot pre-synthesize %r with %s: %s", text, tts.name, exc)

    async def __call__(self, call: Call) -> None:
        assert call.audio is not None
        await _Call(self, call, call.audio).run()


class _Call:
    """One call's conversation state (the agent object is shared by all calls)."""

    def __init__(self, agent: ConversationAgent, call: Call, audio: CallAudio) -> None:
        self.agent = agent
        self.call = call
        self.audio = audio
        self.record = call.record
        self.tenant = agent._tenants.resolve([self.record.tenant])
        self.engine = DialogEngine(self.tenant, agent._db)
        providers = agent._per_tenant.get(self.tenant.name, agent._default)
        self.stt, self.tts = providers.stt, providers.tts
        self.llm = (LlmDialog(self.tenant, providers.llm, self.engine)
                    if providers.llm is not None else None)
        #: The stage a turn is in ("stt", "dialog", "llm", "tts"): what a failure is blamed on.
        self.stage = "stt"
        #: When the current turn last made progress (started, or wrote audio): the watchdog's.
        self.progress_at = agent._clock()
        self.state = DialogState(caller_id=self.record.caller or "anonymous")
        self.vad = agent._vad()
        endpointing = agent._endpointer
        if self.tenant.silence_ms:  # the tenant's own end-of-turn silence
            endpointing = endpointing.model_copy(update={"silence_ms": self.tenant.silence_ms})
        self.endpointer = Endpointer(endpointing)
        #: A transcription started early on the open utterance: (its end frame, task).
        self.speculation: tuple[int, asyncio.Task[Transcript]] | None = None
        self.barge_in = BargeInDetector(agent._barge_in)
        #: The transcription deciding whether speech over the agent interrupts it.
        self.judging: asyncio.Task[None] | None = None
        #: What the dialog made of the open utterance's early transcript.
        self.turn_end = TurnEnd.UNSURE
        #: When caller speech last paused the agent (the stop a barge-in is heard at).
        self.paused_at: float | None = None
        self.turn: asyncio.Task[None] | None = None
        #: The reply on the line (or last on it) and its record entry.
        self.reply = SpokenReply()
        self.reply_turn: dict[str, Any] = {}
        #: The open utterance overlapped the agent's voice without passing the barge-in rule.
        self.talked_over = False
        #: The agent was talking at the previous frame.
        self.was_talking = False
        #: Since when neither side made a sound (the caller's speech, the agent's turn).
        self.quiet_since = agent._clock()
        self.finished = asyncio.Event()

    async def run(self) -> None:
        call_failures.set(self.record.errors)  # providers report into this call's record
        greeting = self.engine.greet(self.state)
        self.stage = "tts"
        self.turn = asyncio.create_task(self._guarded(
            self._say(_pieces(greeting.text), cached=True, turn={}, state=CallState.GREETING)))
        reader = asyncio.create_task(self._listen())
        keys = asyncio.create_task(self._keys())
        finished = asyncio.create_task(self.finished.wait())
        watchdog = asyncio.create_task(self._watchdog())
        try:
            await asyncio.wait({reader, finished}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._drop_speculation()
            tasks = [t for t in (reader, keys, finished, watchdog, self.turn, self.judging)
                     if t is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _keys(self) -> None:
        """DTMF is a turn too: '#' repeats, '0' asks for a person, digits fill slots."""
        while True:
            digit = await self.call.dtmf.get()
            if self.call.state in TALKING:
                now = self.agent._clock()
                self._barge_in(BargeIn(now, now))
            if self.turn is not None and not self.turn.done():
                self.turn.cancel()
            self.call.transition(CallState.THINKING)
            self.progress_at = self.agent._clock()
            self.turn = asyncio.create_task(self._guarded(self._respond(digit, {"dtmf": digit})))

    async def _listen(self) -> None:
        last = self.agent._clock()
        while True:
            try:
                frame = await self.audio.next_frame(timeout=IDLE_TICK)
            except EOFError:
                return
            if frame is None:
                # Asterisk sends nothing while the caller is silent, but silence is
                # exactly what ends a turn: feed the time that passed as silence.
                now = self.agent._clock()
                missing = int((now - last) / FRAME_SECONDS)
                for _ in range(missing):
                    await self._hear(SILENT_FRAME, now)
                last += missing * FRAME_SECONDS
                continue
            last = frame.arrival
            await self._hear(frame.pcm, frame.arrival)

    async def _hear(self, pcm: np.ndarray, arrival: float) -> None:
        probability = await score(self.vad, pcm)  # batched with the other calls' frames
        talking = self.call.state in TALKING
        if self.was_talking and not talking and self.talked_over:
            # The agent finished over sound that never interrupted it (its echo, noise,
            # a backchannel): no utterance, and a caller answering at once starts afresh
            # rather than be dropped with it.
            self.endpointer.discard()
            self.talked_over = False
        self.was_talking = talking
        event = self.endpointer.process(pcm, probability)
        self._mind_the_silence(probability, arrival)  # may start a task, not change state
        if talking:
            level = None if self.audio.paused else self._agent_level()
            self._on_barge_in(self.barge_in.process(pcm, probability, level, arrival))
            if self.endpointer.in_speech and self.call.state in TALKING:
                self.talked_over = True
        else:
            self.barge_in.reset()
            self.audio.resume()  # never leave the line paused once the reply is over
        if isinstance(event, SpeechEnd):
            if self.talked_over or self.call.state in TALKING:
                log.info("call %s: ignored %.2f s of sound over the agent's voice",
                         self.record.session_id, len(event.audio) / INTERNAL_RATE)
            else:
                self._start_turn(event, arrival)
            self.talked_over = False
        elif (self.agent._speculate_frames and self.call.state not in TALKING
              and not self.talked_over
              and self.endpointer.trailing_silence_frames == self.agent._speculate_frames):
            self._speculate()

    def _mind_the_silence(self, probability: float, now: float) -> None:
        """Ask a silent caller again after ``silence_reprompt_seconds``; in the end, hang up."""
        if (self.call.state is not CallState.LISTENING or self.endpointer.in_speech
                or probability >= self.endpointer.config.start_threshold
                or (self.turn is not None and not self.turn.done())):
            if self.endpointer.in_speech:
                self.state.silences = 0
            self.quiet_since = now
            return
        if now - self.quiet_since < self.agent._silence_reprompt_seconds:
            return
        self.quiet_since = now
        self.turn = asyncio.create_task(self._guarded(self._ask_again()))

    async def _ask_again(self) -> None:
        reply = self.engine.silence(self.state)
        self.record.turns.append({"silence": True, "reply": reply.text, "intent": reply.intent})
        self.stage = "tts"
        await self._say(_pieces(reply.text), cached=True, turn=self.record.turns[-1])
        if reply.done:
            self.record.end_reason = "caller silent"
            self.finished.set()

    def _on_barge_in(self, event: Event | None) -> None:
        """Act on the barge-in rule: pause the agent, resume it, judge the words, or stop."""
        if isinstance(event, Pause):
            self.audio.pause()
            self.paused_at = event.at
            log.debug("call %s: caller speech over the agent, paused", self.record.session_id)
        elif isinstance(event, Resume):
            self.audio.resume()
            self.reply_turn.setdefault("pauses", []).append(
                {"onset": event.onset, "resumed": event.at, "reason": event.reason})
            log.info("call %s: resumed the reply after %.2f s (%s)", self.record.session_id,
                     event.at - event.onset, event.reason)
        elif isinstance(event, Judge):
            if not self.endpointer.in_speech:
                # Broken into pieces too short to be an utterance: noise, play on.
                self._on_barge_in(self.barge_in.verdict(True, event.at, reason="noise"))
                return
            # What the words were decides; their transcript is also the next turn's
            # if they were an interruption (the endpointer ends on the same frame).
            self._speculate()
            assert self.speculation is not None
            self.judging = asyncio.create_task(self._judge(*self.speculation))
        elif isinstance(event, BargeIn):
            self._barge_in(event)

    async def _judge(self, end: int, words: asyncio.Task[Transcript]) -> None:
        try:
            text = (await asyncio.shield(words)).text
        except Exception as exc:  # noqa: BLE001 - unknown words interrupt, as the safe side
            log.warning("call %s: could not transcribe speech over the agent: %s",
                        self.record.session_id, exc)
            text = "?"
        if self.call.state in TALKING:
            self._on_barge_in(self.barge_in.verdict(is_backchannel(text), self.agent._clock()))
            self._speculated(end, words)  # an interruption may already be a whole turn

    def _speculate(self) -> None:
        """Transcribe the open utterance now; the turn uses it if the caller stays silent."""
        end, audio = self.endpointer.utterance_so_far()
        self._drop_speculation()
        # The model pool serves the earliest end of speech first, across all calls.
        silent_since = self.agent._clock() - self.endpointer.trailing_silence_frames * FRAME_SECONDS
        token = turn_ended_at.set(silent_since)
        try:
            task = asyncio.create_task(self.stt.transcribe(audio))
        finally:
            turn_ended_at.reset(token)
        self.speculation = (end, task)
        task.add_done_callback(functools.partial(self._speculated, end))

    def _speculated(self, end: int, task: asyncio.Task[Transcript]) -> None:
        """The early transcript is in: if the caller is still silent, may the turn end now?"""
        if (task.cancelled() or task.exception() is not None
                or self.speculation is None or self.speculation[1] is not task
                or self.call.state in TALKING or self.talked_over
                or not self.endpointer.in_speech
                or self.endpointer.utterance_so_far()[0] != end):
            return  # stale: the caller went on, or the agent is talking
        verdict = self.engine.turn_end(self.state, task.result().text)
        self.turn_end = verdict
        if verdict is TurnEnd.COMPLETE:
            utterance = self.endpointer.end_now()
            assert utterance is not None
            self._start_turn(utterance, self.agent._clock())
        elif verdict is TurnEnd.INCOMPLETE:
            self.endpointer.wait_longer(self.agent._wait_longer_ms)

    def _drop_speculation(self) -> None:
        if self.speculation is not None:
            self.speculation[1].cancel()
            self.speculation = None

    def _agent_level(self) -> float | None:
        """Level of the agent's audio the caller hears now (what its echo is measured by)."""
        return self.reply.level_at(self.reply.frames - self.audio.queued_frames)

    def _barge_in(self, cut: BargeIn) -> None:
        """Stop talking now; keep in the history only what the caller heard."""
        if self.turn is not None:
            self.turn.cancel()
        played = self.reply.frames - self.audio.queued_frames
        dropped = self.audio.flush()
        now = self.agent._clock()
        paused = self.paused_at if self.paused_at is not None and self.paused_at >= cut.onset \
            else now
        self.record.barge_ins.append({"onset": cut.onset, "paused": paused,
                                      "detected": cut.detected, "stopped": now,
                                      "dropped_frames": dropped})
        heard = self.reply.heard(played)
        self.reply_turn.update(played_text=heard, interrupted=True)
        self.state.cut_last_reply(heard)
        self.barge_in.reset()
        self.talked_over = False
        self.call.transition(CallState.LISTENING)
        log.info("call %s: barge-in, %d frames of agent audio dropped, heard %r",
                 self.record.session_id, dropped, heard)

    def _start_turn(self, utterance: SpeechEnd, speech_end: float) -> None:
        if self.turn is not None and not self.turn.done():
            self.turn.cancel()  # the caller went on talking: answer the newest words
        self.call.transition(CallState.THINKING)
        self.progress_at = self.agent._clock()
        early = None
        if self.speculation is not None and self.speculation[0] == utterance.end_frame:
            early, self.speculation = self.speculation[1], None
        self._drop_speculation()  # speech went on after it: stale
        self.turn = asyncio.create_task(
            self._guarded(self._answer(utterance, speech_end, early)))

    async def _answer(self, utterance: SpeechEnd, speech_end: float,
                      early: asyncio.Task[Transcript] | None) -> None:
        turn: dict[str, Any] = {
            "speech_start": speech_end - len(utterance.audio) / INTERNAL_RATE,
            "speech_end": speech_end, "speculative": early is not None,
            "turn_end": self.turn_end.value if early else "silence",
            "end_of_turn_s": (utterance.detected_frame - utterance.end_frame + 1) * FRAME_SECONDS}
        self.turn_end = TurnEnd.UNSURE
        turn_ended_at.set(speech_end)  # this task's transcription queues by its turn's end
        try:
            self.stage = "stt"
            transcript = await (early or self.stt.transcribe(utterance.audio))
        finally:
            if early is not None:
                early.cancel()
        turn["stt_final"] = self.agent._clock()
        turn["heard"] = transcript.text
        if transcript.text.strip():
            await self._respond(transcript.text, turn)
        elif len(utterance.audio) >= REPROMPT_AFTER_SAMPLES:
            # Speech the model could not make out: ask again rather than leave the caller
            # waiting in silence for an answer that will never come.
            await self._respond("", turn)
        else:
            self.call.transition(CallState.LISTENING)  # a click or a cough: ignore it

    async def _respond(self, said: str, turn: dict[str, Any]) -> None:
        self.record.turns.append(turn)
        if self.llm is not None and "dtmf" not in turn and said:  # keys, "what?": the engine
            turn["llm"] = True
            self.stage = "llm"
            try:
                await self._say(self.llm.reply(self.state, said), cached=False, turn=turn)
            finally:
                turn["tools"] = list(self.llm.tools_called)
            self._hand_off(transfer=self.llm.transfer, done=self.llm.done)
            return
        self.stage = "dialog"
        reply = await asyncio.to_thread(self.engine.reply, self.state, said)
        turn.update(reply_ready=self.agent._clock(), reply=reply.text, intent=reply.intent)
        # Through the prompt cache: the engine's fixed clauses ("What day would you
        # like?") are synthesized once per process, the rest pass through it.
        await self._say(_pieces(reply.text), cached=True, turn=turn)
        self._hand_off(transfer=reply.transfer, done=reply.done)

    def _hand_off(self, *, transfer: bool, done: bool) -> None:
        """After a reply: transfer to the tenant's operator, or end the call, if it said so."""
        if transfer and self.tenant.operator_extension:
            self.call.transfer_to = (self.tenant.operator_context,
                                     self.tenant.operator_extension)
            self.finished.set()
        elif done:
            self.record.end_reason = "agent ended the call"
            self.finished.set()

    async def _say(self, pieces: AsyncIterator[str], *, cached: bool, turn: dict[str, Any],
                   state: CallState = CallState.SPEAKING) -> None:
        """Speak the reply piece by piece; returns when the caller has heard all of it.

        Pieces (clauses, or an LLM's sentences as it writes them) are synthesized
        one after the other while earlier ones play, and each one's frames are
        remembered, so a barge-in knows what was heard.
        """
        self.reply, self.reply_turn = SpokenReply(), turn
        said: list[str] = []
        async for clause in pieces:
            turn.setdefault("reply_ready", self.agent._clock())
            if turn.get("llm"):
                said.append(clause)
                turn["reply"] = " ".join(said)
            self.reply.start_clause(clause)
            self.stage = "tts"
            chunks = (self.agent._prompts.stream(self.tts, clause) if cached
                      else self.tts.stream(clause))
            async with contextlib.aclosing(chunks) as stream:
                async for chunk in stream:
                    self.reply.wrote(chunk, self.audio.write(chunk, INTERNAL_RATE))
                    self.progress_at = self.agent._clock()
                    if "first_audio" not in turn:
                        turn["first_audio"] = self.agent._clock()
                        self.call.transition(state)
        if padded := self.audio.finish():  # the tail, padded to a whole frame of silence
            self.reply.wrote(SILENT_FRAME[:0], padded)
        await self.audio.wait_played()  # still "speaking" until the caller heard it all
        turn["played"] = self.agent._clock()
        self.call.transition(CallState.LISTENING)

    async def _guarded(self, work: Coroutine[Any, Any, None]) -> None:
        """Run one turn; a failing provider (or a bug) ends it with a short spoken
        apology and the call listens again: the caller never waits in silence."""
        try:
            await work
        except Exception as exc:
            self._failed(self.stage, exc)
            await self._apologise()

    def _failed(self, stage: str, exc: BaseException | str) -> None:
        """Record and log a failure with its stage and provider."""
        provider = {"stt": self.stt.name, "tts": self.tts.name, "dialog": "rule engine",
                    "llm": getattr(self.llm, "name", "llm") if self.llm else "rule engine",
                    }.get(stage, stage)
        report_failure(stage, provider, exc, handled_by="apology")
        error = self.record.errors[-1]["error"]
        if isinstance(exc, BaseException) and not isinstance(exc, ProviderError):
            log.error("call %s: %s failed (%s)", self.record.session_id, stage, provider,
                      exc_info=exc)
        else:
            log.error("call %s: %s provider %s failed: %s; apologising", self.record.session_id,
                      stage, provider, error)

    async def _apologise(self) -> None:
        """Say the (pre-synthesized) apology after what was already said, then listen."""
        turn: dict[str, Any] = {"apology": True}
        try:
            await self._say(_pieces(APOLOGY), cached=True, turn=turn)
        except Exception as exc:  # even the cache and TTS failed: nothing can be said
            self._give_up(f"cannot speak: {exc}")
            return
        self.call.transition(CallState.LISTENING)

    def _give_up(self, reason: str) -> None:
        """The agent's voice is gone (a dead TTS with no fallback, the apology never
        synthesized): a silent line is the worst outcome, so the call goes back to
        the session, which says sorry with Asterisk's own sounds and hands the
        caller to the tenant's operator, or ends the call where there is none."""
        log.error("call %s: %s; handing the call back", self.record.session_id, reason)
        self.call.gave_up = reason
        if self.tenant.operator_extension:
            self.call.transfer_to = (self.tenant.operator_context, self.tenant.operator_extension)
        self.finished.set()

    async def _watchdog(self) -> None:
        """Belt and braces over the per-stage timeouts: a turn that made no progress
        for ``watchdog_seconds`` (THINKING, or SPEAKING with nothing left to play)
        is cancelled and replaced by the apology."""
        limit = self.agent._watchdog_seconds
        while True:
            await asyncio.sleep(min(1.0, limit / 4))
            stuck = (self.call.state in (CallState.THINKING, CallState.SPEAKING)
                     and self.audio.queued_frames == 0
                     and self.agent._clock() - self.progress_at > limit)
            if stuck and self.turn is not None and not self.turn.done():
                self.turn.cancel()
                self._failed(self.stage, f"watchdog: no progress for {limit:.0f} s")
                self.progress_at = self.agent._clock()
                self.turn = asyncio.create_task(self._apologise())


async def _pieces(text: str) -> AsyncIterator[str]:
    """A reply known in full, as the clauses it is spoken in."""
    for clause in split_for_speech(text):
        yield clause
