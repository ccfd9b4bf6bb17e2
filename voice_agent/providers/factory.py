"""Every model client of the process, built once from settings and tenant overrides.

The ARI agent and the AGI fallback both get their STT, TTS and LLM here, so a
URL in the environment or a tenant file means the same thing on both paths:

* a stage with no URL uses the embedded model (Whisper, Piper; no LLM: the
  rule engine answers);
* a stage with a URL uses that server: ``http(s)://…/v1`` is OpenAI-compatible,
  ``tcp://host:port`` is Wyoming (STT and TTS). With ``embedded_fallback`` the
  embedded model stays behind it in a chain, so a server that fails before the
  caller heard anything hands the turn over instead of leaving silence;
* a tenant's ``providers:`` block replaces a stage for that tenant only.

Clients are shared: one embedded Whisper and Piper per process, one HTTP pool
per distinct server, however many tenants point at it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from voice_agent.config import Settings, check_provider_url
from voice_agent.providers.chain import SttChain, TtsChain
from voice_agent.providers.llm import LanguageModel, OpenAiChat
from voice_agent.providers.stt import OpenAiStt, SpeechToText
from voice_agent.providers.tts import OpenAiTts, TextToSpeech
from voice_agent.providers.wyoming import WyomingStt, WyomingTts
from voice_agent.tenants import ProviderOverride, Tenant

log = logging.getLogger(__name__)


class Remote(Protocol):
    """A server-backed client: it can be probed at start and must be closed."""

    name: str

    async def probe(self) -> Any: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class StageSpec:
    """How one stage is served: a server URL (None: embedded) and its options."""

    url: str | None
    model: str = ""
    voice: str = ""
    api_key: str | None = field(default=None, repr=False)


@dataclass
class ProviderSet:
    """What one tenant's calls use: STT, TTS and, when configured, a server LLM."""

    stt: SpeechToText
    tts: TextToSpeech
    llm: LanguageModel | None = None


def embedded_installed() -> bool:
    """The embedded speech models' runtimes are importable (a slim install may lack them)."""
    return all(importlib.util.find_spec(name) is not None
               for name in ("faster_whisper", "piper"))


class Providers:
    """Builds and owns the provider sets: the service default and each tenant's."""

    def __init__(self, settings: Settings, tenants: Iterable[Tenant]) -> None:
        self._settings = settings
        self._embedded_ok = settings.embedded_fallback and embedded_installed()
        self._embedded_stt: SpeechToText | None = None
        self._embedded_tts: TextToSpeech | None = None
        self._clients: dict[tuple[str, StageSpec], Remote] = {}
        self._stages: dict[tuple[str, StageSpec], Any] = {}
        def secret(value: Any) -> str | None:
            return value.get_secret_value() if value else None

        #: The service-wide stages, which a tenant's unset stages share.
        self._specs = {
            "stt": StageSpec(settings.stt_url, settings.stt_model, "",
                             secret(settings.stt_api_key)),
            "tts": StageSpec(settings.tts_url, settings.tts_model, settings.tts_voice,
                             secret(settings.tts_api_key)),
            "llm": StageSpec(settings.llm_url, settings.llm_model, "",
                             secret(settings.llm_api_key)),
        }
        self.default = self._build(**self._specs)
        self._by_tenant = {t.name: self._for(t) for t in tenants}

    def for_tenant(self, name: str) -> ProviderSet:
        """The set a tenant's calls use (the default unless its file overrides a stage)."""
        return self._by_tenant.get(name, self.default)

    @property
    def overrides(self) -> dict[str, ProviderSet]:
        """The tenants whose files override a stage, with their sets."""
        return {name: pset for name, pset in self._by_tenant.items() if pset is not self.default}

    @property
    def remotes(self) -> list[Remote]:
        """Every distinct server client, for probing and closing."""
        return list(self._clients.values())

    async def probe(self) -> list[str]:
        """Ask every server whether it answers; one clear log line per server that does not.

        Returns the problems (empty when all answered). A server down at start is
        not fatal: its chain's next member (the embedded model) serves meanwhile.
        """
        remotes = self.remotes
        results = await asyncio.gather(*(r.probe() for r in remotes), return_exceptions=True)
        problems = []
        for remote, result in zip(remotes, results, strict=True):
            if isinstance(result, BaseException):
                problems.append(f"{remote.name}: {result}")
                log.error("model server %s does not answer at start (%s); calls use the "
                          "next provider until it does", remote.name, result)
            else:
                log.info("model server %s answers", remote.name)
        return problems

    # ------------------------------------------------------------- building
    def _for(self, tenant: Tenant) -> ProviderSet:
        overrides = tenant.providers
        if overrides.stt is None and overrides.tts is None and overrides.llm is None \
                and not tenant.voice:
            return self.default
        def spec(stage: str, override: ProviderOverride | None) -> StageSpec:
            if override is None:
                return self._specs[stage]
            try:
                check_provider_url(f"tenant {tenant.name}: providers.{stage}.url", override.url,
                                   tcp_ok=stage != "llm")
                key = override.api_key()
            except ValueError as exc:
                raise ValueError(f"tenant {tenant.name}: {exc}") from None
            return StageSpec(override.url.rstrip("/"), override.model, override.voice, key)

        tts = spec("tts", overrides.tts)
        if tenant.voice and tts.url and not tts.voice:  # the tenant's voice on a TTS server
            tts = dataclasses.replace(tts, voice=tenant.voice)
        return self._build(spec("stt", overrides.stt), tts, spec("llm", overrides.llm))

    def _build(self, stt: StageSpec, tts: StageSpec, llm: StageSpec) -> ProviderSet:
        model = self._client("llm", llm) if llm.url else None
        return ProviderSet(self._stage("stt", stt), self._stage("tts", tts),
                           model)  # type: ignore[arg-type]

    def _stage(self, stage: str, spec: StageSpec) -> Any:
        """The provider (or chain) serving ``stage`` as ``spec`` says; built once per spec."""
        key = (f"{stage}-chain", spec)
        if key not in self._stages:
            embedded = self._whisper if stage == "stt" else self._piper
            members: list[Any] = [self._client(stage, spec)] if spec.url else []
            if not spec.url or self._embedded_ok:
                members.append(embedded())
            chain = SttChain if stage == "stt" else TtsChain
            self._stages[key] = members[0] if len(members) == 1 else chain(members)
        return self._stages[key]

    def _client(self, stage: str, spec: StageSpec) -> Remote:
        """One client per distinct (stage, server, options): tenants share pools."""
        key = (stage, spec)
        if key not in self._clients:
            self._clients[key] = self._new_client(stage, spec)
        return self._clients[key]

    def _new_client(self, stage: str, spec: StageSpec) -> Remote:
        s = self._settings
        assert spec.url is not None
        wyoming = spec.url.startswith("tcp://")
        if stage == "stt":
            if wyoming:
                return WyomingStt(spec.url, model=spec.model or None,
                                  connect_timeout=s.provider_connect_timeout,
                                  first_result_timeout=s.stt_timeout)
            return OpenAiStt(spec.url, spec.model or "whisper-1", api_key=spec.api_key,
                             timeout=s.stt_timeout, connect_timeout=s.provider_connect_timeout)
        if stage == "tts":
            if wyoming:
                return WyomingTts(spec.url, voice=spec.voice or None,
                                  connect_timeout=s.provider_connect_timeout,
                                  first_result_timeout=s.tts_first_audio_timeout,
                                  idle_timeout=s.tts_first_audio_timeout)
            return OpenAiTts(spec.url, spec.model or "tts-1", spec.voice or "alloy",
                             api_key=spec.api_key, response_format=s.tts_format,
                             server_sample_rate=s.tts_sample_rate,
                             timeout=s.tts_first_audio_timeout,
                             connect_timeout=s.provider_connect_timeout)
        return OpenAiChat(spec.url, spec.model, api_key=spec.api_key,
                          connect_timeout=s.provider_connect_timeout,
                          first_token_timeout=s.llm_first_token_timeout, max_retries=0,
                          max_tokens=s.llm_max_tokens)

    def _whisper(self) -> SpeechToText:
        if self._embedded_stt is None:
            from voice_agent.providers.stt import WhisperStt

            self._embedded_stt = WhisperStt()
        return self._embedded_stt

    def _piper(self) -> TextToSpeech:
        if self._embedded_tts is None:
            from voice_agent.providers.tts import PiperTts

            self._embedded_tts = PiperTts()
        return self._embedded_tts

