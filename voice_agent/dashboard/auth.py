"""The dashboard's token: a bearer header, or a cookie set by the login form.

Call pages show what callers said, so nothing but ``/metrics`` (counts only),
the login form and the static assets is served without the token. The token is
compared in constant time, the cookie is HttpOnly and SameSite=Strict (no
other site can make the browser use it), and the login form only redirects to
a path on this server.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import quote

from aiohttp import web

log = logging.getLogger(__name__)

COOKIE = "voice_agent_token"
#: Served without the token: Prometheus' counts, the login form, the assets.
OPEN_PATHS = ("/metrics", "/login")
OPEN_PREFIXES = ("/static/",)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def load_or_create_token(configured: str | None, path: Path) -> tuple[str, bool]:
    """The configured token, else the one stored at ``path``, else a new random one
    stored there (mode 0600). Returns the token and whether it was just made."""
    if configured:
        return configured, False
    if path.exists():
        if stored := path.read_text().strip():
            return stored, False
    token = secrets.token_urlsafe(24)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(token + "\n")
    return token, True


def _given(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.cookies.get(COOKIE, "")


def allowed(request: web.Request, token: str) -> bool:
    """Whether the request carries the token (header or cookie)."""
    return hmac.compare_digest(_given(request).encode(), token.encode())


def middleware(token: str) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """Refuse every request without the token: 401 for the JSON API, the login
    form (303) for pages."""
    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES) or allowed(request, token):
            return await handler(request)
        if _given(request):  # a wrong token (none at all is a first visit: not logged)
            refused(request)
        if path.startswith("/api/"):
            raise web.HTTPUnauthorized(text='{"error": "missing or wrong token"}',
                                       content_type="application/json",
                                       headers={"WWW-Authenticate": "Bearer"})
        raise web.HTTPSeeOther(f"/login?next={quote(request.path_qs, safe='')}")
    return check


def refused(request: web.Request) -> None:
    """Log a wrong token: the attempt (path and peer), never what was sent."""
    log.warning("dashboard: wrong token for %s %s from %s", request.method, request.path,
                request.remote)


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path on this server, never another site."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def login_response(token: str, given: str, target: str | None) -> web.StreamResponse | None:
    """After the form: a redirect that sets the cookie, or ``None`` (wrong token)."""
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        return None
    response = web.HTTPSeeOther(safe_next(target))
    response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/")
    return response
