"""The console's pages as HTTP (headers, files), and the supervisor websocket as a program sees it: who may
connect, what it pushes, and hostile frames refused one by one without closing the dashboard."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
import websockets

from console_web.pages import STATIC
from crm.roles import Role
from tests.conftest import AppFactory, login


async def test_pages_and_their_files_are_served_with_a_strict_policy(make_client: AppFactory, role_users: Any) -> None:
    client = await make_client(telephony={"sandbox": True})
    home = await client.get("/", allow_redirects=False)
    assert home.status == 302
    assert home.headers["Location"] == "/console"
    for path in ("/console", "/supervisor", "/static/agent.js", "/static/pivotal.css", "/static/telnyx-shim.js"):
        response = await client.get(path)
        assert response.status == 200, path
        policy = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy, "no inline script, no other origin in sandbox mode"
        assert "connect-src 'self' ws://127.0.0.1:" in policy, "the sandbox softphone socket, nothing else"
        assert "frame-ancestors 'none'" in policy
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert (await client.get("/static/../pivotal.css")).status == 404
    assert (await client.get("/static/nothing.js")).status == 404


async def test_outside_sandbox_the_sdk_and_telnyx_are_allowed(make_client: AppFactory, role_users: Any) -> None:
    client = await make_client(telephony={"sandbox": False, "webrtc_sdk_url": "https://cdn.example/webrtc.js"})
    policy = (await client.get("/console")).headers["Content-Security-Policy"]
    assert "script-src 'self' https://cdn.example;" in policy
    assert "connect-src 'self' wss://rtc.telnyx.com;" in policy


def test_every_page_names_only_files_that_exist() -> None:
    for page in ("agent.html", "supervisor.html"):
        html = (STATIC / page).read_text()
        assert "style=" not in html, "inline styles break the Content-Security-Policy"
        assert "<script>" not in html, "inline scripts break the Content-Security-Policy"
        for name in re.findall(r'(?:src|href)="/static/([^"]+)"', html):
            assert (STATIC / name).exists(), name


async def _socket(client: Any, token: str) -> Any:
    url = str(client.make_url("/ws/supervisor")).replace("http://", "ws://")
    return await websockets.connect(url, subprotocols=["pivotal.v1", f"bearer.{token}"])  # type: ignore[list-item]


async def _next(ws: Any, kind: str) -> dict[str, Any]:
    async with asyncio.timeout(5):
        while True:
            frame: dict[str, Any] = json.loads(await ws.recv())
            if frame["type"] == kind:
                return frame


async def test_the_supervisor_socket_admits_supervisors_and_refuses_bad_frames(
    make_client: AppFactory, role_users: dict[Role, int]
) -> None:
    client = await make_client(telephony={"sandbox": True})
    for role in (Role.AGENT, Role.CLIENT):
        with pytest.raises(websockets.InvalidStatus) as refused:
            await _socket(client, await login(client, f"{role}@test.example"))
        assert refused.value.response.status_code == 401
    with pytest.raises(websockets.InvalidStatus):
        await _socket(client, "not-a-token")

    async with await _socket(client, await login(client, "supervisor@test.example")) as ws:
        snapshot = await _next(ws, "snapshot")
        assert snapshot["version"] == 1
        assert snapshot["agents"] == []
        assert isinstance(snapshot["now"], int)
        cases = [
            ("not json", "bad_json"),
            ("[1, 2]", "bad_json"),
            ('{"id": "a"}', "bad_frame"),
            ('{"type": "drop_tables", "id": "b"}', "unknown_type"),
            ('{"type": "force_pause", "id": "c"}', "bad_frame"),
            ('{"type": "force_pause", "id": "d", "user_id": -4}', "bad_frame"),
            ('{"type": "force_pause", "id": "e", "user_id": 1, "reason": "Robert\'); DROP"}', "bad_frame"),
            ('{"type": "force_logout", "id": "f", "user_id": 1, "extra": 1}', "bad_frame"),
            ('{"type": "force_pause", "id": "g", "user_id": 424242}', "not_logged_in"),
            ("x" * 5000, "too_large"),
        ]
        for text, code in cases:
            await ws.send(text)
            error = await _next(ws, "error")
            assert error["code"] == code, (text[:40], error)
        await ws.send('{"type": "ping", "id": "p"}')
        assert (await _next(ws, "pong"))["id"] == "p", "the dashboard is still connected"
        campaigns = await _next(ws, "campaigns")
        assert campaigns["campaigns"] == []


def _contrast(a: str, b: str) -> float:
    def luminance(colour: str) -> float:
        channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    light, dark = sorted((luminance(a), luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_text_colours_meet_wcag_aa_contrast_in_both_themes(theme: str) -> None:
    css = (STATIC / "pivotal.css").read_text()
    light_block = css[css.index(":root {") : css.index("}", css.index(":root {"))]
    dark_start = css.index(':root[data-theme="dark"] {')
    block = light_block if theme == "light" else css[dark_start : css.index("}", dark_start)]
    colours = dict(re.findall(r"--([a-z-]+):\s*(#[0-9a-fA-F]{6})", block))
    pairs = [("ink", "bg"), ("ink", "panel"), ("muted", "panel"), ("muted", "bg"), ("bad", "panel"), ("blue", "panel"),
             ("chip-ready-ink", "chip-ready"), ("chip-call-ink", "chip-call"), ("chip-wrap-ink", "chip-wrap"),
             ("chip-paused-ink", "chip-paused"), ("chip-offline-ink", "chip-offline")]  # fmt: skip
    button_text = "#ffffff" if theme == "light" else None  # dark theme: buttons use dark text on the colour
    for text, background in pairs:
        assert _contrast(colours[text], colours[background]) >= 4.5, (theme, text, background)
    if button_text:
        for background in ("blue", "teal", "blue-strong"):
            assert _contrast(button_text, colours[background]) >= 4.5, (theme, "white on", background)
