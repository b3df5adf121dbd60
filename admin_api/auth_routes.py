"""Sign in, sign out, who am I, change my password."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field

from admin_api.api import ANY_USER, Api, ApiRequest, client_address
from admin_api.models import Password, Strict, UserOut
from admin_api.problems import Problem
from admin_api.services import Services
from crm.roles import Role
from crm.users import normalise_email

api = Api()


class LoginBody(Strict):
    email: str = Field(min_length=1, max_length=254)
    password: str = Field(min_length=1, max_length=1024)


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int = Field(description="Seconds until the token expires.")


class PasswordChangeBody(Strict):
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: Password


def _throttle(services: Services, account: str, address: str, now: float) -> None:
    wait = services.login_throttle.attempt(account, address, now)
    if wait > 0:
        raise Problem(429, "too many failed sign-ins; try again later", headers={"Retry-After": str(math.ceil(wait))})


def _token(services: Services, user_id: int, roles: Sequence[Role]) -> TokenOut:
    token, claims = services.tokens.issue(user_id, roles, services.clock())
    return TokenOut(access_token=token, expires_in=services.tokens.ttl_s)


@api.route(
    "POST",
    "/api/auth/login",
    summary="Exchange e-mail and password for a bearer token",
    tag="auth",
    roles=None,
    body=LoginBody,
    response=TokenOut,
)
async def login(req: ApiRequest) -> TokenOut:
    """Failed attempts are throttled per account and per client address (429 with Retry-After)."""
    services, body = req.services, req.body
    account = normalise_email(body.email)
    address = client_address(req.request, services.trust_forwarded_for)
    now = services.clock()
    _throttle(services, account, address, now)
    found = await services.users.credentials(account)
    ok = await services.passwords.verify(body.password, found[1] if found else None)
    if not found or not ok or not found[0].is_active:
        raise Problem(401, "e-mail or password is wrong, or the account is deactivated")
    user = found[0]
    services.login_throttle.succeeded(account, address, now)
    await services.users.record_login(user.id)
    return _token(services, user.id, user.roles)


@api.route("POST", "/api/auth/logout", summary="Revoke the token this request carries", tag="auth", roles=ANY_USER)
async def logout(req: ApiRequest) -> None:
    claims = req.user.claims
    await req.services.users.revoke_token(claims.jti, claims.user_id, datetime.fromtimestamp(claims.expires_at, UTC))


@api.route("GET", "/api/auth/me", summary="The signed-in user", tag="auth", roles=ANY_USER, response=UserOut)
async def me(req: ApiRequest) -> UserOut:
    return UserOut.of(await req.services.users.get(req.user.user_id))


@api.route(
    "POST",
    "/api/auth/password",
    summary="Change my password",
    tag="auth",
    roles=ANY_USER,
    body=PasswordChangeBody,
    response=TokenOut,
)
async def change_password(req: ApiRequest) -> TokenOut:
    """Every token issued before the change stops working, this one included; the answer is a fresh token.

    Wrong current passwords count against the same throttle as sign-ins.
    """
    services = req.services
    user = await services.users.get(req.user.user_id)
    account = normalise_email(user.email)
    address = client_address(req.request, services.trust_forwarded_for)
    now = services.clock()
    _throttle(services, account, address, now)
    found = await services.users.credentials(user.email)
    if found is None or not await services.passwords.verify(req.body.current_password, found[1]):
        raise Problem(
            422, "current_password: is wrong", errors=[{"loc": ["body", "current_password"], "msg": "is wrong"}]
        )
    services.login_throttle.succeeded(account, address, now)
    new_hash = await services.passwords.hash(req.body.new_password)
    await services.users.update(req.actor, user.id, {"password_hash": new_hash, "must_change_password": False})
    return _token(services, user.id, user.roles)
