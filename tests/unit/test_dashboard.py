"""The dashboard without Asterisk: the token, the pages over a real SQLite history,
the search's bad input, and the timeline built from a stored call.

The pages after real calls, in a real browser, are tested in
``tests/integration/test_dashboard_browser.py``.
"""

from __future__ import annotations

import logging
import stat
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from voice_agent.calls.record import CallRecord, CallState
from voice_agent.dashboard import auth, timeline
from voice_agent.dashboard.views import Dashboard
from voice_agent.history import CallHistory, HistoryReader, stored_form
from voice_agent.tenants import TenantRegistry

TOKEN = "s3cret-token-for-tests"


def a_call(tenant: str = "techstore", reason: str = "agent ended the call",
           started_at: float | None = None) -> CallRecord:
    """A call with a greeting, one answered turn and a barge-in on the media clock."""
    record = CallRecord(session_id=f"s{time.monotonic_ns()}", channel_id="c",
                        channel_name="PJSIP/x-1", caller="+15551234567", tenant=tenant,
                        end_reason=reason, number={"techstore": "18005551234",
                                                   "edulearn": "18005559999"}.get(tenant, "100"))
    if started_at is not None:
        record.started_at = started_at
    t0, m0 = record.started_at, time.monotonic()  # wall and media clock at the start
    record.transitions += [(t0, CallState.STARTING), (t0 + 0.5, CallState.GREETING),
                           (t0 + 3.0, CallState.LISTENING)]
    record.turns.append({"speech_start": m0 + 4.0, "speech_end": m0 + 6.0,
                         "end_of_turn_s": 0.2, "stt_final": m0 + 6.1, "reply_ready": m0 + 6.15,
                         "first_audio": m0 + 6.4, "played": m0 + 9.0,
                         "heard": "where is my order 12345",
                         "reply": "Order 1 2 3 4 5 has shipped.", "tools": ["order_status -> ok"]})
    record.barge_ins.append({"onset": m0 + 8.0, "stopped": m0 + 8.1})
    record.ended_at = t0 + 12.0
    return record


@pytest.fixture
def history(tmp_path: Path) -> Callable[..., HistoryReader]:
    """``history(*records)``: those calls stored in a real SQLite file, and its reader."""
    url = f"sqlite:///{tmp_path / 'h.sqlite3'}"

    def store(*records: CallRecord) -> HistoryReader:
        writer = CallHistory(url, TenantRegistry.load())
        for record in records:
            writer.submit(record, "ari")
        writer.close()
        return HistoryReader(url)
    return store


@pytest.fixture
async def client() -> AsyncIterator[Callable[..., Any]]:
    """``await client(history=, live=)``: a test client of the dashboard's app."""
    clients: list[TestClient[Any, Any]] = []

    async def make(history: HistoryReader | None = None,
                   live: list[CallRecord] | None = None) -> TestClient[Any, Any]:
        app = web.Application()
        app.router.add_get("/metrics", _metrics)
        Dashboard(token=TOKEN, tenants=TenantRegistry.load(), live=lambda: live or [],
                  history=history).install(app)
        test_client = TestClient(TestServer(app))
        await test_client.start_server()
        clients.append(test_client)
        return test_client

    yield make
    for test_client in clients:
        await test_client.close()


BEARER = {"Authorization": f"Bearer {TOKEN}"}


async def _metrics(request: web.Request) -> web.Response:
    return web.Response(text="# metrics")


# --------------------------------------------------------------------- token

async def test_without_the_token_nothing_but_metrics_login_and_assets(
        client: Callable[..., Any], caplog: pytest.LogCaptureFixture) -> None:
    c = await client()
    api = await c.get("/api/live")
    assert api.status == 401 and api.headers["WWW-Authenticate"] == "Bearer"
    page = await c.get("/calls?tenant=techstore", allow_redirects=False)
    assert page.status == 303
    login = urlsplit(page.headers["Location"])
    assert login.path == "/login" and parse_qs(login.query)["next"] == ["/calls?tenant=techstore"]
    with caplog.at_level(logging.WARNING, logger="voice_agent.dashboard"):
        wrong = await c.get("/api/live", headers={"Authorization": "Bearer nope-guess"})
        assert wrong.status == 401
        form = await c.post("/login", data={"token": "other-guess"})
        assert form.status == 401
    attempts = [r.getMessage() for r in caplog.records]
    assert attempts == ["dashboard: wrong token for GET /api/live from 127.0.0.1",
                        "dashboard: wrong token for POST /login from 127.0.0.1"]
    assert "guess" not in caplog.text  # the attempt, never what was sent
    for open_path in ("/metrics", "/login", "/static/dashboard.css", "/static/live.js"):
        assert (await c.get(open_path)).status == 200, open_path
    assert (await c.get("/api/live", headers=BEARER)).status == 200


async def test_the_login_form_sets_a_strict_cookie_and_only_redirects_home(
        client: Callable[..., Any]) -> None:
    c = await client()
    refused = await c.post("/login", data={"token": "guess", "next": "/calls"})
    assert refused.status == 401 and "not right" in await refused.text()
    ok = await c.post("/login", data={"token": TOKEN, "next": "/calls"}, allow_redirects=False)
    assert ok.status == 303 and ok.headers["Location"] == "/calls"
    cookie = ok.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert (await c.get("/api/live")).status == 200  # the cookie jar carries it now
    away = await c.post("/login", data={"token": TOKEN, "next": "//evil.example/x"},
                        allow_redirects=False)
    assert away.headers["Location"] == "/"
    out = await c.post("/logout", allow_redirects=False)
    assert out.status == 303
    assert (await c.get("/api/live")).status == 401


def test_a_token_is_made_once_kept_private_and_a_configured_one_wins(tmp_path: Path) -> None:
    path = tmp_path / "web-token"
    token, made = auth.load_or_create_token(None, path)
    assert made and len(token) >= 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert auth.load_or_create_token(None, path) == (token, False)
    assert auth.load_or_create_token("mine", path) == ("mine", False)


# --------------------------------------------------------------------- pages

async def test_live_calls_show_state_and_hide_a_redacting_tenants_caller(
        client: Callable[..., Any]) -> None:
    techstore, healthplus = a_call(), a_call("healthplus")
    c = await client(live=[techstore, healthplus])
    calls = (await (await c.get("/api/live", headers=BEARER)).json())["calls"]
    assert [(x["tenant"], x["number"], x["state"], x["caller"]) for x in calls] == [
        ("techstore", "18005551234", "listening", "+15551234567"),
        ("healthplus", "100", "listening", "[redacted]")]
    page = await (await c.get("/", headers=BEARER)).text()
    assert "+15551234567" in page and page.count("listening") == 2


async def test_history_search_filters_and_refuses_bad_input(
        client: Callable[..., Any], history: Callable[..., HistoryReader]) -> None:
    old = a_call(started_at=time.time() - 3 * 86400)
    reader = history(a_call(), a_call("edulearn", "caller hung up"), old)
    c = await client(history=reader)

    async def ids(query: str) -> int:
        page = await (await c.get(f"/calls{query}", headers=BEARER)).text()
        return page.count("<tr data-id=")

    assert await ids("") == 3
    assert await ids("?tenant=edulearn") == 1
    assert await ids("?outcome=caller_hung_up") == 1
    assert await ids("?caller=%2B15551234567&tenant=techstore") == 2
    assert await ids("?number=18005559999") == 1
    day = time.strftime("%Y-%m-%d", time.gmtime(old.started_at))
    assert await ids(f"?date={day}") == 1
    for bad, says in (("?date=yesterday", "not YYYY-MM-DD"), ("?tenant=acme", "unknown tenant"),
                      ("?outcome=won", "unknown outcome"), ("?number=1800'--", "digits")):
        response = await c.get(f"/calls{bad}", headers=BEARER)
        assert response.status == 400 and says in await response.text(), bad


async def test_a_calls_page_shows_its_record(
        client: Callable[..., Any], history: Callable[..., HistoryReader]) -> None:
    c = await client(history=history(a_call()))
    (row,) = history().recent()
    page = await (await c.get(f"/calls/{row['id']}", headers=BEARER)).text()
    assert "where is my order 12345" in page and "Order 1 2 3 4 5 has shipped." in page
    assert "order_status -&gt; ok" in page  # the tool call, escaped
    assert page.count('class="bar caller"') == 1 and page.count('class="bar agent"') == 2
    assert 'class="mark barge-in"' in page
    assert (await c.get("/calls/999", headers=BEARER)).status == 404
    data = await (await c.get(f"/api/calls/{row['id']}", headers=BEARER)).json()
    assert data["timeline"]["turns"][0]["response_s"] == pytest.approx(0.4)


async def test_pages_work_with_history_off(client: Callable[..., Any]) -> None:
    c = await client(history=None)
    for path in ("/calls", "/latency"):
        response = await c.get(path, headers=BEARER)
        assert response.status == 200 and "history is off" in await response.text()


async def test_the_latency_page_bins_each_tenants_response_times(
        client: Callable[..., Any], history: Callable[..., HistoryReader]) -> None:
    c = await client(history=history(a_call(), a_call()))
    page = await (await c.get("/latency", headers=BEARER)).text()
    assert 'id="latency-techstore" data-n="2"' in page
    assert 'id="latency-healthplus" data-n="0"' in page
    assert 'data-count="2"' in page  # both 0.4 s responses in the 0.4-0.6 s bin


# ------------------------------------------------------------------ timeline

def test_the_timeline_puts_wall_and_media_clock_stamps_on_one_axis() -> None:
    row = stored_form(a_call(), "ari", redact_caller=False) | {"id": 1}
    line = timeline.build(row)
    spans = [(b.lane, round(b.start, 1), round(b.end, 1)) for b in line.bars]
    assert spans == [("agent", 0.5, 3.0), ("caller", 4.0, 6.0), ("agent", 6.4, 9.0)]
    assert [(m.kind, round(m.at, 1)) for m in line.marks] == [("barge-in", 8.0)]
    (turn,) = line.turns
    # the transcript and the reply were ready before the turn was decided (speculation):
    # hidden, they count 0; first audio 0.2 s after the decision
    assert turn.stages == pytest.approx({"end_of_turn": 0.2, "stt": 0.0, "reply": 0.0,
                                         "tts_first_audio": 0.2}, abs=0.002)
    assert turn.response_s == pytest.approx(0.4) and turn.tools == ["order_status -> ok"]
    assert line.duration == pytest.approx(12.0)
