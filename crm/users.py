"""Users and their roles in PostgreSQL. Every change writes the audit log in the same transaction."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from crm import audit
from crm.audit import Actor
from crm.roles import Role, legacy_role, sorted_roles


class UserError(Exception):
    """Base of the user store's refusals."""


class UserNotFound(UserError):
    pass


class EmailTaken(UserError):
    pass


class LastAdmin(UserError):
    """The change would leave no active admin, and so nobody able to manage users."""


# Serialises every change that can take away an admin, so two admins demoting each other at once
# cannot both succeed and leave the system with none.
_ADMIN_CHANGE_LOCK = 0x41444D494E  # "ADMIN"


@dataclass(frozen=True, slots=True)
class User:
    id: int
    email: str
    display_name: str
    roles: tuple[Role, ...]
    is_active: bool
    must_change_password: bool
    client_organisation_id: int | None
    created_at: datetime
    updated_at: datetime
    last_login_at: datetime | None
    deactivated_at: datetime | None

    @property
    def role(self) -> Role | None:
        """The legacy single role: the most privileged one held."""
        return legacy_role(self.roles)


@dataclass(frozen=True, slots=True)
class RoleAssignment:
    role: Role
    assigned_by: int | None
    assigned_by_email: str | None
    assigned_at: datetime


@dataclass(frozen=True, slots=True)
class AuthState:
    """What a request's token is checked against on every call: revocation, deactivation, current roles."""

    is_active: bool
    revoked: bool
    roles: frozenset[Role]
    #: Unix time before which tokens were invalidated (password change, deactivation); 0 when never.
    tokens_valid_after: float


_USER_COLUMNS = """u.id, u.email, u.display_name, u.is_active, u.must_change_password, u.client_organisation_id,
                   u.created_at, u.updated_at, u.last_login_at, u.deactivated_at,
                   ARRAY(SELECT role FROM user_roles WHERE user_id = u.id) AS roles"""


def normalise_email(email: str) -> str:
    return email.strip().lower()


def _user(row: asyncpg.Record) -> User:
    data = dict(row)
    data["roles"] = tuple(sorted_roles(data["roles"]))
    data.pop("password_hash", None)
    return User(**data)


class UserStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def count(self) -> int:
        value: int = await self.pool.fetchval("SELECT count(*) FROM users")
        return value

    async def get(self, user_id: int) -> User:
        row = await self.pool.fetchrow(f"SELECT {_USER_COLUMNS} FROM users u WHERE u.id = $1", user_id)
        if row is None:
            raise UserNotFound(f"user {user_id} does not exist")
        return _user(row)

    async def credentials(self, email: str) -> tuple[User, str] | None:
        row = await self.pool.fetchrow(
            f"SELECT {_USER_COLUMNS}, u.password_hash FROM users u WHERE lower(u.email) = $1",
            normalise_email(email),
        )
        return None if row is None else (_user(row), row["password_hash"])

    async def page(self, *, limit: int, after_id: int | None, include_inactive: bool) -> list[User]:
        rows = await self.pool.fetch(
            f"""SELECT {_USER_COLUMNS} FROM users u
                 WHERE ($2::bigint IS NULL OR u.id > $2) AND ($3 OR u.is_active)
                 ORDER BY u.id LIMIT $1""",
            limit,
            after_id,
            include_inactive,
        )
        return [_user(row) for row in rows]

    async def create(
        self,
        actor: Actor,
        *,
        email: str,
        password_hash: str,
        roles: Iterable[Role],
        display_name: str = "",
        must_change_password: bool = False,
        client_organisation_id: int | None = None,
    ) -> User:
        roles = sorted_roles(roles)
        async with self.pool.acquire() as conn, conn.transaction():
            try:
                user_id = await conn.fetchval(
                    """INSERT INTO users (email, display_name, password_hash, must_change_password,
                                          client_organisation_id)
                       VALUES ($1, $2, $3, $4, $5) RETURNING id""",
                    email.strip(),
                    display_name,
                    password_hash,
                    must_change_password,
                    client_organisation_id,
                )
            except asyncpg.UniqueViolationError:
                raise EmailTaken(f"a user with e-mail {email.strip()!r} already exists") from None
            await conn.executemany(
                "INSERT INTO user_roles (user_id, role, assigned_by) VALUES ($1, $2, $3)",
                [(user_id, str(role), actor.user_id) for role in roles],
            )
            await audit.record(
                conn, actor, "user.create", "user", user_id, {"email": email.strip(), "roles": [*map(str, roles)]}
            )
            return _user(await conn.fetchrow(f"SELECT {_USER_COLUMNS} FROM users u WHERE u.id = $1", user_id))

    async def update(self, actor: Actor, user_id: int, changes: dict[str, Any]) -> User:
        """Change profile fields (email, display_name, password_hash, is_active, ...); audited without secrets."""
        allowed = {"email", "display_name", "password_hash", "is_active", "must_change_password"}
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"cannot update {sorted(unknown)}")
        async with self.pool.acquire() as conn, conn.transaction():
            if changes.get("is_active") is False:
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _ADMIN_CHANGE_LOCK)
            await self._lock(conn, user_id)
            if changes:
                assignments = [f"{name} = ${i}" for i, name in enumerate(changes, start=2)]
                if "is_active" in changes:
                    i = list(changes).index("is_active") + 2
                    assignments.append(
                        f"deactivated_at = CASE WHEN ${i} THEN NULL ELSE coalesce(deactivated_at, now()) END"
                    )
                if "password_hash" in changes or changes.get("is_active") is False:
                    # Every token issued before now stops working (see AuthState.tokens_valid_after).
                    assignments.append("tokens_valid_after = now()")
                try:
                    await conn.execute(
                        f"UPDATE users SET {', '.join(assignments)}, updated_at = now() WHERE id = $1",
                        user_id,
                        *changes.values(),
                    )
                except asyncpg.UniqueViolationError:
                    raise EmailTaken(f"a user with e-mail {changes.get('email')!r} already exists") from None
                shown = {k: ("<changed>" if k == "password_hash" else v) for k, v in changes.items()}
                action = "user.update"
                if changes.get("is_active") is False:
                    action = "user.deactivate"
                await audit.record(conn, actor, action, "user", user_id, shown)
                if action == "user.deactivate":
                    await self._ensure_an_admin_remains(conn)
            return _user(await conn.fetchrow(f"SELECT {_USER_COLUMNS} FROM users u WHERE u.id = $1", user_id))

    async def record_login(self, user_id: int) -> None:
        await self.pool.execute("UPDATE users SET last_login_at = now() WHERE id = $1", user_id)

    # -- roles ---------------------------------------------------------------------------------------

    async def role_assignments(self, user_id: int) -> list[RoleAssignment]:
        async with self.pool.acquire() as conn:
            await self._exists(conn, user_id)
            return await self._assignments(conn, user_id)

    async def add_role(self, actor: Actor, user_id: int, role: Role) -> list[RoleAssignment]:
        async with self.pool.acquire() as conn, conn.transaction():
            await self._lock(conn, user_id)
            added = await conn.fetchval(
                """INSERT INTO user_roles (user_id, role, assigned_by) VALUES ($1, $2, $3)
                   ON CONFLICT DO NOTHING RETURNING role""",
                user_id,
                str(role),
                actor.user_id,
            )
            if added is not None:
                await audit.record(conn, actor, "user.role_add", "user", user_id, {"role": str(role)})
            return await self._assignments(conn, user_id)

    async def remove_role(self, actor: Actor, user_id: int, role: Role) -> list[RoleAssignment]:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _ADMIN_CHANGE_LOCK)
            await self._lock(conn, user_id)
            removed = await conn.fetchval(
                "DELETE FROM user_roles WHERE user_id = $1 AND role = $2 RETURNING role", user_id, str(role)
            )
            if removed is None:
                raise UserNotFound(f"user {user_id} does not hold role {role}")
            await audit.record(conn, actor, "user.role_remove", "user", user_id, {"role": str(role)})
            await self._ensure_an_admin_remains(conn)
            return await self._assignments(conn, user_id)

    async def replace_roles(self, actor: Actor, user_id: int, roles: Sequence[Role]) -> list[RoleAssignment]:
        wanted = {str(role) for role in roles}
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _ADMIN_CHANGE_LOCK)
            await self._lock(conn, user_id)
            held = {r["role"] for r in await conn.fetch("SELECT role FROM user_roles WHERE user_id = $1", user_id)}
            # Roles kept keep their original assigned_by/assigned_at: the set changed, not their history.
            await conn.execute("DELETE FROM user_roles WHERE user_id = $1 AND role <> ALL($2::text[])", user_id, wanted)
            await conn.executemany(
                "INSERT INTO user_roles (user_id, role, assigned_by) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                [(user_id, role, actor.user_id) for role in sorted(wanted - held)],
            )
            if wanted != held:
                await audit.record(
                    conn,
                    actor,
                    "user.roles_replace",
                    "user",
                    user_id,
                    {"added": sorted(wanted - held), "removed": sorted(held - wanted), "roles": sorted(wanted)},
                )
            await self._ensure_an_admin_remains(conn)
            return await self._assignments(conn, user_id)

    async def migrate_legacy_roles(self, actor: Actor) -> int:
        """Copy each user's legacy single role into user_roles; return how many assignments were added.

        The legacy column is emptied as it is copied, so a role an admin removes afterwards is not brought
        back by running the migration again.
        """
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                """WITH legacy AS (
                       SELECT id, legacy_role FROM users WHERE legacy_role IS NOT NULL FOR UPDATE),
                   cleared AS (
                       UPDATE users u SET legacy_role = NULL, updated_at = now() FROM legacy WHERE u.id = legacy.id)
                   INSERT INTO user_roles (user_id, role, assigned_by)
                   SELECT id, legacy_role, $1 FROM legacy
                   ON CONFLICT DO NOTHING
                   RETURNING user_id, role""",
                actor.user_id,
            )
            for row in rows:
                await audit.record(
                    conn, actor, "user.role_add", "user", row["user_id"], {"role": row["role"], "via": "migrate-roles"}
                )
            return len(rows)

    # -- tokens --------------------------------------------------------------------------------------

    async def auth_state(self, user_id: int, jti: uuid.UUID) -> AuthState | None:
        row = await self.pool.fetchrow(
            """SELECT u.is_active, coalesce(extract(epoch FROM u.tokens_valid_after), 0)::float8 AS valid_after,
                      EXISTS (SELECT 1 FROM revoked_tokens WHERE jti = $2) AS revoked,
                      ARRAY(SELECT role FROM user_roles WHERE user_id = u.id) AS roles
                 FROM users u WHERE u.id = $1""",
            user_id,
            jti,
        )
        if row is None:
            return None
        return AuthState(row["is_active"], row["revoked"], frozenset(Role(r) for r in row["roles"]), row["valid_after"])

    async def revoke_token(self, jti: uuid.UUID, user_id: int, expires_at: datetime) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """INSERT INTO revoked_tokens (jti, user_id, expires_at) VALUES ($1, $2, $3)
                   ON CONFLICT (jti) DO NOTHING""",
                jti,
                user_id,
                expires_at,
            )
            # Expired tokens are refused anyway; keep the table to the ones that still matter.
            await conn.execute("DELETE FROM revoked_tokens WHERE expires_at < now() - interval '1 day'")

    # -- helpers -------------------------------------------------------------------------------------

    @staticmethod
    async def _ensure_an_admin_remains(conn: asyncpg.Connection) -> None:
        remaining = await conn.fetchval(
            """SELECT count(*) FROM user_roles ur JOIN users u ON u.id = ur.user_id
                WHERE ur.role = 'admin' AND u.is_active"""
        )
        if remaining == 0:
            raise LastAdmin("this change would leave no active admin")

    @staticmethod
    async def _exists(conn: asyncpg.Connection, user_id: int) -> None:
        if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)", user_id):
            raise UserNotFound(f"user {user_id} does not exist")

    @staticmethod
    async def _lock(conn: asyncpg.Connection, user_id: int) -> None:
        # Serialises concurrent role edits of one user so replace/add/remove never interleave.
        if await conn.fetchval("SELECT id FROM users WHERE id = $1 FOR UPDATE", user_id) is None:
            raise UserNotFound(f"user {user_id} does not exist")

    @staticmethod
    async def _assignments(conn: asyncpg.Connection, user_id: int) -> list[RoleAssignment]:
        rows = await conn.fetch(
            """SELECT ur.role, ur.assigned_by, a.email AS assigned_by_email, ur.assigned_at
                 FROM user_roles ur LEFT JOIN users a ON a.id = ur.assigned_by
                WHERE ur.user_id = $1""",
            user_id,
        )
        order = {role: i for i, role in enumerate(sorted_roles(r["role"] for r in rows))}
        assignments = [
            RoleAssignment(Role(r["role"]), r["assigned_by"], r["assigned_by_email"], r["assigned_at"]) for r in rows
        ]
        return sorted(assignments, key=lambda a: order[a.role])
