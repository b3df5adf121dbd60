"""The browser pages: the agent console (``/console``), the supervisor dashboard (``/supervisor``) and their
static files (``/static/``), plain HTML, CSS and JavaScript modules with no build step.

Every page goes out with a strict Content-Security-Policy: scripts and styles only from the daemon (and the
WebRTC SDK's origin), connections only to the daemon, the sandbox carrier's softphone socket or Telnyx's
WebRTC gateway. Static files are revalidated on every load (ETag), so an upgrade reaches every agent at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

STATIC = Path(__file__).parent / "static"
PAGES = {"/console": "agent.html", "/supervisor": "supervisor.html"}
TELNYX_RTC = "wss://rtc.telnyx.com"

#: () -> (the sandbox carrier's softphone socket URL or None, the WebRTC SDK's URL): known once the daemon is up.
SoftphoneSources = Callable[[], tuple[str | None, str | None]]


def mount(app: web.Application, sources: SoftphoneSources) -> None:
    for path, name in PAGES.items():
        app.router.add_get(path, _page(name))
    app.router.add_get("/", _home)
    app.router.add_static("/static/", STATIC, append_version=False)
    app.on_response_prepare.append(_security_headers(sources))


def _page(name: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def page(_request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / name, headers={"Cache-Control": "no-cache"})

    return page


async def _home(_request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/console")


def _origin(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None


def _security_headers(sources: SoftphoneSources) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    async def add(request: web.Request, response: web.StreamResponse) -> None:
        path = request.path
        if not (path in PAGES or path.startswith("/static/")):
            return
        rtc_url, sdk_url = sources()
        rtc = _origin(rtc_url)
        sdk = None if rtc else _origin(sdk_url)
        scripts = " ".join(filter(None, ("'self'", sdk)))
        connect = " ".join(filter(None, ("'self'", rtc or TELNYX_RTC)))
        response.headers["Content-Security-Policy"] = (
            f"default-src 'self'; script-src {scripts}; style-src 'self'; connect-src {connect}; "
            "img-src 'self' data:; media-src 'self' blob:; frame-ancestors 'none'; base-uri 'none'; "
            "form-action 'self'; object-src 'none'"
        )
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        if path.startswith("/static/"):
            response.headers["Cache-Control"] = "no-cache"

    return add
