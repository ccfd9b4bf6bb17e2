"""Fallback chains for speech: try providers in order until one answers.

The rule is the LLM's (:class:`~voice_agent.providers.llm.FallbackChain`): the
next provider is tried only when the current one fails *before the caller has
heard anything of its result*. For STT that is any failure (a transcript is
all or nothing). For TTS it is a failure before the first audio chunk; a
failure after audio started is raised, because another voice finishing the
sentence would be worse than the short apology the conversation then speaks.
The embedded models, when installed, are the chain's last member.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from typing import Any

from voice_agent.audio.frames import INTERNAL_RATE, Pcm16
from voice_agent.providers.errors import ProviderError
from voice_agent.providers.stt import (
    SpeechToText,
    Transcript,
    TranscriptEvent,
    transcribe_stream,
)
from voice_agent.providers.tts import TextToSpeech

log = logging.getLogger(__name__)


class _Members:
    """Lifecycle a chain passes on to its members: load at start, close at stop."""

    providers: list[Any]

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

    def __init__(self, providers: Sequence[SpeechToText]) -> None:
        if not providers:
            raise ValueError("an SttChain needs at least one provider")
        self.providers = list(providers)
        self.name = " > ".join(p.name for p in self.providers)

    async def transcribe(self, pcm16k: Pcm16) -> Transcript:
        for position, provider in enumerate(self.providers):
            try:
                return await provider.transcribe(pcm16k)
            except ProviderError as exc:
                if position == len(self.providers) - 1:
                    raise
                log.warning("STT %s failed, falling back to %s: %s", provider.name,
                            self.providers[position + 1].name, exc)
        raise AssertionError("unreachable")

    def stream(self, frames: AsyncIterator[Pcm16]) -> AsyncIterator[TranscriptEvent]:
        return transcribe_stream(self.transcribe, frames, partial_interval=None)


class TtsChain(_Members):
    """Text-to-speech providers in order; itself a :class:`TextToSpeech`.

    ``name`` and ``voice`` are the primary's, so prompt-cache keys stay stable
    whichever member spoke (a cached prompt is only stored from a complete stream).
    """

    sample_rate = INTERNAL_RATE

    def __init__(self, providers: Sequence[TextToSpeech]) -> None:
        if not providers:
            raise ValueError("a TtsChain needs at least one provider")
        self.providers = list(providers)
        self.name = " > ".join(p.name for p in self.providers)
        self.voice = self.providers[0].voice

    async def stream(self, text: str) -> AsyncIterator[Pcm16]:
        for position, provider in enumerate(self.providers):
            yielded = False
            try:
                async with aclosing(provider.stream(text)) as chunks:
                    async for chunk in chunks:
                        yielded = True
                        yield chunk
                return
            except ProviderError as exc:
                if yielded or position == len(self.providers) - 1:
                    raise
                log.warning("TTS %s failed before any audio, falling back to %s: %s",
                            provider.name, self.providers[position + 1].name, exc)
