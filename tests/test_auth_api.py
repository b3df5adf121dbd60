"""Sign-in, tokens, sign-out, throttling and password change over real HTTP against real PostgreSQL."""

from __future__ import annotations

from typing import Any

import asyncpg
import jwt

from crm.roles import Role
from tests.conftest import JWT_SECRET, PASSWORD, AppFactory, bearer, login


async def test_login_returns_a_bearer_token_with_roles(client: Any) -> None:
    """The token is a JWT with sub, roles, the legacy role, iat, exp and jti; expires_in matches."""
    response = await client.post("/api/auth/login", json={"email": "Admin@Test.Example ", "password": PASSWORD})
    assert response.status == 200
    body = await response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 8 * 3600
    claims = jwt.decode(body["access_token"], JWT_SECRET, algorithms=["HS256"])
    assert claims["roles"] == ["admin"]
    assert claims["role"] == "admin"
    assert claims["exp"] - claims["iat"] == body["expires_in"]
    assert {"sub", "jti"} <= claims.keys()


async def test_wrong_password_and_unknown_account_look_the_same(client: Any) -> None:
    """401 problem+json, same detail, whether the account exists or not."""
    details = []
    for email in ("admin@test.example", "nobody@test.example"):
        response = await client.post("/api/auth/login", json={"email": email, "password": "wrong password"})
        assert response.status == 401
        assert response.content_type == "application/problem+json"
        details.append((await response.json())["detail"])
    assert details[0] == details[1]


async def test_failed_logins_are_throttled_per_account(make_client: AppFactory, role_users: Any) -> None:
    """After the configured failures the account gets 429 with Retry-After, even with the right password."""
    client = await make_client(auth={"login_max_failures_per_account": 3})
    for _ in range(3):
        response = await client.post("/api/auth/login", json={"email": "agent@test.example", "password": "nope-nope"})
        assert response.status == 401
    response = await client.post("/api/auth/login", json={"email": "agent@test.example", "password": PASSWORD})
    assert response.status == 429
    assert int(response.headers["Retry-After"]) > 0
    assert (await response.json())["status"] == 429
    # Another account from the same address is not locked by this one's failures.
    await login(client, "supervisor@test.example")


async def test_failed_logins_are_throttled_per_address(make_client: AppFactory, role_users: Any) -> None:
    """Spraying many accounts from one address hits the per-address limit."""
    client = await make_client(auth={"login_max_failures_per_address": 4})
    for role in list(Role)[:4]:
        response = await client.post("/api/auth/login", json={"email": f"{role}@test.example", "password": "x" * 9})
        assert response.status == 401
    response = await client.post("/api/auth/login", json={"email": "client@test.example", "password": PASSWORD})
    assert response.status == 429


async def test_logout_revokes_the_token(client: Any) -> None:
    """After logout the same token is refused with 401; a fresh login works."""
    token = await login(client, "admin@test.example")
    assert (await client.get("/api/auth/me", headers=bearer(token))).status == 200
    assert (await client.post("/api/auth/logout", headers=bearer(token))).status == 204
    response = await client.get("/api/auth/me", headers=bearer(token))
    assert response.status == 401
    assert "revoked" in (await response.json())["detail"]
    assert (await client.get("/api/auth/me", headers=bearer(await login(client, "admin@test.example")))).status == 200


async def test_expired_and_malformed_tokens(make_client: AppFactory, role_users: Any) -> None:
    """A token past exp (by the app's clock) and garbage tokens get 401 with WWW-Authenticate."""
    now = [1_000_000.0]
    client = await make_client(clock=lambda: now[0])
    token = await login(client, "admin@test.example")
    assert (await client.get("/api/auth/me", headers=bearer(token))).status == 200
    now[0] += 8 * 3600
    response = await client.get("/api/auth/me", headers=bearer(token))
    assert response.status == 401
    assert "expired" in (await response.json())["detail"]
    for header in ("Bearer", "Bearer abc.def.ghi", "Basic Zm9vOmJhcg==", "token"):
        response = await client.get("/api/auth/me", headers={"Authorization": header})
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_deactivated_user_loses_access_at_once(client: Any, tokens: dict[Role, str]) -> None:
    """Deactivation cuts off existing tokens and blocks sign-in."""
    me = await (await client.get("/api/auth/me", headers=bearer(tokens[Role.AGENT]))).json()
    response = await client.delete(f"/api/users/{me['id']}", headers=bearer(tokens[Role.ADMIN]))
    assert response.status == 200
    assert (await response.json())["is_active"] is False
    assert (await client.get("/api/auth/me", headers=bearer(tokens[Role.AGENT]))).status == 401
    response = await client.post("/api/auth/login", json={"email": "agent@test.example", "password": PASSWORD})
    assert response.status == 401


async def test_role_changes_apply_to_existing_tokens(client: Any, tokens: dict[Role, str]) -> None:
    """Authorisation uses the roles held now, not those in the token."""
    agent = await (await client.get("/api/auth/me", headers=bearer(tokens[Role.AGENT]))).json()
    assert (await client.get("/api/users", headers=bearer(tokens[Role.AGENT]))).status == 403
    response = await client.post(
        f"/api/users/{agent['id']}/roles", json={"role": "admin"}, headers=bearer(tokens[Role.ADMIN])
    )
    assert response.status == 200
    assert (await client.get("/api/users", headers=bearer(tokens[Role.AGENT]))).status == 200


async def test_change_password(client: Any, tokens: dict[Role, str], pool: asyncpg.Pool) -> None:
    """The current password is required; afterwards only the new one signs in."""
    headers = bearer(tokens[Role.AGENT])
    wrong = await client.post(
        "/api/auth/password", json={"current_password": "nope", "new_password": "brand new secret"}, headers=headers
    )
    assert wrong.status == 422
    short = await client.post(
        "/api/auth/password", json={"current_password": PASSWORD, "new_password": "short"}, headers=headers
    )
    assert short.status == 422
    assert (await short.json())["errors"][0]["loc"] == ["body", "new_password"]
    ok = await client.post(
        "/api/auth/password", json={"current_password": PASSWORD, "new_password": "brand new secret"}, headers=headers
    )
    assert ok.status == 200
    fresh = (await ok.json())["access_token"]
    assert (await client.get("/api/auth/me", headers=bearer(fresh))).status == 200
    old = await client.get("/api/auth/me", headers=headers)
    assert old.status == 401, "tokens issued before the change stop working"
    await login(client, "agent@test.example", "brand new secret")
    response = await client.post("/api/auth/login", json={"email": "agent@test.example", "password": PASSWORD})
    assert response.status == 401
    stored = await pool.fetchval("SELECT password_hash FROM users WHERE email = 'agent@test.example'")
    assert stored.startswith("$2")


async def test_concurrent_guesses_are_throttled(make_client: AppFactory, role_users: Any) -> None:
    """Guesses sent all at once cannot all pass the throttle while bcrypt runs."""
    import asyncio

    client = await make_client(auth={"login_max_failures_per_account": 3})
    body = {"email": "agent@test.example", "password": "wrong guess"}
    responses = await asyncio.gather(*(client.post("/api/auth/login", json=body) for _ in range(12)))
    statuses = sorted(r.status for r in responses)
    assert statuses.count(401) == 3
    assert statuses.count(429) == 9


async def test_forwarded_for_cannot_be_spoofed(make_client: AppFactory, role_users: Any) -> None:
    """Behind a trusted proxy the address is the last X-Forwarded-For entry, not what the client wrote first."""
    client = await make_client(auth={"login_max_failures_per_address": 3}, server={"trust_forwarded_for": True})
    statuses = []
    for i in range(5):
        response = await client.post(
            "/api/auth/login",
            json={"email": f"nobody{i}@test.example", "password": "wrong guess"},
            headers={"X-Forwarded-For": f"10.9.9.{i}, 198.51.100.7"},
        )
        statuses.append(response.status)
    assert statuses == [401, 401, 401, 429, 429]


async def test_admin_password_reset_and_reactivation_do_not_revive_old_tokens(
    client: Any, tokens: dict[Role, str]
) -> None:
    """A reset password or a deactivation invalidates every token issued before it, for good."""
    admin = bearer(tokens[Role.ADMIN])
    for role, change in ((Role.AGENT, {"password": "reset by admin"}), (Role.SUPERVISOR, {"is_active": False})):
        user = await (await client.get("/api/auth/me", headers=bearer(tokens[role]))).json()
        assert (await client.patch(f"/api/users/{user['id']}", json=change, headers=admin)).status == 200
        if change.get("is_active") is False:
            assert (
                await client.patch(f"/api/users/{user['id']}", json={"is_active": True}, headers=admin)
            ).status == 200
        response = await client.get("/api/auth/me", headers=bearer(tokens[role]))
        assert response.status == 401, role
    await login(client, "agent@test.example", "reset by admin")
    await login(client, "supervisor@test.example")


async def test_deeply_nested_json_is_400(client: Any) -> None:
    """A body that would blow the parser's recursion limit is a 400, not a 500."""
    response = await client.post("/api/auth/login", data=b"[" * 100_000, headers={"Content-Type": "application/json"})
    assert response.status == 400
