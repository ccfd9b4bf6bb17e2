"""AriClient REST error mapping, params and event parsing (httpx.MockTransport, no network)."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from voice_agent.ari.asterisk_ari import (
    AriAuthError,
    AriClient,
    AriConflictError,
    AriConnectionError,
    AriError,
    AriNotFoundError,
    AriRequestError,
    _events_url,
)

BASE = "http://pbx.test:8088"
Handler = Callable[[httpx.Request], httpx.Response]

#: Built once: a default httpx client loads the CA bundle (~50 ms) every time it is made.
_SSL_CONTEXT = ssl.create_default_context()
_RealAsyncClient = httpx.AsyncClient


class _SharedSslAsyncClient(_RealAsyncClient):
    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("verify", _SSL_CONTEXT)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _fast_httpx_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep AriClient's real __aenter__ but skip the per-client CA bundle load."""
    monkeypatch.setattr(httpx, "AsyncClient", _SharedSslAsyncClient)


class Mock:
    """Swaps the client's httpx client for one on a MockTransport; records requests."""

    def __init__(self, ari: AriClient) -> None:
        self.ari = ari
        self.requests: list[httpx.Request] = []
        self.reply: Handler = lambda request: httpx.Response(204)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.reply(request)

    async def install(self) -> None:
        assert self.ari._http is not None
        await self.ari._http.aclose()
        self.ari._http = httpx.AsyncClient(
            transport=httpx.MockTransport(self._handle), base_url=f"{BASE}/ari"
        )

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]


@pytest.fixture
async def ari() -> AsyncIterator[AriClient]:
    async with AriClient(BASE + "/", "user", "pw", "voice_agent") as client:
        yield client


@pytest.fixture
async def mock(ari: AriClient) -> Mock:
    m = Mock(ari)
    await m.install()
    return m


async def test_aenter_builds_an_authenticated_client_on_the_ari_prefix() -> None:
    client = AriClient(BASE + "/", "user", "pw", "voice_agent", timeout=3.0)
    assert client.base_url == BASE
    async with client as ari:
        assert ari._http is not None
        assert str(ari._http.base_url) == f"{BASE}/ari/"
        assert ari._http.timeout.read == 3.0
        request = ari._http.build_request("GET", "/channels")
        assert request.url == httpx.URL(f"{BASE}/ari/channels")
        authed = next(ari._http.auth.sync_auth_flow(request))
        expected = "Basic " + base64.b64encode(b"user:pw").decode()
        assert authed.headers["Authorization"] == expected
    assert client._http is None


async def test_request_outside_context_is_a_clear_error() -> None:
    client = AriClient(BASE, "user", "pw", "voice_agent")
    with pytest.raises(RuntimeError, match="outside 'async with'"):
        await client.answer("c1")


async def test_401_is_auth_error(mock: Mock, ari: AriClient) -> None:
    mock.reply = lambda r: httpx.Response(401, text="Unauthorized")
    with pytest.raises(AriAuthError) as info:
        await ari.list_channels()
    message = str(info.value)
    assert "GET /channels" in message
    assert "VOICE_AGENT_ARI_USER" in message
    assert not isinstance(info.value, AriRequestError)


async def test_404_is_not_found_with_details(mock: Mock, ari: AriClient) -> None:
    mock.reply = lambda r: httpx.Response(404, json={"message": "Channel not found"})
    with pytest.raises(AriNotFoundError) as info:
        await ari.answer("c1")
    err = info.value
    assert isinstance(err, AriRequestError)
    assert (err.method, err.path, err.status, err.detail) == (
        "POST", "/channels/c1/answer", 404, "Channel not found"
    )
    assert "HTTP 404: Channel not found" in str(err)


@pytest.mark.parametrize("status", [409, 422])
async def test_409_and_422_are_conflicts(mock: Mock, ari: AriClient, status: int) -> None:
    mock.reply = lambda r: httpx.Response(status, json={"message": "Channel not in Stasis"})
    with pytest.raises(AriConflictError) as info:
        await ari.add_to_bridge("b1", "c1")
    assert info.value.status == status
    assert info.value.detail == "Channel not in Stasis"
    assert not isinstance(info.value, AriNotFoundError)


@pytest.mark.parametrize("status", [400, 500, 503])
async def test_other_errors_are_plain_request_errors(
    mock: Mock, ari: AriClient, status: int
) -> None:
    mock.reply = lambda r: httpx.Response(status, text="  boom  ")
    with pytest.raises(AriRequestError) as info:
        await ari.hangup("c1")
    err = info.value
    assert type(err) is AriRequestError
    assert err.status == status
    assert err.detail == "boom"
    assert err.method == "DELETE"


async def test_error_without_body_uses_reason_phrase(mock: Mock, ari: AriClient) -> None:
    mock.reply = lambda r: httpx.Response(500)
    with pytest.raises(AriRequestError) as info:
        await ari.asterisk_info()
    assert info.value.detail == "Internal Server Error"


async def test_error_json_without_message_uses_text(mock: Mock, ari: AriClient) -> None:
    mock.reply = lambda r: httpx.Response(500, json={"error": "x"})
    with pytest.raises(AriRequestError) as info:
        await ari.asterisk_info()
    assert json.loads(info.value.detail) == {"error": "x"}


async def test_error_with_non_object_json_body(mock: Mock, ari: AriClient) -> None:
    mock.reply = lambda r: httpx.Response(502, json=["bad gateway"])
    with pytest.raises(AriRequestError):
        await ari.asterisk_info()


async def test_transport_error_is_connection_error(mock: Mock, ari: AriClient) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    mock.reply = refuse
    with pytest.raises(AriConnectionError) as info:
        await ari.list_channels()
    message = str(info.value)
    assert BASE in message
    assert "ConnectError" in message
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert isinstance(info.value, AriError)


async def test_timeout_is_connection_error(mock: Mock, ari: AriClient) -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    mock.reply = slow
    with pytest.raises(AriConnectionError, match="ReadTimeout"):
        await ari.asterisk_info()


async def test_204_returns_none(mock: Mock, ari: AriClient) -> None:
    mock.reply = lambda r: httpx.Response(204)
    assert await ari.request("POST", "/channels/c1/answer") is None


async def test_200_without_body_returns_none(mock: Mock, ari: AriClient) -> None:
    mock.reply = lambda r: httpx.Response(200)
    assert await ari.request("POST", "/x") is None


async def test_json_body_is_decoded(mock: Mock, ari: AriClient) -> None:
    mock.reply = lambda r: httpx.Response(200, json=[{"id": "c1"}, {"id": "c2"}])
    assert await ari.list_channels() == [{"id": "c1"}, {"id": "c2"}]
    assert mock.last.method == "GET"
    assert mock.last.url.path == "/ari/channels"


async def test_query_params_bools_and_none(mock: Mock, ari: AriClient) -> None:
    await ari.request(
        "POST", "/things", params={"yes": True, "no": False, "gone": None, "n": 3, "s": "a b"}
    )
    params = mock.last.url.params
    assert dict(params) == {"yes": "true", "no": "false", "n": "3", "s": "a b"}
    assert "gone" not in params


async def test_json_body_is_sent(mock: Mock, ari: AriClient) -> None:
    await ari.request("POST", "/things", json_body={"variables": {"A": "1"}})
    assert json.loads(mock.last.content) == {"variables": {"A": "1"}}


async def test_originate_omits_unset_params(mock: Mock, ari: AriClient) -> None:
    mock.reply = lambda r: httpx.Response(200, json={"id": "new"})
    result = await ari.originate("PJSIP/100", app="voice_agent", app_args="techstore")
    assert result == {"id": "new"}
    assert mock.last.url.path == "/ari/channels"
    assert dict(mock.last.url.params) == {
        "endpoint": "PJSIP/100", "app": "voice_agent", "appArgs": "techstore", "timeout": "30"
    }


@pytest.mark.parametrize(
    ("call", "method", "path", "params"),
    [
        (lambda a: a.answer("c1"), "POST", "/ari/channels/c1/answer", {}),
        (lambda a: a.hangup("c1"), "DELETE", "/ari/channels/c1", {"reason": "normal"}),
        (lambda a: a.play("c1", "sound:beep", "pb1"), "POST", "/ari/channels/c1/play/pb1",
         {"media": "sound:beep"}),
        (lambda a: a.send_dtmf("c1", "12#"), "POST", "/ari/channels/c1/dtmf", {"dtmf": "12#"}),
        (lambda a: a.set_variable("c1", "V", "x"), "POST", "/ari/channels/c1/variable",
         {"variable": "V", "value": "x"}),
        (lambda a: a.create_bridge("b1"), "POST", "/ari/bridges/b1", {"type": "mixing"}),
        (lambda a: a.add_to_bridge("b1", "c1"), "POST", "/ari/bridges/b1/addChannel",
         {"channel": "c1"}),
        (lambda a: a.destroy_bridge("b1"), "DELETE", "/ari/bridges/b1", {}),
    ],
)
async def test_rest_method_shapes(
    mock: Mock, ari: AriClient, call, method: str, path: str, params: dict[str, str]
) -> None:
    await call(ari)
    assert mock.last.method == method
    assert mock.last.url.path == path
    assert dict(mock.last.url.params) == params


async def test_get_variable(mock: Mock, ari: AriClient) -> None:
    mock.reply = lambda r: httpx.Response(200, json={"value": "techstore"})
    assert await ari.get_variable("c1", "VOICE_AGENT_TENANT") == "techstore"
    assert dict(mock.last.url.params) == {"variable": "VOICE_AGENT_TENANT"}


# ------------------------------------------------------------------ events


def test_parse_valid_event() -> None:
    client = AriClient(BASE, "u", "p", "app")
    event = client._parse('{"type": "StasisStart", "args": ["techstore"]}')
    assert event == {"type": "StasisStart", "args": ["techstore"]}
    assert client._parse(b'{"type": "StasisEnd"}') == {"type": "StasisEnd"}
    assert client.bad_events == 0


@pytest.mark.parametrize(
    "message",
    ["not json", "", '["type", "StasisStart"]', '{"channel": {"id": "c1"}}', "42", "null",
     b"\xff\xfe"],
)
def test_parse_malformed_event(message: str | bytes) -> None:
    client = AriClient(BASE, "u", "p", "app")
    assert client._parse(message) is None
    assert client.bad_events == 1


def test_bad_events_accumulate() -> None:
    client = AriClient(BASE, "u", "p", "app")
    client._parse("nope")
    client._parse("[]")
    assert client._parse('{"type": "X"}') == {"type": "X"}
    client._parse("{}")
    assert client.bad_events == 3


@pytest.mark.parametrize(
    ("base", "url"),
    [
        ("http://pbx:8088", "ws://pbx:8088/ari/events"),
        ("https://pbx.example.com:8089", "wss://pbx.example.com:8089/ari/events"),
    ],
)
def test_events_url(base: str, url: str) -> None:
    assert _events_url(base) == url


async def test_a_refused_connection_is_tried_again_so_a_short_flap_is_ridden_out() -> None:
    """Nothing listens on the port for 0.3 s (Asterisk's HTTP restarting): the request
    still succeeds. A refused connect never reached Asterisk, so even a POST may retry."""
    from aiohttp import web

    from voice_agent.dev.model_servers import free_tcp_port

    port = free_tcp_port()
    seen: list[str] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append(request.method)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/ari/channels/c1/answer", answer)
    runner = web.AppRunner(app)
    await runner.setup()

    async def start_late() -> None:
        await asyncio.sleep(0.3)
        await web.TCPSite(runner, "127.0.0.1", port).start()

    late = asyncio.create_task(start_late())
    try:
        async with AriClient(f"http://127.0.0.1:{port}", "u", "p", "voice_agent") as client:
            await client.answer("c1")
        assert seen == ["POST"]  # once: the refused attempts never arrived
    finally:
        await late
        await runner.cleanup()
