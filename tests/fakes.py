"""Fakes of the servers and sockets the code under test talks to, shared by test modules.

- :class:`CannedHttpServer`: a threaded loopback HTTP server with one canned reply
  (the OpenAI-compatible STT and TTS clients).
- :class:`ScriptedLlmServer` with :class:`Reply` and the ``*_chunk`` builders: a
  loopback server streaming scripted chat-completion events (the LLM client).
- :func:`rtp_server` and :func:`batch_decoded`: the RTP media server on a
  capturing transport (no socket).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.server import AsyncEventHandler, AsyncServer

from voice_agent.media.media_clock import MediaClock
from voice_agent.media.rtp_transport import DECODE_WINDOW, RtpMediaServer

# ------------------------------------------------------------ canned HTTP


@dataclass
class HttpRequest:
    """One request as CannedHttpServer received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class CannedHttpServer:
    """A loopback HTTP server that records requests and sends one canned reply.

    Real sockets, so the client's actual request bytes and httpx's actual
    connection errors are what the tests see.
    """

    status: int = 200
    content_type: str = "application/json"
    body: bytes = b"{}"
    delay: float = 0.0
    requests: list[HttpRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        canned = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                self._reply("POST")

            def do_GET(self) -> None:  # noqa: N802
                self._reply("GET")

            def _reply(self, method: str) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                canned.requests.append(HttpRequest(method, self.path, dict(self.headers), body))
                threading.Event().wait(canned.delay)
                self.send_response(canned.status)
                self.send_header("Content-Type", canned.content_type)
                self.send_header("Content-Length", str(len(canned.body)))
                self.end_headers()
                self.wfile.write(canned.body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# ------------------------------------------------------------ scripted LLM


def role_chunk() -> dict[str, Any]:
    """What many servers send first: the role, no token yet."""
    return {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}


def text_chunk(text: str) -> dict[str, Any]:
    """One streamed token (or several)."""
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}


def finish_chunk(reason: str) -> dict[str, Any]:
    """The last chunk of a choice: its finish reason, no content."""
    return {"choices": [{"index": 0, "delta": {}, "finish_reason": reason}]}


def tool_chunk(index: int, arguments: str, *, id: str | None = None,
               name: str | None = None) -> dict[str, Any]:
    """A fragment of tool call ``index``; ``id`` and ``name`` come with its first one."""
    fragment: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if id is not None:
        fragment |= {"id": id, "type": "function"}
    if name is not None:
        fragment["function"]["name"] = name
    return {"choices": [{"index": 0, "delta": {"tool_calls": [fragment]}}]}


@dataclass
class Reply:
    """One scripted HTTP response.

    ``body`` set: a plain response with that body. Otherwise SSE: each event is
    written and flushed on its own, then ``data: [DONE]`` unless ``complete``
    is False, in which case the connection is just closed (a server that
    died). ``chunked=False`` delimits the body by closing the connection, so a
    dead server looks like a clean end of stream. ``hang`` stops after the
    events and sends nothing more until the test ends.
    """

    status: int = 200
    events: Sequence[dict[str, Any] | str] = ()
    complete: bool = True
    chunked: bool = True
    hang: bool = False
    body: bytes | None = None
    content_type: str = "text/event-stream"


@dataclass
class LlmRequest:
    """One request as ScriptedLlmServer received it (the JSON body parsed)."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class ScriptedLlmServer:
    """A loopback HTTP/1.1 server answering each request with the next :class:`Reply`.

    A test double of the *server* only; every response closes its connection,
    which keeps the HTTP side minimal.
    """

    replies: list[Reply] = field(default_factory=list)
    requests: list[LlmRequest] = field(default_factory=list)

    async def start(self) -> None:
        self._handlers: set[asyncio.Task[None]] = set()
        self._release = asyncio.Event()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/v1"

    async def close(self) -> None:
        self._release.set()
        self._server.close()
        await asyncio.gather(*self._handlers)
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            headers = {
                name.strip().lower(): value.strip()
                for name, _, value in (line.partition(":") for line in head[1:] if line)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append(LlmRequest(head[0].split()[1], headers, json.loads(body)))
            await self._send(self.replies.pop(0), writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client gave up first, as some tests intend
        finally:
            writer.close()

    async def _send(self, reply: Reply, writer: asyncio.StreamWriter) -> None:
        head = [
            f"HTTP/1.1 {reply.status} {HTTPStatus(reply.status).phrase}",
            f"Content-Type: {reply.content_type}",
            "Connection: close",
        ]
        if reply.body is not None:
            head.append(f"Content-Length: {len(reply.body)}")
            writer.write("\r\n".join(head).encode() + b"\r\n\r\n" + reply.body)
            await writer.drain()
            return
        if reply.chunked:
            head.append("Transfer-Encoding: chunked")
        writer.write("\r\n".join(head).encode() + b"\r\n\r\n")
        events = [e if isinstance(e, str) else json.dumps(e) for e in reply.events]
        for event in events + (["[DONE]"] if reply.complete and not reply.hang else []):
            data = f"data: {event}\n\n".encode()
            writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n" if reply.chunked else data)
            await writer.drain()
        if reply.hang:
            await self._release.wait()
        elif reply.complete and reply.chunked:
            writer.write(b"0\r\n\r\n")
            await writer.drain()


# ------------------------------------------------------------ RTP transport


class CapturingTransport:
    """A datagram transport that keeps what is sent instead of sending it."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))

    def get_extra_info(self, name: str) -> object:
        return ("127.0.0.1", 40000) if name == "sockname" else None

    def close(self) -> None:
        pass


def rtp_server() -> tuple[RtpMediaServer, CapturingTransport]:
    """An RTP media server on a CapturingTransport, with its own MediaClock."""
    server = RtpMediaServer(MediaClock())
    transport = CapturingTransport()
    server.connection_made(transport)  # type: ignore[arg-type]
    return server, transport


async def batch_decoded() -> None:
    """Until the batch decode scheduled by the datagrams so far has run.

    It is a timer DECODE_WINDOW after the first datagram; a sleep of the same
    length started later ends after it (asyncio runs timers in deadline order).
    """
    await asyncio.sleep(DECODE_WINDOW)


# ------------------------------------------------------------ Wyoming


class ScriptedWyoming(AsyncEventHandler):
    """A Wyoming server whose answer to a request is ``script(event)``: events to send."""

    script: Callable[[Event], list[Event] | None | Awaitable[list[Event] | None]]

    async def handle_event(self, event: Event) -> bool:
        if Describe.is_type(event.type):
            await self.write_event(Info().event())
            return True
        answer = type(self).script(event)
        if inspect.isawaitable(answer):
            answer = await answer
        if answer is None:
            return True
        for out in answer:
            await self.write_event(out)
        return False


class WyomingServers:
    """Scripted Wyoming servers on free loopback ports; ``await start(script)`` → URL."""

    def __init__(self) -> None:
        self._servers: list[Any] = []

    async def start(self, script: Callable[[Event], Any]) -> str:
        handler = type("Handler", (ScriptedWyoming,), {"script": staticmethod(script)})
        server = AsyncServer.from_uri("tcp://127.0.0.1:0")
        await server.start(handler)
        self._servers.append(server)
        port = server._server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return f"tcp://127.0.0.1:{port}"

    async def stop(self) -> None:
        for server in self._servers:
            await server.stop()


async def silent_tcp_server() -> tuple[str, asyncio.Server]:
    """A ``tcp://`` URL whose server accepts, reads, and never answers (a hung model)."""
    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(65536):
            pass

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    return f"tcp://127.0.0.1:{server.sockets[0].getsockname()[1]}", server
