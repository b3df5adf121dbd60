"""Users and roles API: CRUD, pagination, roles round-trip, audit, migrate-roles, API error conventions."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from crm.audit import SYSTEM
from crm.roles import Role
from crm.users import LastAdmin, UserStore
from tests.conftest import bearer, login


async def _create(client: Any, token: str, email: str, roles: list[str], **extra: Any) -> Any:
    response = await client.post(
        "/api/users",
        json={"email": email, "password": "long enough pw", "roles": roles, **extra},
        headers=bearer(token),
    )
    assert response.status == 201, await response.text()
    return await response.json()


async def test_create_read_update_deactivate(client: Any, tokens: dict[Role, str]) -> None:
    """A created user can sign in; updates apply; deactivation keeps the record."""
    admin = bearer(tokens[Role.ADMIN])
    user = await _create(client, tokens[Role.ADMIN], "new.agent@test.example", ["agent", "quality_analyst"])
    assert user["roles"] == ["quality_analyst", "agent"]
    assert user["role"] == "quality_analyst"
    assert "password" not in user
    assert "password_hash" not in user
    await login(client, "new.agent@test.example", "long enough pw")

    read = await (await client.get(f"/api/users/{user['id']}", headers=admin)).json()
    assert read["email"] == "new.agent@test.example"

    response = await client.patch(f"/api/users/{user['id']}", json={"display_name": "Ann Agent"}, headers=admin)
    assert (await response.json())["display_name"] == "Ann Agent"

    response = await client.delete(f"/api/users/{user['id']}", headers=admin)
    body = await response.json()
    assert body["is_active"] is False
    assert body["deactivated_at"] is not None
    listed = await (await client.get("/api/users?limit=500", headers=admin)).json()
    assert user["id"] not in [u["id"] for u in listed["items"]]
    listed = await (await client.get("/api/users?limit=500&include_inactive=true", headers=admin)).json()
    assert user["id"] in [u["id"] for u in listed["items"]]

    response = await client.patch(f"/api/users/{user['id']}", json={"is_active": True}, headers=admin)
    assert (await response.json())["deactivated_at"] is None


async def test_duplicate_email_is_409(client: Any, tokens: dict[Role, str]) -> None:
    """E-mails are unique case-insensitively."""
    response = await client.post(
        "/api/users",
        json={"email": "AGENT@test.example", "password": "long enough pw", "roles": ["agent"]},
        headers=bearer(tokens[Role.ADMIN]),
    )
    assert response.status == 409
    assert response.content_type == "application/problem+json"


async def test_validation_errors_are_422_with_field_details(client: Any, tokens: dict[Role, str]) -> None:
    """Each bad field is named with its location."""
    response = await client.post(
        "/api/users",
        json={"email": "not-an-email", "password": "short", "roles": ["wizard"], "surprise": 1},
        headers=bearer(tokens[Role.ADMIN]),
    )
    assert response.status == 422
    body = await response.json()
    locations = {tuple(error["loc"]) for error in body["errors"]}
    assert {("body", "email"), ("body", "password"), ("body", "roles", 0), ("body", "surprise")} <= locations
    assert body["title"] == "Unprocessable Content"


async def test_invalid_json_is_400_and_wrong_type_415(client: Any, tokens: dict[Role, str]) -> None:
    """Broken JSON and non-JSON bodies get clear problems, never a stack trace."""
    headers = {**bearer(tokens[Role.ADMIN]), "Content-Type": "application/json"}
    response = await client.post("/api/users", data=b'{"email": ', headers=headers)
    assert response.status == 400
    assert "not valid JSON" in (await response.json())["detail"]
    response = await client.post("/api/users", data=b"email=x", headers={**headers, "Content-Type": "text/plain"})
    assert response.status == 415


async def test_body_size_limit_is_413(make_client: Any, role_users: Any) -> None:
    """A body over server.max_body_bytes is refused before it is parsed."""
    client = await make_client(server={"max_body_bytes": 2048})
    token = await login(client, "admin@test.example")
    response = await client.post(
        "/api/users",
        json={"email": "a@b.example", "password": "x" * 10, "roles": ["agent"], "display_name": "y" * 5000},
        headers=bearer(token),
    )
    assert response.status == 413
    assert response.content_type == "application/problem+json"


async def test_unknown_ids_are_404(client: Any, tokens: dict[Role, str]) -> None:
    """Missing, non-numeric and absurd ids are all 404 problems, as are unknown routes."""
    admin = bearer(tokens[Role.ADMIN])
    for path in ("/api/users/999999", "/api/users/abc", "/api/users/99999999999999999999999", "/api/nowhere"):
        response = await client.get(path, headers=admin)
        assert response.status == 404, path
        assert response.content_type == "application/problem+json"
    response = await client.delete("/api/users/1/roles/wizard", headers=admin)
    assert response.status == 404


async def test_pagination_walks_every_user_once(client: Any, tokens: dict[Role, str]) -> None:
    """limit + cursor visits each user exactly once; a forged cursor is 422."""
    admin = bearer(tokens[Role.ADMIN])
    for i in range(6):
        await _create(client, tokens[Role.ADMIN], f"page{i}@test.example", ["agent"])
    seen: list[int] = []
    cursor = None
    while True:
        url = "/api/users?limit=4" + (f"&cursor={cursor}" if cursor else "")
        page = await (await client.get(url, headers=admin)).json()
        assert len(page["items"]) <= 4
        seen += [u["id"] for u in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == len(Role) + 6
    assert (await client.get("/api/users?cursor=bogus!", headers=admin)).status == 422
    assert (await client.get("/api/users?limit=0", headers=admin)).status == 422


async def test_roles_api_round_trip_and_audit(client: Any, tokens: dict[Role, str], pool: asyncpg.Pool) -> None:
    """Add, replace, remove and list roles; each change is in the audit log with who made it."""
    admin_token = tokens[Role.ADMIN]
    admin = bearer(admin_token)
    me = await (await client.get("/api/auth/me", headers=admin)).json()
    user = await _create(client, admin_token, "roles@test.example", ["agent"])
    base = f"/api/users/{user['id']}/roles"

    listed = await (await client.get(base, headers=admin)).json()
    assert [r["role"] for r in listed["roles"]] == ["agent"]
    assert listed["roles"][0]["assigned_by"] == me["id"]
    assert listed["roles"][0]["assigned_by_email"] == "admin@test.example"
    assert listed["roles"][0]["assigned_at"]

    added = await (await client.post(base, json={"role": "supervisor"}, headers=admin)).json()
    assert [r["role"] for r in added["roles"]] == ["supervisor", "agent"]
    again = await (await client.post(base, json={"role": "supervisor"}, headers=admin)).json()
    assert again == added

    replaced = await (await client.put(base, json={"roles": ["agent", "client"]}, headers=admin)).json()
    assert [r["role"] for r in replaced["roles"]] == ["agent", "client"]
    kept = next(r for r in replaced["roles"] if r["role"] == "agent")
    assert kept["assigned_at"] == listed["roles"][0]["assigned_at"]

    removed = await (await client.delete(f"{base}/client", headers=admin)).json()
    assert [r["role"] for r in removed["roles"]] == ["agent"]
    assert (await client.delete(f"{base}/client", headers=admin)).status == 404

    user_now = await (await client.get(f"/api/users/{user['id']}", headers=admin)).json()
    assert user_now["roles"] == ["agent"]
    assert user_now["role"] == "agent"

    log = await (await client.get(f"/api/audit?entity_type=user&entity_id={user['id']}", headers=admin)).json()
    actions = [(e["action"], e["actor_email"]) for e in reversed(log["items"])]
    assert actions == [
        ("user.create", "admin@test.example"),
        ("user.role_add", "admin@test.example"),
        ("user.roles_replace", "admin@test.example"),
        ("user.role_remove", "admin@test.example"),
    ]
    replace = next(e for e in log["items"] if e["action"] == "user.roles_replace")
    assert replace["detail"] == {"added": ["client"], "removed": ["supervisor"], "roles": ["agent", "client"]}
    assert replace["request_id"]
    assert replace["client_ip"]


async def test_admin_cannot_lock_themselves_out(client: Any, tokens: dict[Role, str]) -> None:
    """Removing one's own admin role or deactivating oneself is a 409."""
    admin = bearer(tokens[Role.ADMIN])
    me = await (await client.get("/api/auth/me", headers=admin)).json()
    assert (await client.delete(f"/api/users/{me['id']}/roles/admin", headers=admin)).status == 409
    assert (await client.put(f"/api/users/{me['id']}/roles", json={"roles": []}, headers=admin)).status == 409
    assert (await client.delete(f"/api/users/{me['id']}", headers=admin)).status == 409


async def test_two_admins_demoting_each_other_leave_one_admin(
    client: Any, tokens: dict[Role, str], pool: asyncpg.Pool
) -> None:
    """Concurrent demotions are serialised: one succeeds, the other is refused (403 or 409); one admin remains."""
    import asyncio

    first = await (await client.get("/api/auth/me", headers=bearer(tokens[Role.ADMIN]))).json()
    second = await _create(client, tokens[Role.ADMIN], "admin2@test.example", ["admin"])
    second_token = await login(client, "admin2@test.example", "long enough pw")
    responses = await asyncio.gather(
        client.delete(f"/api/users/{second['id']}/roles/admin", headers=bearer(tokens[Role.ADMIN])),
        client.delete(f"/api/users/{first['id']}/roles/admin", headers=bearer(second_token)),
    )
    statuses = sorted(r.status for r in responses)
    assert statuses[0] == 200
    assert statuses[1] in (403, 409)
    admins = await pool.fetchval(
        "SELECT count(*) FROM user_roles ur JOIN users u ON u.id = ur.user_id WHERE ur.role = 'admin' AND u.is_active"
    )
    assert admins == 1


async def test_the_last_admin_cannot_be_removed(client: Any, tokens: dict[Role, str], pool: asyncpg.Pool) -> None:
    """Whatever path a change takes, one that leaves no active admin raises LastAdmin and changes nothing."""
    store = UserStore(pool)
    admin_id = await pool.fetchval("SELECT id FROM users WHERE email = 'admin@test.example'")
    with pytest.raises(LastAdmin):
        await store.remove_role(SYSTEM, admin_id, Role.ADMIN)
    with pytest.raises(LastAdmin):
        await store.replace_roles(SYSTEM, admin_id, [Role.AGENT])
    with pytest.raises(LastAdmin):
        await store.update(SYSTEM, admin_id, {"is_active": False})
    assert await pool.fetchval("SELECT count(*) FROM user_roles WHERE role = 'admin'") == 1
    assert await pool.fetchval("SELECT is_active FROM users WHERE id = $1", admin_id)


async def test_migrate_roles_is_idempotent(client: Any, tokens: dict[Role, str], pool: asyncpg.Pool) -> None:
    """Legacy single roles are copied into user_roles once; the legacy role field reads from the array."""
    await pool.execute(
        """INSERT INTO users (email, password_hash, legacy_role) VALUES
           ('legacy1@test.example', 'x', 'supervisor'), ('legacy2@test.example', 'x', 'agent')"""
    )
    admin = bearer(tokens[Role.ADMIN])
    first = await (await client.post("/api/users/migrate-roles", headers=admin)).json()
    assert first == {"added": 2}
    second = await (await client.post("/api/users/migrate-roles", headers=admin)).json()
    assert second == {"added": 0}
    users = await (await client.get("/api/users?limit=500", headers=admin)).json()
    legacy = {u["email"]: (u["roles"], u["role"]) for u in users["items"] if u["email"].startswith("legacy")}
    assert legacy == {
        "legacy1@test.example": (["supervisor"], "supervisor"),
        "legacy2@test.example": (["agent"], "agent"),
    }
    legacy1 = next(u for u in users["items"] if u["email"] == "legacy1@test.example")
    await client.delete(f"/api/users/{legacy1['id']}/roles/supervisor", headers=admin)
    third = await (await client.post("/api/users/migrate-roles", headers=admin)).json()
    assert third == {"added": 0}, "a role removed after migration is not brought back"
