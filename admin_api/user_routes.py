"""Users and their roles: admin only. Every change is audited with who made it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, model_validator

from admin_api.api import Api, ApiRequest
from admin_api.models import Email, Password, RoleAssignmentOut, RoleList, Strict, UserCreateBody, UserOut
from admin_api.pagination import Page, PageQuery, decode_cursor, page_of
from admin_api.problems import Problem
from crm.roles import Role

api = Api()
ADMIN = {Role.ADMIN}


class UserListQuery(PageQuery):
    include_inactive: bool = Field(False, description="Also list deactivated users.")


class UserPage(Page[UserOut]):
    pass


class UserUpdateBody(Strict):
    email: Email | None = None
    display_name: str | None = Field(None, max_length=200)
    password: Password | None = None
    is_active: bool | None = None
    must_change_password: bool | None = None

    @model_validator(mode="after")
    def _something(self) -> UserUpdateBody:
        if not self.model_fields_set:
            raise ValueError("name at least one field to change")
        return self


class RoleBody(Strict):
    role: Role


class RolesBody(Strict):
    roles: list[Role] = Field(description="The complete new set; may be empty.")


class MigrateRolesOut(BaseModel):
    added: int = Field(description="Role assignments created from legacy single roles (0 when already migrated).")


@api.route("GET", "/api/users", summary="List users", tag="users", roles=ADMIN, query=UserListQuery, response=UserPage)
async def list_users(req: ApiRequest) -> UserPage:
    query = req.query
    users = await req.services.users.page(
        limit=query.limit + 1, after_id=decode_cursor(query.cursor), include_inactive=query.include_inactive
    )
    page, next_cursor = page_of(users, query.limit, key=lambda user: user.id)
    return UserPage.model_validate({"items": page, "next_cursor": next_cursor})


@api.route(
    "POST",
    "/api/users",
    summary="Create a user",
    tag="users",
    roles=ADMIN,
    body=UserCreateBody,
    response=UserOut,
    status=201,
)
async def create_user(req: ApiRequest) -> UserOut:
    body = req.body
    org = body.client_organisation_id
    if org is not None and not await req.services.pool.fetchval("SELECT 1 FROM client_organisations WHERE id = $1",
                                                                org):  # fmt: skip
        raise Problem(422, f"client_organisation_id: {org} does not exist")
    password_hash = await req.services.passwords.hash(body.password)
    user = await req.services.users.create(
        req.actor,
        email=body.email,
        password_hash=password_hash,
        roles=body.roles,
        display_name=body.display_name,
        must_change_password=body.must_change_password,
        client_organisation_id=body.client_organisation_id,
    )
    return UserOut.of(user)


@api.route("GET", "/api/users/{userId}", summary="Read a user", tag="users", roles=ADMIN, response=UserOut)
async def get_user(req: ApiRequest) -> UserOut:
    return UserOut.of(await req.services.users.get(req.path_int("userId")))


@api.route(
    "PATCH",
    "/api/users/{userId}",
    summary="Update a user",
    tag="users",
    roles=ADMIN,
    body=UserUpdateBody,
    response=UserOut,
)
async def update_user(req: ApiRequest) -> UserOut:
    """Set `is_active` false to deactivate (tokens stop working at once), true to reactivate."""
    user_id = req.path_int("userId")
    changes: dict[str, Any] = req.body.model_dump(exclude_unset=True)
    if None in changes.values():
        raise Problem(422, "fields may be omitted but not null")
    if user_id == req.user.user_id and changes.get("is_active") is False:
        raise Problem(409, "you cannot deactivate yourself")
    if "password" in changes:
        changes["password_hash"] = await req.services.passwords.hash(changes.pop("password"))
    return UserOut.of(await req.services.users.update(req.actor, user_id, changes))


@api.route("DELETE", "/api/users/{userId}", summary="Deactivate a user", tag="users", roles=ADMIN, response=UserOut)
async def deactivate_user(req: ApiRequest) -> UserOut:
    """Users are never deleted (their work stays attributed); they are deactivated."""
    user_id = req.path_int("userId")
    if user_id == req.user.user_id:
        raise Problem(409, "you cannot deactivate yourself")
    return UserOut.of(await req.services.users.update(req.actor, user_id, {"is_active": False}))


def _roles(user_id: int, assignments: list[Any]) -> RoleList:
    return RoleList(user_id=user_id, roles=[RoleAssignmentOut.of(a) for a in assignments])


@api.route(
    "GET",
    "/api/users/{userId}/roles",
    summary="A user's roles with who assigned them",
    tag="roles",
    roles=ADMIN,
    response=RoleList,
)
async def list_user_roles(req: ApiRequest) -> RoleList:
    user_id = req.path_int("userId")
    return _roles(user_id, await req.services.users.role_assignments(user_id))


@api.route(
    "POST",
    "/api/users/{userId}/roles",
    summary="Add one role",
    tag="roles",
    roles=ADMIN,
    body=RoleBody,
    response=RoleList,
)
async def add_user_role(req: ApiRequest) -> RoleList:
    """Adding a role the user already holds changes nothing and is not an error."""
    user_id = req.path_int("userId")
    return _roles(user_id, await req.services.users.add_role(req.actor, user_id, req.body.role))


@api.route(
    "PUT",
    "/api/users/{userId}/roles",
    summary="Replace the role set",
    tag="roles",
    roles=ADMIN,
    body=RolesBody,
    response=RoleList,
)
async def replace_user_roles(req: ApiRequest) -> RoleList:
    user_id = req.path_int("userId")
    roles = req.body.roles
    if user_id == req.user.user_id and Role.ADMIN not in roles:
        raise Problem(409, "you cannot remove your own admin role")
    return _roles(user_id, await req.services.users.replace_roles(req.actor, user_id, roles))


@api.route(
    "DELETE", "/api/users/{userId}/roles/{role}", summary="Remove one role", tag="roles", roles=ADMIN, response=RoleList
)
async def remove_user_role(req: ApiRequest) -> RoleList:
    user_id = req.path_int("userId")
    raw = req.request.match_info["role"]
    if raw not in Role.__members__.values():
        raise Problem(404, f"role {raw!r} does not exist")
    role = Role(raw)
    if user_id == req.user.user_id and role is Role.ADMIN:
        raise Problem(409, "you cannot remove your own admin role")
    return _roles(user_id, await req.services.users.remove_role(req.actor, user_id, role))


@api.route(
    "POST",
    "/api/users/migrate-roles",
    summary="Copy legacy single roles into the role sets",
    tag="roles",
    roles=ADMIN,
    response=MigrateRolesOut,
)
async def migrate_roles(req: ApiRequest) -> MigrateRolesOut:
    """Idempotent: a second call adds nothing."""
    return MigrateRolesOut(added=await req.services.users.migrate_legacy_roles(req.actor))
