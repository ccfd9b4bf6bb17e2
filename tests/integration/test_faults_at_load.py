"""A model server failing for one tenant while 10 conversations run at once.

The scale issue's failure rules (a server that hangs or errors: a timeout or
the error, the apology, never a stuck call) are tested on single calls in
``test_model_servers.py``. Here they run under load: healthplus's TTS server
misbehaves (its own server, from the tenant's ``providers:``), while techstore
and edulearn callers talk to working servers at the same time. With no voice
left at all, healthplus's callers hear Asterisk's own apology and go to the
operator. The working
servers are the load benchmark's FAKE OpenAI-compatible servers (fixed
latencies, a tone for speech): a load test may use fakes when it says so, and
real models for 10 calls would not fit on these 2 cores. The other calls must
be unaffected: every turn answered, no error in their records.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.integration.conftest import AgentFactory, assert_nothing_left
from voice_agent import service
from voice_agent.ari.asterisk_ari import AriClient
from voice_agent.ari.call_session import SORRY_PROMPT
from voice_agent.config import Settings
from voice_agent.dev.bench import fake_models
from voice_agent.dev.bench.load import (
    CallerFigures,
    LoadAudio,
    Utterance,
    converse,
    fake_model_server,
)
from voice_agent.dev.model_servers import free_tcp_port
from voice_agent.dev.sim.phone import SimPhone
from voice_agent.tenants import ProviderOverride, TenantProviders, TenantRegistry

HEALTHY = ["18005551234", "18005559999"] * 3 + ["18005551234"]  # 7 callers
BROKEN = ["18005555678"] * 3  # healthplus, whose TTS server fails


@contextlib.asynccontextmanager
async def failing_tts_server(fault: str) -> AsyncIterator[str]:
    """An OpenAI-compatible TTS URL that hangs (accepts, never answers) or answers 500."""
    async def speech(request: web.Request) -> web.StreamResponse:
        await request.read()
        if fault == "hang":
            await asyncio.Event().wait()
        return web.Response(status=500, text="internal error")

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"data": [{"id": "broken"}]})

    app = web.Application()
    app.router.add_post("/v1/audio/speech", speech)
    app.router.add_get("/v1/models", models)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    port = free_tcp_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("fault", ["hang", "error"])
async def test_one_tenants_failing_tts_leaves_the_other_calls_unaffected(
    fault: str, start_agent: AgentFactory, settings: Settings, inspector: AriClient,
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    port = free_tcp_port()
    base = f"http://127.0.0.1:{port}/v1"
    async with fake_model_server(port), failing_tts_server(fault) as broken_url:
        tenants = TenantRegistry([
            t.model_copy(update={"providers": TenantProviders(
                tts=ProviderOverride(url=broken_url))}) if t.name == "healthplus" else t
            for t in TenantRegistry.load()])
        monkeypatch.setattr(service, "checked_tenants", lambda directory=None: tenants)
        async with start_agent(
            agent="conversation", media_transport="rtp", data_dir=tmp_path,
            stt_url=base, tts_url=base, llm_url=base, llm_model="fake",
            tts_sample_rate=fake_models.TTS_RATE, embedded_fallback=False,
            tts_first_audio_timeout=1.0, history_url="off",
        ) as manager, SimPhone(settings.ari_url, settings.ari_user, settings.ari_secret(),
                               audio_factory=LoadAudio) as phone:
            question = Utterance.render(fake_models.TRANSCRIPT)
            gate = asyncio.Semaphore(10)
            healthy = [CallerFigures() for _ in HEALTHY]
            broken = [CallerFigures() for _ in BROKEN]
            until = time.monotonic()
            results = await asyncio.gather(
                *(converse(phone, question, until, f, gate, turns=3, number=n)
                  for f, n in zip(healthy, HEALTHY, strict=True)),
                *(converse(phone, question, until, f, gate, turns=1, number=n)
                  for f, n in zip(broken, BROKEN, strict=True)),
                return_exceptions=True)
            assert not [r for r in results if isinstance(r, BaseException)], results
            await asyncio.sleep(1.0)
            records = list(manager.completed)
        await assert_nothing_left(inspector, manager)

    print(f"{fault}: healthy V2V {[round(v, 2) for f in healthy for v in f.v2v]}; "
          f"broken callers {[f.error or f.turns for f in broken]}")
    # the other calls: every turn answered, nothing wrong in their records
    assert all(f.completed and f.turns == 3 and not f.error for f in healthy), healthy
    others = [r for r in records if r.tenant != "healthplus"]
    assert len(others) == len(HEALTHY) and not [r.errors for r in others if r.errors]
    # the failing tenant's calls: the failure is recorded with its stage and provider,
    # and each call ended cleanly (no crash, nothing stuck)
    failing = [r for r in records if r.tenant == "healthplus"]
    assert len(failing) == len(BROKEN)
    for record in failing:
        assert record.errors and all(e["stage"] == "tts" for e in record.errors), record.errors
        # with no voice at all (greeting and apology need the dead server, no embedded
        # fallback), the caller hears Asterisk's own "I'm sorry" and goes to the operator
        assert record.end_reason.startswith("cannot speak: "), record.end_reason
        assert record.end_reason.endswith("transferred to 9200@voice-agent-operators")
        assert [prompt for prompt, _ in record.prompts] == [SORRY_PROMPT]
