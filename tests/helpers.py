"""Plain helpers shared by the unit and integration tests (no fixtures, no fakes)."""

from __future__ import annotations

import asyncio
import math
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np

from voice_agent.config import Settings
from voice_agent.dev.llm_server import LocalLlmServer

# ------------------------------------------------------------------ signals


def tone_at(level_dbfs: float, samples: int = 320) -> np.ndarray:
    """A 16 kHz, 300 Hz sine whose RMS level is ``level_dbfs`` dBFS (one 20 ms frame)."""
    amplitude = 32768 * 10 ** (level_dbfs / 20) * math.sqrt(2)
    return (amplitude * np.sin(2 * np.pi * 300 * np.arange(samples) / 16000)).astype(np.int16)


def sine(rate: int, freq: float, seconds: float = 1.0, amplitude: float = 10000) -> np.ndarray:
    """``seconds`` of a ``freq`` Hz sine at ``rate`` Hz, peak ``amplitude``, as int16."""
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


# ------------------------------------------------------------------ deployment

#: The shipped systemd unit.
UNIT = Path(__file__).parents[1] / "deploy" / "voice-agent.service"


def unit_service_settings(path: Path = UNIT) -> dict[str, list[str]]:
    """``Key=value`` lines of the ``[Service]`` section (a key may repeat)."""
    settings: dict[str, list[str]] = {}
    section = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings



# ------------------------------------------------------------------ network


def closed_port_url() -> str:
    """A loopback URL where nothing listens: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def ari_credentials(settings: Settings) -> tuple[str, str, str]:
    """ARI url, user and password, as ``AriClient`` and the call placers take them."""
    return settings.ari_url, settings.ari_user, settings.ari_secret()


def local_llm_server(settings: Settings, port: int) -> LocalLlmServer:
    """The bundled llama-server on ``port`` with one slot (use as a context manager)."""
    return LocalLlmServer(settings.asterisk_root, port=port, slots=1,
                          progress=lambda msg: print(f"llm: {msg}"))


# ------------------------------------------------------------------ waiting


async def eventually(check: Callable[[], Awaitable[bool] | bool], timeout: float = 5.0,
                     what: str = "condition", interval: float = 0.05) -> None:
    """Poll ``check`` until true; fail with ``what`` after ``timeout`` (a bound, not a metric)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(interval)
