"""The simulator's telephony credentials (agents' SIP identities) and their WebRTC login tokens (JWT)."""

from __future__ import annotations

import secrets
import time
import uuid
from typing import Any

import jwt
from aiohttp import web

from sim.wire import error, iso


class Credentials:
    """``/v2/telephony_credentials``: create, read, delete, and mint a login token."""

    def __init__(self) -> None:
        self.by_id: dict[str, dict[str, Any]] = {}
        self.token_secret = secrets.token_bytes(32)
        self.created = 0

    def by_username(self, sip_username: str) -> dict[str, Any] | None:
        return next((c for c in self.by_id.values() if c["sip_username"] == sip_username), None)

    def __len__(self) -> int:
        return len(self.by_id)

    def mount(self, app: web.Application) -> None:
        app.router.add_post("/v2/telephony_credentials", self.create_credential)
        app.router.add_get("/v2/telephony_credentials/{id}", self.get_credential)
        app.router.add_delete("/v2/telephony_credentials/{id}", self.delete_credential)
        app.router.add_post("/v2/telephony_credentials/{id}/token", self.credential_token)

    async def create_credential(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            connection_id = body["connection_id"]
            if not isinstance(connection_id, str) or not connection_id:
                raise ValueError
        except (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError):
            return error(422, "10004", "Missing required parameter", "connection_id is required", "/connection_id")
        now = iso(time.time())
        credential = {
            "id": str(uuid.uuid4()), "name": body.get("name"), "tag": body.get("tag"),
            "sip_username": "gencred" + secrets.token_hex(10), "sip_password": secrets.token_hex(16),
            "resource_id": f"connection:{connection_id}", "expired": False, "expires_at": body.get("expires_at"),
            "created_at": now, "updated_at": now, "record_type": "credential",
        }  # fmt: skip
        self.by_id[credential["id"]] = credential
        self.created += 1
        return web.json_response({"data": credential})

    async def get_credential(self, request: web.Request) -> web.Response:
        credential = self.by_id.get(request.match_info["id"])
        if credential is None:
            return error(404, "10005", "Resource not found", "No such credential.")
        return web.json_response({"data": credential})

    async def delete_credential(self, request: web.Request) -> web.Response:
        credential = self.by_id.pop(request.match_info["id"], None)
        if credential is None:
            return error(404, "10005", "Resource not found", "No such credential.")
        return web.json_response({"data": credential})

    async def credential_token(self, request: web.Request) -> web.Response:
        credential = self.by_id.get(request.match_info["id"])
        if credential is None:
            return error(404, "10005", "Resource not found", "No such credential.")
        now = int(time.time())
        token = jwt.encode({"sub": credential["sip_username"], "iat": now, "exp": now + 86_400}, self.token_secret)
        return web.Response(text=token, content_type="text/plain")
