"""The dashboard's pages and JSON: live calls, call history, one call, latency.

History reads are blocking SQLAlchemy calls, so they run on a thread: the
event loop that serves these pages also paces every call's audio.
"""

from __future__ import annotations

import asyncio
import datetime
import re
import time
from collections.abc import Callable
from dataclasses import asdict
from importlib.resources import files
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from voice_agent.calls.record import CallRecord
from voice_agent.config import Settings
from voice_agent.dashboard import auth, timeline
from voice_agent.history import HistoryReader, history_url
from voice_agent.tenants import TenantRegistry

#: What a dialled number may look like (an extension or an E.164 number).
NUMBER = re.compile(r"[0-9+*#]{1,32}")
OUTCOMES = ("completed", "transferred", "caller_hung_up", "interrupted", "error")
#: Calls a history page lists, and calls the latency page reads per tenant.
PAGE_CALLS = 200
LATENCY_CALLS = 1000
#: Response-time histogram bins, seconds (the last one is open).
BINS = (0.0, 0.4, 0.6, 0.8, 1.0, 1.5, 2.0, 3.0)
SECURITY_HEADERS = {"Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
                    "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
                    "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}

_templates = jinja2.Environment(
    loader=jinja2.PackageLoader("voice_agent.dashboard", "templates"),
    autoescape=jinja2.select_autoescape(default=True), undefined=jinja2.StrictUndefined)


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "–"
    return datetime.datetime.fromtimestamp(stamp, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")


_templates.filters["when"] = _when


class Dashboard:
    """The pages of one process: ``live`` gives its live calls' records, ``history``
    reads stored calls (``None``: history is off)."""

    def __init__(self, *, token: str, tenants: TenantRegistry,
                 live: Callable[[], list[CallRecord]], history: HistoryReader | None,
                 clock: Callable[[], float] = time.time) -> None:
        self.token = token
        self.tenants = tenants
        self.live = live
        self.history = history
        self.clock = clock
        self._redact = {t.name for t in tenants if t.redact_caller}

    def install(self, app: web.Application) -> None:
        """Add the token check, the routes and the static assets to ``app``."""
        app.middlewares.append(auth.middleware(self.token))
        app.on_response_prepare.append(_secure)
        app.router.add_get("/", self.live_page)
        app.router.add_get("/api/live", self.live_json)
        app.router.add_get("/calls", self.calls_page)
        app.router.add_get(r"/calls/{id:\d+}", self.call_page)
        app.router.add_get(r"/api/calls/{id:\d+}", self.call_json)
        app.router.add_get("/latency", self.latency_page)
        app.router.add_get("/login", self.login_page)
        app.router.add_post("/login", self.login)
        app.router.add_post("/logout", self.logout)
        app.router.add_static("/static/", str(files("voice_agent.dashboard") / "static"))

    # ------------------------------------------------------------------ live

    def live_calls(self) -> list[dict[str, Any]]:
        now = self.clock()
        return [{"session_id": r.session_id, "tenant": r.tenant, "number": r.number,
                 "caller": "[redacted]" if r.tenant in self._redact else r.caller,
                 "state": r.transitions[-1][1].value if r.transitions else "starting",
                 "duration_s": round(now - r.started_at, 1),
                 "turns": sum("reply" in t for t in r.turns)}
                for r in sorted(self.live(), key=lambda r: r.started_at)]

    async def live_page(self, request: web.Request) -> web.Response:
        return _page("live.html", calls=self.live_calls())

    async def live_json(self, request: web.Request) -> web.Response:
        return web.json_response({"calls": self.live_calls()})

    # --------------------------------------------------------------- history

    async def calls_page(self, request: web.Request) -> web.Response:
        query = _search(request, [t.name for t in self.tenants])
        rows = await self._read(lambda h: h.recent(PAGE_CALLS, **query.where, since=query.since,
                                                   until=query.until, number=query.number))
        return _page("calls.html", rows=rows, form=query.form, tenants=self.tenants.names,
                     outcomes=OUTCOMES, history_on=self.history is not None, limit=PAGE_CALLS)

    async def call_page(self, request: web.Request) -> web.Response:
        row = await self._row(request)
        return _page("call.html", row=row, timeline=timeline.build(row), stages=timeline.STAGES)

    async def call_json(self, request: web.Request) -> web.Response:
        row = await self._row(request)
        return web.json_response({"call": row, "timeline": asdict(timeline.build(row))})

    async def latency_page(self, request: web.Request) -> web.Response:
        histograms = {}
        for tenant in self.tenants.names:
            # reading and building the timelines both run on the thread: thousands of
            # rows would hold the event loop (and every call's audio) for a second
            histograms[tenant] = await asyncio.to_thread(self._tenant_histogram, tenant)
        return _page("latency.html", histograms=histograms, bins=BINS,
                     history_on=self.history is not None)

    def _tenant_histogram(self, tenant: str) -> dict[str, Any]:
        rows = self.history.recent(LATENCY_CALLS, tenant=tenant) if self.history else []
        return _histogram([turn.response_s for row in rows for turn in timeline.build(row).turns
                           if turn.response_s is not None])

    async def _row(self, request: web.Request) -> dict[str, Any]:
        call_id = int(request.match_info["id"])
        row = await asyncio.to_thread(self.history.get, call_id) if self.history else None
        if row is None:
            raise web.HTTPNotFound(text=f"no stored call {call_id}")
        return row

    async def _read(self, read: Callable[[HistoryReader], list[dict[str, Any]]]
                    ) -> list[dict[str, Any]]:
        if self.history is None:
            return []
        history = self.history
        return await asyncio.to_thread(read, history)

    # ----------------------------------------------------------------- login

    async def login_page(self, request: web.Request) -> web.Response:
        return _page("login.html", next=auth.safe_next(request.query.get("next")), wrong=False)

    async def login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        target = str(form.get("next", "/"))
        response = auth.login_response(self.token, str(form.get("token", "")), target)
        if response is None:
            auth.refused(request)
            return _page("login.html", next=auth.safe_next(target), wrong=True, status=401)
        raise response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        response = web.HTTPSeeOther("/login")
        response.del_cookie(auth.COOKIE, path="/")
        raise response


class _Search:
    def __init__(self) -> None:
        self.where: dict[str, str] = {}
        self.since: float | None = None
        self.until: float | None = None
        self.number: str | None = None
        self.form: dict[str, str] = {}


def _search(request: web.Request, tenants: list[str]) -> _Search:
    """The history filters from the query string; a malformed one is a 400 that says why."""
    search = _Search()
    query = request.query
    fields = ("tenant", "number", "caller", "outcome", "date")
    search.form = {key: query.get(key, "").strip() for key in fields}
    tenant, number, caller, outcome, day = (search.form[k] for k in fields)
    if tenant and tenant not in tenants:
        raise web.HTTPBadRequest(text=f"unknown tenant {tenant!r}; known: {', '.join(tenants)}")
    if outcome and outcome not in OUTCOMES:
        raise web.HTTPBadRequest(text=f"unknown outcome {outcome!r}; known: {', '.join(OUTCOMES)}")
    if len(caller) > 64:
        raise web.HTTPBadRequest(text="caller: at most 64 characters")
    if number and not NUMBER.fullmatch(number):
        raise web.HTTPBadRequest(text=f"number {number!r}: digits, + * # only, at most 32")
    search.number = number or None
    if day:
        try:
            start = datetime.datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=datetime.UTC)
        except ValueError:
            raise web.HTTPBadRequest(text=f"date {day!r} is not YYYY-MM-DD") from None
        search.since = start.timestamp()
        search.until = search.since + 86400
    search.where = {k: v for k, v in (("tenant", tenant), ("caller", caller),
                                      ("outcome", outcome)) if v}
    return search


def _histogram(values: list[float]) -> dict[str, Any]:
    counts = [0] * len(BINS)
    for value in values:
        index = max(i for i, edge in enumerate(BINS) if value >= edge)
        counts[index] += 1
    ordered = sorted(values)
    return {"counts": counts, "n": len(values),
            "p50": ordered[len(ordered) // 2] if ordered else None,
            "p95": ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))] if ordered else None}


def _page(template: str, *, status: int = 200, **context: Any) -> web.Response:
    return web.Response(text=_templates.get_template(template).render(**context),
                        content_type="text/html", status=status)


async def _secure(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


def for_service(settings: Settings, tenants: TenantRegistry,
                live: Callable[[], list[CallRecord]]) -> tuple[Dashboard, bool]:
    """The dashboard of a ``serve`` process, and whether its token was just made
    (unset ``WEB_TOKEN``: a random one, kept in ``DATA_DIR/web-token``)."""
    configured = settings.web_token.get_secret_value() if settings.web_token else None
    token, made = auth.load_or_create_token(configured, token_path(settings))
    url = history_url(settings)
    return Dashboard(token=token, tenants=tenants, live=live,
                     history=HistoryReader(url) if url else None), made


def token_path(settings: Settings) -> Path:
    """Where a generated dashboard token is kept (mode 0600)."""
    return settings.data_directory() / "web-token"
