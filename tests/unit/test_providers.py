"""Providers chosen by configuration: settings, tenant overrides, the factory, the
fallback chains and the Wyoming clients (against a scripted Wyoming server)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError
from wyoming.asr import Transcript as WyomingTranscript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error as WyomingError
from wyoming.event import Event
from wyoming.info import Info

from tests.fakes import silent_tcp_server
from tests.helpers import closed_port_url, sine
from voice_agent.config import Settings
from voice_agent.conversation.agent import ConversationAgent
from voice_agent.dev.sim.signals import dominant_frequency
from voice_agent.providers import wyoming as wyoming_module
from voice_agent.providers.chain import SttChain, TtsChain
from voice_agent.providers.errors import (
    ProviderConnectionError,
    ProviderError,
    ProviderResponseError,
    ProviderStreamError,
    ProviderTimeoutError,
)
from voice_agent.providers.factory import Providers, StageSpec
from voice_agent.providers.llm import OpenAiChat
from voice_agent.providers.stt import OpenAiStt, Transcript
from voice_agent.providers.tts import OpenAiTts
from voice_agent.providers.wyoming import WyomingStt, WyomingTts, parse_tcp_url
from voice_agent.tenants import Tenant, TenantRegistry

# ------------------------------------------------------------------ settings


@pytest.mark.parametrize("field", ["stt_url", "tts_url", "llm_url"])
def test_a_bad_server_url_names_the_setting(field: str) -> None:
    with pytest.raises(ValidationError, match=f"VOICE_AGENT_{field.upper()} must look like"):
        Settings(**{field: "ftp://models.example"})


def test_wyoming_urls_need_a_port_and_are_not_for_the_llm() -> None:
    with pytest.raises(ValidationError, match="needs a port"):
        Settings(stt_url="tcp://stt.example")
    with pytest.raises(ValidationError, match="VOICE_AGENT_LLM_URL"):
        Settings(llm_url="tcp://llm.example:10300")
    assert Settings(tts_url="tcp://tts.example:10200/").tts_url == "tcp://tts.example:10200"


def test_parse_tcp_url() -> None:
    assert parse_tcp_url("tcp://10.0.0.5:10300") == ("10.0.0.5", 10300)
    with pytest.raises(ValueError, match="tcp://host:port"):
        parse_tcp_url("http://10.0.0.5:10300")


# ------------------------------------------------------------------ factory


def tenants_with(**overrides: Any) -> TenantRegistry:
    """The shipped tenants, with ``providers`` replaced for the named ones."""
    shipped = TenantRegistry.load()
    return TenantRegistry(
        Tenant.model_validate({**t.model_dump(), "providers": overrides.get(t.name, {})})
        for t in shipped)


def test_no_urls_means_the_embedded_models_and_no_llm() -> None:
    providers = Providers(Settings(), TenantRegistry.load())
    assert providers.default.stt.name == "whisper"
    assert providers.default.tts.name == "piper"
    assert providers.default.llm is None and providers.remotes == []
    assert providers.for_tenant("healthplus") is providers.default


def test_urls_pick_the_protocol_and_keep_the_embedded_model_behind() -> None:
    providers = Providers(Settings(stt_url="tcp://127.0.0.1:10300",
                                   tts_url="http://127.0.0.1:8000/v1", tts_voice="nova",
                                   llm_url="http://127.0.0.1:8091/v1", llm_model="m"),
                          TenantRegistry.load())
    stt, tts = providers.default.stt, providers.default.tts
    assert isinstance(stt, SttChain) and isinstance(tts, TtsChain)
    assert isinstance(stt.providers[0], WyomingStt) and stt.providers[1].name == "whisper"
    assert isinstance(tts.providers[0], OpenAiTts) and tts.providers[0].voice == "nova"
    assert isinstance(providers.default.llm, OpenAiChat)
    assert providers.default.llm.max_tokens == 120  # a phone reply is short
    assert len(providers.remotes) == 3


def test_a_tenants_voice_goes_to_the_tts_server_for_its_calls_only() -> None:
    shipped = TenantRegistry.load()
    tenants = TenantRegistry(
        Tenant.model_validate({**t.model_dump(), "voice": "shimmer" if t.name == "edulearn"
                               else ""}) for t in shipped)
    served = Providers(Settings(tts_url="http://127.0.0.1:8000/v1"), tenants)
    voiced = served.for_tenant("edulearn").tts
    assert isinstance(voiced, TtsChain) and voiced.providers[0].voice == "shimmer"
    assert served.for_tenant("healthplus") is served.default
    embedded = Providers(Settings(), tenants)  # Piper has one voice: nothing to change
    assert embedded.for_tenant("edulearn").tts is embedded.default.tts


def test_without_embedded_fallback_the_server_stands_alone() -> None:
    providers = Providers(Settings(stt_url="http://127.0.0.1:8000/v1", embedded_fallback=False),
                          TenantRegistry.load())
    assert isinstance(providers.default.stt, OpenAiStt)
    assert providers.default.tts.name == "piper"  # no URL: embedded regardless


def test_timeouts_come_from_settings() -> None:
    providers = Providers(Settings(stt_url="tcp://h:1", tts_url="tcp://h:2",
                                   provider_connect_timeout=0.7, stt_timeout=1.5,
                                   tts_first_audio_timeout=0.9, embedded_fallback=False),
                          TenantRegistry.load())
    stt, tts = providers.default.stt, providers.default.tts
    assert isinstance(stt, WyomingStt) and isinstance(tts, WyomingTts)
    assert (stt.connect_timeout, stt.first_result_timeout) == (0.7, 1.5)
    assert (tts.connect_timeout, tts.first_result_timeout, tts.idle_timeout) == (0.7, 0.9, 0.9)


def test_a_tenant_overriding_one_stage_shares_the_others_with_their_keys() -> None:
    providers = Providers(Settings(tts_url="http://tts:8000/v1", tts_api_key="k1"),
                          tenants_with(techstore={"llm": {"url": "http://llm:8000/v1"}}))
    assert providers.for_tenant("techstore").tts is providers.default.tts
    assert len(providers.remotes) == 2  # the shared TTS client (with its key) and the LLM
    assert "k1" not in repr(StageSpec("http://tts:8000/v1", api_key="k1"))  # never logged


def test_a_tenant_override_replaces_one_stage_and_shares_clients(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLINIC_STT_KEY", "s3cret")
    url = {"url": "http://clinic-stt:9000/v1", "model": "large", "api_key_env": "CLINIC_STT_KEY"}
    providers = Providers(Settings(tts_url="tcp://shared-tts:10200"),
                          tenants_with(healthplus={"stt": url}, edulearn={"stt": url}))
    clinic = providers.for_tenant("healthplus")
    assert clinic is not providers.default
    assert isinstance(clinic.stt, SttChain) and isinstance(clinic.stt.providers[0], OpenAiStt)
    assert clinic.stt.providers[0].model == "large"
    assert clinic.tts is providers.default.tts  # not overridden: the service's
    assert providers.for_tenant("edulearn").stt.providers[0] is clinic.stt.providers[0]
    assert providers.for_tenant("techstore") is providers.default
    assert set(providers.overrides) == {"healthplus", "edulearn"}
    assert len(providers.remotes) == 2  # one shared TTS client, one shared clinic STT client


def test_a_tenant_override_with_a_bad_url_or_missing_key_names_the_tenant(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="tenant edulearn: providers.tts.url must look like"):
        Providers(Settings(), tenants_with(edulearn={"tts": {"url": "tts-host:10200"}}))
    monkeypatch.delenv("NO_SUCH_KEY", raising=False)
    with pytest.raises(ValueError, match="tenant techstore: .*NO_SUCH_KEY is not set"):
        Providers(Settings(), tenants_with(
            techstore={"llm": {"url": "http://llm:8000/v1", "api_key_env": "NO_SUCH_KEY"}}))


def test_tenant_files_reject_unknown_provider_keys() -> None:
    with pytest.raises(ValidationError):
        tenants_with(techstore={"stt": {"url": "tcp://h:1", "password": "x"}})


async def test_probe_reports_each_server_that_does_not_answer(
        caplog: pytest.LogCaptureFixture) -> None:
    dead = closed_port_url()
    providers = Providers(Settings(stt_url=dead, llm_url=dead, embedded_fallback=False,
                                   provider_connect_timeout=0.5), TenantRegistry.load())
    problems = await providers.probe()
    for remote in providers.remotes:
        await remote.aclose()
    assert len(problems) == 2
    assert all(dead.removesuffix("/v1") in line for line in problems)
    assert sum("does not answer at start" in r.message for r in caplog.records) == 2


async def test_probe_accepts_a_server_without_a_models_route(http_server: Any) -> None:
    http_server.status = 404  # e.g. a speech server with no /models
    stt = OpenAiStt(http_server.base_url)
    await stt.probe()
    for status in (503, 401):  # down, or refusing our key
        http_server.status = status
        with pytest.raises(ProviderError, match=f"HTTP {status}"):
            await stt.probe()
    await stt.aclose()


# ------------------------------------------------------------------ chains


class FailingStt:
    def __init__(self, name: str, exc: Exception | None = None, text: str = "") -> None:
        self.name, self.exc, self.text, self.calls = name, exc, text, 0

    async def transcribe(self, pcm16k: np.ndarray) -> Transcript:
        self.calls += 1
        if self.exc is not None:
            raise self.exc
        return Transcript(self.text, "en", len(pcm16k) / 16000, 0.0)


class ChunkTts:
    """Yields ``good`` chunks, then raises ``exc`` (if any)."""

    sample_rate = 16000

    def __init__(self, name: str, good: int, exc: Exception | None = None) -> None:
        self.name, self.voice, self.good, self.exc = name, f"{name}-voice", good, exc

    async def stream(self, text: str) -> AsyncIterator[np.ndarray]:
        for _ in range(self.good):
            yield np.full(160, 1000, np.int16)
        if self.exc is not None:
            raise self.exc


async def test_stt_chain_falls_back_on_any_failure() -> None:
    first = FailingStt("server", ProviderTimeoutError("slow"))
    second = FailingStt("embedded", text="hello")
    chain = SttChain([first, second])
    assert (await chain.transcribe(np.zeros(1600, np.int16))).text == "hello"
    assert (first.calls, second.calls) == (1, 1)
    assert chain.name == "server > embedded"


async def test_stt_chain_raises_the_last_error_when_all_fail() -> None:
    chain = SttChain([FailingStt("a", ProviderConnectionError("down")),
                      FailingStt("b", ProviderResponseError("garbage"))])
    with pytest.raises(ProviderResponseError, match="garbage"):
        await chain.transcribe(np.zeros(160, np.int16))


async def test_tts_chain_falls_back_only_before_the_first_audio() -> None:
    chain = TtsChain([ChunkTts("server", 0, ProviderConnectionError("down")),
                      ChunkTts("embedded", 3)])
    assert len([c async for c in chain.stream("hi")]) == 3
    assert chain.voice == "server-voice"  # cache keys stay the primary's

    midway = TtsChain([ChunkTts("server", 2, ProviderStreamError("reset")),
                       ChunkTts("embedded", 3)])
    heard = []
    with pytest.raises(ProviderStreamError):
        async for chunk in midway.stream("hi"):
            heard.append(chunk)
    assert len(heard) == 2  # never a second voice finishing the sentence


def test_chains_need_members() -> None:
    with pytest.raises(ValueError):
        SttChain([])
    with pytest.raises(ValueError):
        TtsChain([])


# ------------------------------------------------------------------ Wyoming


def transcript_after_audio(text: str) -> Callable[[Event], list[Event] | None]:
    return lambda ev: [WyomingTranscript(text=text).event()] if AudioStop.is_type(ev.type) else None


async def test_wyoming_stt_transcribes(wyoming: Callable[..., Any]) -> None:
    url = await wyoming(transcript_after_audio(" where is my order "))
    stt = WyomingStt(url)
    result = await stt.transcribe(sine(16000, 300, 0.5))
    assert result.text == "where is my order" and result.duration == 0.5
    assert isinstance(await stt.probe(), Info)


async def test_wyoming_tts_resamples_to_16k(wyoming: Callable[..., Any]) -> None:
    audio = sine(22050, 440, 0.5).tobytes()
    form = {"rate": 22050, "width": 2, "channels": 1}
    url = await wyoming(lambda ev: [AudioStart(**form).event(),
                                    AudioChunk(audio=audio[:10001], **form).event(),
                                    AudioChunk(audio=audio[10001:], **form).event(),
                                    AudioStop().event()])
    out = np.concatenate([c async for c in WyomingTts(url).stream("Hello there.")])
    assert 8000 <= len(out) <= 8000 + 40  # 0.5 s at 16 kHz, plus the filter's tail
    assert dominant_frequency(out[400:7600], 16000) == pytest.approx(440, abs=5)  # the odd
    # byte between the two chunks was carried over, not dropped (that would scramble it)


async def test_wyoming_errors_are_provider_errors(wyoming: Callable[..., Any]) -> None:
    refused = closed_port_url().replace("http://", "tcp://").removesuffix("/v1")
    with pytest.raises(ProviderConnectionError, match="cannot reach STT server"):
        await WyomingStt(refused).transcribe(np.zeros(160, np.int16))

    silent = await wyoming(lambda ev: None)
    with pytest.raises(ProviderTimeoutError, match="no transcript within 0.2 s"):
        await WyomingStt(silent, first_result_timeout=0.2).transcribe(np.zeros(160, np.int16))

    hangs_up = await wyoming(lambda ev: [] if AudioStop.is_type(ev.type) else None)
    with pytest.raises(ProviderStreamError, match="closed the connection"):
        await WyomingStt(hangs_up).transcribe(np.zeros(160, np.int16))

    refuses = await wyoming(lambda ev: [WyomingError(text="model not loaded").event()])
    with pytest.raises(ProviderResponseError, match="model not loaded"):
        _ = [c async for c in WyomingTts(refuses).stream("Hi.")]

    stereo = await wyoming(lambda ev: [AudioStart(rate=16000, width=2, channels=2).event()])
    with pytest.raises(ProviderResponseError, match="need 16-bit mono"):
        _ = [c async for c in WyomingTts(stereo).stream("Hi.")]


async def test_the_probe_of_a_silent_server_is_bounded_apart_from_the_transcript_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A long STT deadline must not hold the service's start on a server that never answers."""
    monkeypatch.setattr(wyoming_module, "PROBE_TIMEOUT", 0.2)
    url, server = await silent_tcp_server()
    try:
        with pytest.raises(ProviderTimeoutError, match="no info within 0.2 s"):
            await WyomingStt(url, first_result_timeout=60.0).probe()
    finally:
        server.close()


async def test_a_failed_member_is_skipped_while_it_cools_down() -> None:
    first = FailingStt("server", ProviderTimeoutError("hung"))
    second = FailingStt("embedded", text="hello")
    chain = SttChain([first, second], cool_down=60)
    for _ in range(3):
        await chain.transcribe(np.zeros(160, np.int16))
    assert (first.calls, second.calls) == (1, 3)  # one timeout, not three
    chain.cool_down = 0
    chain._mark_down(0)
    await chain.transcribe(np.zeros(160, np.int16))
    assert first.calls == 2  # retried once its cool-down is over


async def test_the_last_member_is_tried_even_when_it_failed_recently() -> None:
    only = FailingStt("server", ProviderConnectionError("down"))
    chain = SttChain([FailingStt("a", ProviderConnectionError("down")), only], cool_down=60)
    for _ in range(2):
        with pytest.raises(ProviderConnectionError):
            await chain.transcribe(np.zeros(160, np.int16))
    assert only.calls == 2


async def test_the_agent_closes_every_server_client_at_shutdown(db: Any) -> None:
    closed: list[str] = []

    class Client(FailingStt):
        async def aclose(self) -> None:
            closed.append(self.name)

    chain = SttChain([Client("stt-server"), FailingStt("embedded")])
    tts = TtsChain([ChunkTts("tts", 1)])
    llm = Client("llm-server")
    agent = ConversationAgent(TenantRegistry.load(), db, chain, tts,  # type: ignore[arg-type]
                              llm=llm)  # type: ignore[arg-type]
    await agent.aclose()
    assert sorted(closed) == ["llm-server", "stt-server"]
