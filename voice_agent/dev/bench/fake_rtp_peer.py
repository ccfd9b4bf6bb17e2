"""A fake Asterisk for the agent-alone media benchmark: N RTP streams from N UDP ports.

Not a test double for correctness (integration tests use the real Asterisk);
it exists so ``voice-agent bench media-agent`` can load the agent's media plane
*without* Asterisk and the SIP phones sharing the 2 cores, which is the only
way to tell whether a media limit is the agent's or Asterisk's.

Protocol on stdin/stdout (one JSON line each way):
  out ``{"ports": [...]}`` once its sockets are bound;
  in  ``{"target": [host, port], "seconds": S}`` to start;
  out ``{"calls": [{"sent": [...], "arrivals": [[t, level], ...]}, ...]}`` when done.

Each stream sends the media benchmark's probe (a 60 ms 1 kHz burst every
second, µ-law silence otherwise) as 20 ms RTP packets on a drift-free
deadline grid. The streams are spread over the 20 ms period in
:data:`PHASES` groups, because real callers' packets are not in phase with
each other: Asterisk relays each caller's frames as they arrive, so the agent
sees a trickle of packets, not one burst per period (which would flatter any
batching in the agent).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import struct
import sys
import time
from typing import Any

import uvloop

from voice_agent.dev.bench.media import FRAME, payload_level, probe_payloads

_HEADER = struct.Struct("!BBHII")
PHASES = 10  # send groups per 20 ms period (2 ms apart)


class _Stream(asyncio.DatagramProtocol):
    """One fake UnicastRTP channel: sends the probe, records what comes back."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.sent: list[float] = []
        self.arrivals: list[tuple[float, float]] = []
        self._ssrc = secrets.randbits(32)
        self._seq = secrets.randbelow(1 << 14)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.arrivals.append((time.monotonic(), payload_level(data[12:])))

    def send(self, payload: bytes, target: tuple[str, int], n: int) -> None:
        assert self.transport is not None
        header = _HEADER.pack(0x80, 0, (self._seq + n) & 0xFFFF, (n * 160) & 0xFFFFFFFF,
                              self._ssrc)
        self.transport.sendto(header + payload, target)


async def _main(calls: int) -> None:
    loop = asyncio.get_running_loop()
    streams = []
    for _ in range(calls):
        _, stream = await loop.create_datagram_endpoint(_Stream, local_addr=("127.0.0.1", 0))
        streams.append(stream)
    ports = [s.transport.get_extra_info("sockname")[1] for s in streams]  # type: ignore[union-attr]
    print(json.dumps({"ports": ports}), flush=True)
    order = json.loads(await loop.run_in_executor(None, sys.stdin.readline))
    target = (order["target"][0], int(order["target"][1]))
    payloads = probe_payloads(order["seconds"])
    start = time.monotonic()
    groups = [streams[phase::PHASES] for phase in range(PHASES)]
    for n, payload in enumerate(payloads):
        for phase, group in enumerate(groups):
            due = start + (n + phase / PHASES) * FRAME
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            now = time.monotonic()
            for stream in group:
                stream.send(payload, target, n)
                stream.sent.append(now)
    await asyncio.sleep(0.6)  # the last echoes
    print(json.dumps({"calls": [{"sent": s.sent, "arrivals": s.arrivals} for s in streams]}),
          flush=True)


if __name__ == "__main__":
    uvloop.run(_main(int(sys.argv[1])))
