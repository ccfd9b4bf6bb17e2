"""The sequential conversation loop of the AGI fallback.

Greeting, then turn after turn: record the caller until a silence, transcribe,
ask the dialog engine, synthesise the whole reply into a file, play it. It uses
the same speech models, dialog engine (conversation history in
:class:`DialogState`, tenant tools over the tenant database) and call record as
the ARI conversation agent, so the two paths answer alike and their per-turn
timestamps can be compared. What it cannot do is listen while it speaks: the
caller waits for the silence timeout and for the whole reply to be made.

Keys behave as on the ARI path: ``#`` and ``0`` stop the prompt or the
recording (they are the AGI escape digits) and go to the dialog engine as a
turn of their own — ``#`` repeats the last reply, ``0`` says so and hands the
caller to the tenant's operator extension.

Turn timestamps (``time.monotonic()``, like the ARI path):

``speech_end``
    Estimated: Asterisk ends the recording after ``silence_seconds`` of
    silence, so the caller stopped that long before ``record_end``.
``record_end`` / ``stt_final`` / ``reply_ready``
    Recording returned, transcript ready, reply text ready.
``first_audio``
    The reply file is written and ``STREAM FILE`` sent: Asterisk starts
    playing it right away. ``played``: playback ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from voice_agent.agi.audio_files import (
    ASTERISK_WAV_RATE,
    AudioDirectoryFull,
    CallFiles,
    has_speech,
    read_recording,
    write_reply,
)
from voice_agent.agi.channel import AgiChannel
from voice_agent.agi.protocol import ESCAPE_DIGITS
from voice_agent.calls.record import CallRecord, CallState
from voice_agent.dialog.engine import DialogEngine
from voice_agent.dialog.llm_dialog import APOLOGY
from voice_agent.dialog.state import DialogState
from voice_agent.providers.errors import ProviderError, call_failures, report_failure
from voice_agent.providers.stt import SpeechToText
from voice_agent.providers.tts import PromptCache, TextToSpeech
from voice_agent.tenants import Tenant
from voice_agent.tenants.data import TenantDatabases

log = logging.getLogger(__name__)


@dataclass
class SpeechServices:
    """What every AGI call shares: models and data loaded once per process."""

    db: TenantDatabases
    stt: SpeechToText
    tts: TextToSpeech
    prompts: PromptCache = field(default_factory=PromptCache)
    #: Tenants whose files name their own speech servers: (stt, tts).
    per_tenant: dict[str, tuple[SpeechToText, TextToSpeech]] = field(default_factory=dict)

    def speech_for(self, tenant: str) -> tuple[SpeechToText, TextToSpeech]:
        return self.per_tenant.get(tenant, (self.stt, self.tts))

    def _models(self) -> list[object]:
        models = {id(m): m for pair in [(self.stt, self.tts), *self.per_tenant.values()]
                  for m in pair}
        return list(models.values())

    async def warm_up(self) -> None:
        """Load the models at start, so the first caller does not wait for them, and
        have the apology ready in every voice (what a caller hears when providers fail)."""
        for model in self._models():
            if (load := getattr(model, "load", None)) is not None:
                await load()
        voices = {id(tts): tts for tts in [self.tts, *(t for _, t in self.per_tenant.values())]}
        for tts in voices.values():
            try:
                await self.prompts.get(tts, APOLOGY)
            except ProviderError as exc:
                log.error("cannot pre-synthesize the apology with %s: %s", tts.name, exc)

    async def aclose(self) -> None:
        """Close every server client (the server calls this at shutdown)."""
        for model in self._models():
            if (close := getattr(model, "aclose", None)) is not None:
                await close()


@dataclass(frozen=True)
class TurnLimits:
    """How a caller's turn is cut: ``RECORD FILE``'s silence and length limits."""

    silence_seconds: int = 2
    max_record_seconds: float = 20.0


#: Recordings without speech (each ends after the silence limit) before asking again.
SILENT_LISTENS = 4


class AgiConversation:
    """One call's sequential loop; returns when the agent ends the call or hands it over.

    A hang-up surfaces as :class:`~voice_agent.agi.protocol.AgiHangup`
    from the channel, or as cancellation when it happens between commands.
    """

    def __init__(self, services: SpeechServices, tenant: Tenant, channel: AgiChannel,
                 record: CallRecord, files: CallFiles, limits: TurnLimits,
                 on_state: Callable[[CallState], None] = lambda state: None) -> None:
        self.services = services
        self.tenant = tenant
        self.channel = channel
        self.record = record
        self.files = files
        self.limits = limits
        self._on_state = on_state
        self.engine = DialogEngine(tenant, services.db)
        self.stt, self.tts = services.speech_for(tenant.name)
        #: The stage of the turn ("stt", "tts"): what a provider failure is blamed on.
        self.stage = "tts"
        self.state = DialogState(caller_id=record.caller or "anonymous")
        #: (context, extension) once the caller was handed to a person.
        self.transferred_to: tuple[str, str] | None = None
        #: Recordings in a row without speech.
        self.silent_listens = 0

    async def run(self) -> None:
        call_failures.set(self.record.errors)  # providers report into this call's record
        try:
            await self._converse()
        except AudioDirectoryFull as exc:
            await self._cannot_record(exc)

    async def _cannot_record(self, full: AudioDirectoryFull) -> None:
        """No room for the next turn: say sorry with Asterisk's own sounds (they need no
        space) and hand the caller to a person, or say "try later" where there is none."""
        report_failure("audio", "agi audio directory", str(full), handled_by="operator"
                       if self.tenant.operator_extension else "hang-up")
        log.error("agi call %s: %s; the caller hears an apology and %s", self.record.session_id,
                  full, "goes to the operator" if self.tenant.operator_extension
                  else "is hung up")
        await self.channel.stream_file("im-sorry")
        if self.tenant.operator_extension:
            await self._transfer(self.tenant.operator_context, self.tenant.operator_extension)
            self.record.end_reason = f"audio directory full; {self.record.end_reason}"
        else:
            await self.channel.stream_file("please-try-call-later")
            self.record.end_reason = "audio directory full"

    async def _converse(self) -> None:
        self._on_state(CallState.GREETING)
        greeting = self.engine.greet(self.state)
        key = await self._say(greeting.text, {}, cached=True)
        self._on_state(CallState.LISTENING)
        while True:
            try:
                key, finished = await self._turn(key)
            except ProviderError as exc:
                # Every provider of the chain failed: say so and listen again (the
                # apology was synthesized at start), rather than drop the caller.
                provider = self.stt.name if self.stage == "stt" else self.tts.name
                report_failure(self.stage, provider, exc, handled_by="apology")
                log.error("agi call %s: %s provider %s failed: %s; apologising",
                          self.record.session_id, self.stage, provider, exc)
                key = await self._say(APOLOGY, {}, cached=True)
                finished = False
            if finished:
                return

    async def _turn(self, key: str | None) -> tuple[str | None, bool]:
        """One caller turn and the reply: (a key pressed meanwhile, whether the call is done)."""
        if key is not None:
            turn: dict[str, Any] = {"dtmf": key}
            said = key
        else:
            turn, said, key = await self._listen()
            if key is None and not said and "heard" not in turn:
                return await self._silent()
            if key is not None or not said:
                return key, False
            self.silent_listens = 0
        self.record.turns.append(turn)
        reply = await asyncio.to_thread(self.engine.reply, self.state, said)
        turn["reply_ready"] = time.monotonic()
        turn["reply"] = reply.text
        turn["intent"] = reply.intent
        key = await self._say(reply.text, turn, cached=False)
        if reply.transfer and self.tenant.operator_extension:
            await self._transfer(self.tenant.operator_context, self.tenant.operator_extension)
            return None, True
        if reply.done:
            self.record.end_reason = "agent ended the call"
            return None, True
        return key, False

    async def _silent(self) -> tuple[str | None, bool]:
        """A recording with no speech: after ``SILENT_LISTENS`` in a row ask again
        (the engine says goodbye once it asked enough)."""
        self.silent_listens += 1
        if self.silent_listens < SILENT_LISTENS:
            return None, False
        self.silent_listens = 0
        reply = self.engine.silence(self.state)
        turn: dict[str, Any] = {"silence": True, "reply": reply.text, "intent": reply.intent}
        self.record.turns.append(turn)
        key = await self._say(reply.text, turn, cached=True)
        if reply.done:
            self.record.end_reason = "caller silent"
            return None, True
        return key, False

    async def _listen(self) -> tuple[dict[str, Any], str, str | None]:
        """Record one caller turn and transcribe it: (turn, transcript, key pressed)."""
        target = self.files.new("rec")
        recorded = await self.channel.record_file(
            target.asterisk_name, ESCAPE_DIGITS, int(self.limits.max_record_seconds * 1000),
            self.limits.silence_seconds)
        ended = time.monotonic()
        try:
            if recorded.digit is not None:
                return {}, "", recorded.digit
            pcm = await asyncio.to_thread(read_recording, target.host_path)
        finally:
            await asyncio.to_thread(target.host_path.unlink, missing_ok=True)
        hit_limit = recorded.samples >= (self.limits.max_record_seconds - 0.5) * ASTERISK_WAV_RATE
        turn: dict[str, Any] = {
            "speech_end": ended if hit_limit else ended - self.limits.silence_seconds,
            "record_end": ended,
        }
        if not has_speech(pcm):
            return turn, "", None
        self.stage = "stt"
        transcript = await self.stt.transcribe(pcm)
        turn["stt_final"] = time.monotonic()
        turn["heard"] = transcript.text
        return turn, transcript.text.strip(), None

    async def _say(self, text: str, turn: dict[str, Any], *, cached: bool) -> str | None:
        """Synthesise ``text`` into a file and play it; returns the key that stopped it."""
        tts, prompts = self.tts, self.services.prompts
        self.stage = "tts"
        chunks = prompts.stream(tts, text) if cached else tts.stream(text)
        async with contextlib.aclosing(chunks) as stream:
            pcm = [chunk async for chunk in stream]
        target = self.files.new("say")
        audio = np.concatenate(pcm) if pcm else np.zeros(0, np.int16)
        try:
            await asyncio.to_thread(write_reply, target.host_path, audio)
            turn.setdefault("first_audio", time.monotonic())
            key = await self.channel.stream_file(target.asterisk_name, ESCAPE_DIGITS)
            turn["played"] = time.monotonic()
        finally:
            await asyncio.to_thread(target.host_path.unlink, missing_ok=True)
        return key

    async def _transfer(self, context: str, extension: str) -> None:
        """Point the channel at the operator; it goes there when the AGI connection closes."""
        await self.channel.goto(context, extension)
        self.transferred_to = (context, extension)
        self.record.end_reason = f"transferred to {extension}@{context}"
