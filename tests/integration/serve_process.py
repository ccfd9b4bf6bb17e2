"""`voice-agent serve` as a child process, its output collected as it comes.

For tests that must see the real process: its log (every byte of it), its exit
code, and what it does under a wrapper (a sandbox, another user).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field


@dataclass
class ServeProcess:
    process: asyncio.subprocess.Process
    output: bytearray = field(default_factory=bytearray)

    def logged(self, text: str) -> bool:
        return text.encode() in self.output

    async def stop(self, timeout: float = 30) -> int:
        """SIGTERM (the graceful drain), then its exit code."""
        self.process.terminate()
        async with asyncio.timeout(timeout):
            return await self.process.wait()


@contextlib.asynccontextmanager
async def serve_process(env: dict[str, str], *args: str, wrapper: tuple[str, ...] = ()
                        ) -> AsyncIterator[ServeProcess]:
    """``[wrapper…] python -m voice_agent.cli serve ARGS`` with stdout and stderr merged."""
    process = await asyncio.create_subprocess_exec(
        *wrapper, sys.executable, "-m", "voice_agent.cli", "serve", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    serve = ServeProcess(process)

    async def collect() -> None:
        assert process.stdout is not None
        while chunk := await process.stdout.read(65536):
            serve.output.extend(chunk)

    collector = asyncio.create_task(collect())
    try:
        yield serve
        await asyncio.wait_for(collector, 10)  # the rest of the output, once it exited
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        collector.cancel()
