"""Telephony connections (admin only; secrets write-only) and the agent's softphone configuration."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from admin_api.api import Api, ApiRequest
from admin_api.models import Strict
from admin_api.problems import Problem
from crm.roles import Role
from dialer import connections
from dialer.carrier import CarrierError
from dialer.connections import TelephonyError

api = Api()
ADMIN = {Role.ADMIN}

PublicKey = Field(None, min_length=44, max_length=44, description="Base64 of the 32-byte Ed25519 webhook key")


class ConnectionIn(Strict):
    name: str = Field(min_length=1, max_length=200)
    connection_id: str = Field(min_length=1, max_length=200, description="Telnyx Call Control App id")
    credential_connection_id: str | None = Field(None, max_length=200, description="for agents' WebRTC legs")
    api_key: str | None = Field(None, min_length=1, max_length=500, description="write-only; stored encrypted")
    public_key: str | None = PublicKey
    max_channels: int | None = Field(None, ge=1, le=100_000)
    max_dials_per_second: int = Field(30, ge=1, le=1000)
    is_default: bool = False
    is_active: bool = True


class ConnectionPatch(Strict):
    name: str | None = Field(None, min_length=1, max_length=200)
    connection_id: str | None = Field(None, min_length=1, max_length=200)
    credential_connection_id: str | None = Field(None, max_length=200)
    api_key: str | None = Field(None, max_length=500, description="write-only; empty string removes it")
    public_key: str | None = PublicKey
    max_channels: int | None = Field(None, ge=1, le=100_000)
    max_dials_per_second: int | None = Field(None, ge=1, le=1000)
    is_default: bool | None = None
    is_active: bool | None = None


class ConnectionOut(BaseModel):
    id: int
    name: str
    provider: str
    connection_id: str
    credential_connection_id: str | None
    has_api_key: bool = Field(description="the key itself is never returned")
    public_key: str | None
    max_channels: int | None
    max_dials_per_second: int
    is_default: bool
    is_active: bool
    created_at: datetime
    updated_at: datetime


class ConnectionList(BaseModel):
    items: list[ConnectionOut]


class SoftphoneOut(BaseModel):
    connection: str
    sip_username: str
    login_token: str = Field(description="a fresh WebRTC login token (JWT) for @telnyx/webrtc's login_token")
    rtc_url: str | None = Field(None, description="sandbox only: the simulated carrier's softphone websocket")
    sdk_url: str | None = Field(None, description="where the console loads @telnyx/webrtc from (none in sandbox)")


def _problem(exc: TelephonyError) -> Problem:
    return Problem(exc.status, str(exc))


def _out(connection: connections.Connection) -> ConnectionOut:
    return ConnectionOut.model_validate(connection, from_attributes=True)


def _fields(body: BaseModel) -> dict[str, Any]:
    given = body.model_dump(exclude_unset=True)
    for name in ("name", "connection_id", "max_dials_per_second", "is_default", "is_active"):
        if name in given and given[name] is None:
            raise Problem(422, f"{name}: cannot be null", errors=[{"loc": ["body", name], "msg": "cannot be null"}])
    return given


@api.route("GET", "/api/telephony/connections", summary="Telephony connections", tag="telephony", roles=ADMIN,
           response=ConnectionList)  # fmt: skip
async def list_connections(req: ApiRequest) -> ConnectionList:
    return ConnectionList(items=[_out(c) for c in await connections.list_connections(req.services.pool)])


@api.route("POST", "/api/telephony/connections", summary="Add a telephony connection", tag="telephony",
           roles=ADMIN, body=ConnectionIn, response=ConnectionOut, status=201)  # fmt: skip
async def create_connection(req: ApiRequest) -> ConnectionOut:
    try:
        created = await connections.create(req.services.pool, req.actor, req.services.sealer, _fields(req.body))
    except TelephonyError as exc:
        raise _problem(exc) from None
    return _out(created)


@api.route("GET", "/api/telephony/connections/{connectionId}", summary="A telephony connection", tag="telephony",
           roles=ADMIN, response=ConnectionOut)  # fmt: skip
async def get_connection(req: ApiRequest) -> ConnectionOut:
    try:
        return _out(await connections.get(req.services.pool, req.path_int("connectionId")))
    except TelephonyError as exc:
        raise _problem(exc) from None


@api.route("PATCH", "/api/telephony/connections/{connectionId}", summary="Change a telephony connection",
           tag="telephony", roles=ADMIN, body=ConnectionPatch, response=ConnectionOut)  # fmt: skip
async def update_connection(req: ApiRequest) -> ConnectionOut:
    try:
        updated = await connections.update(
            req.services.pool, req.actor, req.services.sealer, req.path_int("connectionId"), _fields(req.body)
        )
    except TelephonyError as exc:
        raise _problem(exc) from None
    return _out(updated)


@api.route("DELETE", "/api/telephony/connections/{connectionId}", summary="Delete a telephony connection (soft)",
           tag="telephony", roles=ADMIN)  # fmt: skip
async def delete_connection(req: ApiRequest) -> None:
    try:
        await connections.delete(req.services.pool, req.actor, req.path_int("connectionId"))
    except TelephonyError as exc:
        raise _problem(exc) from None


@api.route("GET", "/api/telephony/softphone", summary="The caller's softphone identity and a fresh login token",
           tag="telephony", roles={Role.AGENT, Role.SUPERVISOR, Role.ADMIN}, response=SoftphoneOut)  # fmt: skip
async def softphone(req: ApiRequest) -> SoftphoneOut:
    assert req.principal is not None
    try:
        phone = await req.services.softphones.for_user(req.principal.user_id)
    except TelephonyError as exc:
        raise _problem(exc) from None
    except CarrierError as exc:
        raise Problem(502, f"the carrier refused: {exc}") from None
    return SoftphoneOut(connection=phone.connection, sip_username=phone.sip_username, login_token=phone.login_token,
                        rtc_url=req.services.sandbox_rtc_url,
                        sdk_url=None if req.services.sandbox_rtc_url else req.services.webrtc_sdk_url)  # fmt: skip
