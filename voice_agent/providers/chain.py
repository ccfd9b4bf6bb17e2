"""Fallback chains for speech: try providers in order until one answers.

The rule is the LLM's (:class:`~voice_agent.providers.llm.FallbackChain`): the
next provider is tried only when the current one fails *before the caller has
heard anything of its result*. For STT that is any failure (a transcript is
all or nothing). For TTS it is a failure before the first audio chunk; a
failure after audio started is raised, because another voice finishing the
sentence would be worse than the short apology the conversation then speaks.
The embedded models, when installed, are the chain's last member.

A member that failed is skipped for ``cool_down`` seconds (not the last one,
which is always tried): a server that hangs would otherwise cost every reply
clause its full first-audio timeout before the fallback speaks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from typing import Any

from voice_agent.audio.frames import INTERNAL_RATE, Pcm16
from voice_agent.providers.errors import ProviderError, report_failure
from voice_agent.providers.stt import (
    SpeechToText,
    Transcript,
    TranscriptEvent,
    transcribe_stream,
)
from voice_agent.providers.tts import TextToSpeech

log = logging.getLogger(__name__)


#: Seconds a failed member is skipped before it is tried again.
COOL_DOWN = 10.0


class _Members:
    """What both chains share: which members to try now, and their lifecycle."""

    providers: list[Any]
    cool_down: float
    _down_until: dict[int, float]

    def _candidates(self) -> list[tuple[int, Any]]:
        """Members to try in order: those not cooling down, and always the last one."""
        now = time.monotonic()
        last = len(self.providers) - 1
        return [(i, p) for i, p in enumerate(self.providers)
                if i == last or self._down_until.get(i, 0.0) <= now]

    def _mark_down(self, index: int) -> None:
        self._down_until[index] = time.monotonic() + self.cool_down

    async def load(self) -> None:
        for provider in self.providers:
            if (load := getattr(provider, "load", None)) is not None:
                await load()

    async def aclose(self) -> None:
        for provider in self.providers:
            if (close := getattr(provider, "aclose", None)) is not None:
                await close()


class SttChain(_Members):
    """Speech-to-text providers in order; itself a :class:`SpeechToText`."""

    def __init__(self, providers: Sequence[SpeechToText], cool_down: float = COOL_DOWN) -> None:
        if not providers:
            raise ValueError("an SttChain needs at least one provider")
        self.providers = list(providers)
        self.name = " > ".join(p.name for p in self.providers)
        self.cool_down = cool_down
        self._down_until = {}

    async def transcribe(self, pcm16k: Pcm16) -> Transcript:
        candidates = self._candidates()
        for (index, provider), (_, after) in zip(candidates, [*candidates[1:], (-1, None)],
                                                 strict=True):
            try:
                return await provider.transcribe(pcm16k)
            except ProviderError as exc:
                if after is None:
                    raise
                self._mark_down(index)
                log.warning("STT %s failed, falling back to %s: %s", provider.name,
                            after.name, exc)
                report_failure("stt", provider.name, exc, handled_by=after.name)
        raise AssertionError("unreachable")

    def stream(self, frames: AsyncIterator[Pcm16]) -> AsyncIterator[TranscriptEvent]:
        return transcribe_stream(self.transcribe, frames, partial_interval=None)


class TtsChain(_Members):
    """Text-to-speech providers in order; itself a :class:`TextToSpeech`.

    ``name`` and ``voice`` are the primary's, so prompt-cache keys stay stable
    whichever member spoke (a cached prompt is only stored from a complete stream).
    """

    sample_rate = INTERNAL_RATE

    def __init__(self, providers: Sequence[TextToSpeech], cool_down: float = COOL_DOWN) -> None:
        if not providers:
            raise ValueError("a TtsChain needs at least one provider")
        self.providers = list(providers)
        self.name = " > ".join(p.name for p in self.providers)
        self.voice = self.providers[0].voice
        self.cool_down = cool_down
        self._down_until = {}

    async def stream(self, text: str) -> AsyncIterator[Pcm16]:
        candidates = self._candidates()
        for (index, provider), (_, after) in zip(candidates, [*candidates[1:], (-1, None)],
                                                 strict=True):
            yielded = False
            try:
                async with aclosing(provider.stream(text)) as chunks:
                    async for chunk in chunks:
                        yielded = True
                        yield chunk
                return
            except ProviderError as exc:
                if yielded or after is None:
                    raise
                self._mark_down(index)
                log.warning("TTS %s failed before any audio, falling back to %s: %s",
                            provider.name, after.name, exc)
                report_failure("tts", provider.name, exc, handled_by=after.name)
