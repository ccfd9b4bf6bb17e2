"""FAKE model servers for the load benchmark: OpenAI-compatible, fixed latencies.

Not models: every answer is fixed, and every result that used them says
``"models": "fake"``. They exist so that ``bench load --models fake`` measures
the agent's own overhead at load (V2V minus these fixed latencies), which real
models on a 2-core box would drown:

* ``POST /v1/audio/transcriptions``: after :data:`STT_SECONDS`, ``{"text": TRANSCRIPT}``;
* ``POST /v1/chat/completions`` (stream): first token after :data:`LLM_FIRST_TOKEN_SECONDS`,
  then one word every :data:`LLM_TOKEN_SECONDS`, the words of :data:`REPLY`;
* ``POST /v1/audio/speech`` (``pcm``, 24 kHz): first audio after :data:`TTS_FIRST_AUDIO_SECONDS`,
  then the rest at once: a 250 Hz tone of :data:`TTS_SECONDS_PER_CHAR` per character;
* ``GET /v1/models``: the readiness probe.

Run as its own process (``python -m voice_agent.dev.bench.fake_models --port P``)
so its CPU is not the agent's. aiohttp serves it: a well-kept server, and the
HTTP plumbing is not what is being measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import numpy as np
from aiohttp import web

STT_SECONDS = 0.25
LLM_FIRST_TOKEN_SECONDS = 0.15
LLM_TOKEN_SECONDS = 0.02
TTS_FIRST_AUDIO_SECONDS = 0.10
TTS_SECONDS_PER_CHAR = 0.03
TTS_RATE = 24000
TRANSCRIPT = "Do you have it in stock?"
REPLY = ("Yes, that model is in stock right now. We have seven of them, at eight hundred "
         "ninety nine dollars each. Is there anything else I can help you with today?")
#: What every result of a run with these servers carries, so nobody mistakes them for models.
LABEL = (f"fake (OpenAI-compatible fake servers, fixed latencies: STT {STT_SECONDS * 1000:.0f} ms, "
         f"LLM first token {LLM_FIRST_TOKEN_SECONDS * 1000:.0f} ms then "
         f"{LLM_TOKEN_SECONDS * 1000:.0f} ms per token, TTS first audio "
         f"{TTS_FIRST_AUDIO_SECONDS * 1000:.0f} ms)")
#: Model latency a turn cannot avoid with these servers: what V2V minus is the agent's own.
FIXED_SECONDS = STT_SECONDS + LLM_FIRST_TOKEN_SECONDS + TTS_FIRST_AUDIO_SECONDS


def tone_pcm(seconds: float) -> bytes:
    """A 250 Hz tone at -16 dBFS as 24 kHz little-endian PCM16 (the fake's voice)."""
    t = np.arange(int(seconds * TTS_RATE)) / TTS_RATE
    return (np.sin(2 * np.pi * 250 * t) * 5200).astype("<i2").tobytes()


async def transcriptions(request: web.Request) -> web.Response:
    await request.read()
    await asyncio.sleep(STT_SECONDS)
    return web.json_response({"text": TRANSCRIPT})


async def speech(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    audio = tone_pcm(max(0.2, len(str(body.get("input", ""))) * TTS_SECONDS_PER_CHAR))
    response = web.StreamResponse(headers={"Content-Type": "audio/pcm"})
    await response.prepare(request)
    await asyncio.sleep(TTS_FIRST_AUDIO_SECONDS)
    first = TTS_RATE // 10 * 2  # 100 ms of audio first, then the rest
    await response.write(audio[:first])
    await response.write(audio[first:])
    await response.write_eof()
    return response


async def chat(request: web.Request) -> web.StreamResponse:
    await request.json()
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    created = int(time.time())

    async def send(delta: dict[str, object], finish: str | None = None) -> None:
        chunk = {"id": "fake", "object": "chat.completion.chunk", "created": created,
                 "model": "fake", "choices": [{"index": 0, "delta": delta,
                                               "finish_reason": finish}]}
        await response.write(f"data: {json.dumps(chunk)}\n\n".encode())

    await asyncio.sleep(LLM_FIRST_TOKEN_SECONDS)
    words = REPLY.split(" ")
    for i, word in enumerate(words):
        if i:
            await asyncio.sleep(LLM_TOKEN_SECONDS)
        await send({"content": word if i == 0 else " " + word})
    await send({}, "stop")
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


async def models(request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [{"id": "fake", "object": "model"}]})


def app() -> web.Application:
    application = web.Application(client_max_size=16 * 2**20)
    application.add_routes([
        web.post("/v1/audio/transcriptions", transcriptions),
        web.post("/v1/audio/speech", speech),
        web.post("/v1/chat/completions", chat),
        web.get("/v1/models", models),
    ])
    return application


def main() -> None:
    parser = argparse.ArgumentParser(description="FAKE OpenAI-compatible model servers "
                                     "with fixed latencies (load benchmark only).")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    web.run_app(app(), host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
