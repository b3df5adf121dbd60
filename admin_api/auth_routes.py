"""Sign in, sign out, who am I, change my password."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field

from admin_api.api import ANY_USER, Api, ApiRequest, client_address
from admin_api.models import Password, Strict, UserOut
from admin_api.problems import Problem
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
    wait = services.login_throttle.retry_after(account, address, now)
    if wait > 0:
        raise Problem(429, "too many failed sign-ins; try again later", headers={"Retry-After": str(math.ceil(wait))})
    found = await services.users.credentials(account)
    ok = await services.passwords.verify(body.password, found[1] if found else None)
    if not found or not ok or not found[0].is_active:
        services.login_throttle.record_failure(account, address, services.clock())
        raise Problem(401, "e-mail or password is wrong, or the account is deactivated")
    user = found[0]
    services.login_throttle.record_success(account)
    await services.users.record_login(user.id)
    token, claims = services.tokens.issue(user.id, user.roles, services.clock())
    return TokenOut(access_token=token, expires_in=claims.expires_at - claims.issued_at)


@api.route("POST", "/api/auth/logout", summary="Revoke the token this request carries", tag="auth", roles=ANY_USER)
async def logout(req: ApiRequest) -> None:
    claims = req.user.claims
    await req.services.users.revoke_token(claims.jti, claims.user_id, datetime.fromtimestamp(claims.expires_at, UTC))


@api.route("GET", "/api/auth/me", summary="The signed-in user", tag="auth", roles=ANY_USER, response=UserOut)
async def me(req: ApiRequest) -> UserOut:
    return UserOut.of(await req.services.users.get(req.user.user_id))


@api.route(
    "POST", "/api/auth/password", summary="Change my password", tag="auth", roles=ANY_USER, body=PasswordChangeBody
)
async def change_password(req: ApiRequest) -> None:
    """Other tokens stay valid until they expire; sign out of them explicitly if they may be compromised."""
    services = req.services
    user = await services.users.get(req.user.user_id)
    found = await services.users.credentials(user.email)
    if found is None or not await services.passwords.verify(req.body.current_password, found[1]):
        raise Problem(
            422, "current_password: is wrong", errors=[{"loc": ["body", "current_password"], "msg": "is wrong"}]
        )
    new_hash = await services.passwords.hash(req.body.new_password)
    await services.users.update(req.actor, user.id, {"password_hash": new_hash, "must_change_password": False})
