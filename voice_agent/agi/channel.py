"""One FastAGI connection: the caller's channel as a handful of awaitable commands.

A reader task owns the socket's read side for the whole call. It hands complete
responses to the command that is waiting for one, and sets :attr:`hung_up` the
moment Asterisk writes ``HANGUP`` — even while no command is running, e.g.
while the agent transcribes or synthesises, which is when a caller typically
gives up. The session waits on that event to cancel its work at once, exactly
as the ARI path cancels a session on ``StasisEnd``.

Commands run one at a time (AGI has no request ids: responses are matched by
order). After a hang-up no command is sent: it could only earn a ``511``. A
command abandoned while waiting (the call's work was cancelled, e.g. at
shutdown mid-``RECORD FILE``) leaves its response still to come, so the channel
refuses further commands; closing the socket then ends the AGI, and the
dialplan's next step (``Hangup()``) ends the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from voice_agent.agi.protocol import (
    HANGUP,
    AgiError,
    AgiHangup,
    AgiProtocolError,
    AgiRequest,
    AgiResponse,
    ResponseParser,
    format_command,
    parse_environment,
)

log = logging.getLogger(__name__)

#: Longest environment block we accept (Asterisk sends ~25 short lines).
MAX_ENV_LINES = 200


@dataclass(frozen=True)
class Recorded:
    """How a ``RECORD FILE`` ended."""

    digit: str | None
    """The escape key that stopped it, or None (silence or the length limit)."""
    samples: int
    """Samples recorded (8 kHz for ``wav``), after Asterisk trimmed the final silence."""


class AgiChannel:
    """Commands on one call's channel over FastAGI; use as ``async with``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 request: AgiRequest) -> None:
        self.request = request
        self._reader = reader
        self._writer = writer
        #: Set when Asterisk reports the caller gone (``HANGUP`` or the socket closing).
        self.hung_up = asyncio.Event()
        #: Responses in order; a line that is no response stands in as its error; None: closed.
        self._responses: asyncio.Queue[AgiResponse | AgiProtocolError | None] = asyncio.Queue()
        self._lock = asyncio.Lock()
        self._out_of_step = False
        self._pump = asyncio.create_task(self._read_lines(), name="agi-reader")

    @classmethod
    async def accept(cls, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     timeout: float = 5.0) -> AgiChannel:
        """Read the environment block Asterisk sends first (bounded in time and size)."""
        lines: list[str] = []
        async with asyncio.timeout(timeout):
            while True:
                raw = await reader.readline()
                if not raw:
                    raise AgiProtocolError("connection closed before the AGI environment ended")
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if not line:
                    break
                lines.append(line)
                if len(lines) > MAX_ENV_LINES:
                    raise AgiProtocolError(f"AGI environment longer than {MAX_ENV_LINES} lines")
        return cls(reader, writer, parse_environment(lines))

    async def __aenter__(self) -> AgiChannel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the socket: Asterisk's AGI() returns and the dialplan goes on."""
        self._pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._pump
        self._writer.close()
        with contextlib.suppress(OSError, ConnectionError):
            await self._writer.wait_closed()

    async def _read_lines(self) -> None:
        parser = ResponseParser()
        try:
            while raw := await self._reader.readline():
                try:
                    event = parser.feed(raw.decode("utf-8", "replace"))
                except AgiProtocolError as exc:
                    self._responses.put_nowait(exc)  # it took a response's place in the order
                    continue
                if event is HANGUP:
                    self.hung_up.set()
                elif isinstance(event, AgiResponse):
                    self._responses.put_nowait(event)
        except (OSError, ConnectionError) as exc:
            log.debug("AGI socket error: %s", exc)
        # The socket closed: Asterisk is done with this channel.
        self.hung_up.set()
        self._responses.put_nowait(None)

    async def command(self, *words: str) -> AgiResponse:
        """Send one command and return its response; AGI errors become exceptions."""
        line = format_command(*words)
        async with self._lock:
            if self.hung_up.is_set():
                raise AgiHangup(f"caller hung up before {words[0]}")
            if self._out_of_step:
                raise AgiError(f"cannot send {words[0]}: an abandoned command's response "
                               "is still due, so responses no longer match commands")
            self._writer.write(line.encode())
            try:
                await self._writer.drain()
            except (OSError, ConnectionError) as exc:
                raise AgiHangup(f"AGI socket closed: {exc}") from exc
            try:
                response = await self._responses.get()
            except asyncio.CancelledError:
                self._out_of_step = True
                raise
        if response is None:
            self._responses.put_nowait(None)  # every later command sees the closed socket too
            raise AgiHangup("AGI socket closed by Asterisk")
        if isinstance(response, AgiProtocolError):
            raise response
        return response.raise_for_error(line.rstrip("\n"))

    # ------------------------------------------------------------ commands
    async def answer(self) -> None:
        await self.command("ANSWER")

    async def set_variable(self, name: str, value: str) -> None:
        await self.command("SET", "VARIABLE", name, value)

    async def stream_file(self, name: str, escape_digits: str = "") -> str | None:
        """Play ``name`` (no extension); returns the escape key that stopped it, if any."""
        response = await self.command("STREAM", "FILE", name, escape_digits)
        return response.digit

    async def record_file(self, name: str, escape_digits: str, max_ms: int,
                          silence_seconds: int) -> Recorded:
        """Record to ``name``.wav until ``silence_seconds`` of silence, a key or ``max_ms``.

        The ``0`` is the sample offset: without it Asterisk would read the next
        argument as ``BEEP`` and beep at the caller before every turn.
        """
        response = await self.command("RECORD", "FILE", name, "wav", escape_digits,
                                      str(max_ms), "0", f"s={silence_seconds}")
        return Recorded(response.digit, response.endpos)

    async def goto(self, context: str, extension: str, priority: int = 1) -> None:
        """Continue the dialplan at context,extension,priority when this AGI ends."""
        await self.command("SET", "CONTEXT", context)
        await self.command("SET", "EXTENSION", extension)
        await self.command("SET", "PRIORITY", str(priority))

    async def hangup(self) -> None:
        await self.command("HANGUP")
