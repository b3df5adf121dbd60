"""The roles of the CRM and how the legacy single ``role`` is derived from a user's role set."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    CAMPAIGN_MANAGER = "campaign_manager"
    SUPERVISOR = "supervisor"
    AGENT = "agent"
    QUALITY_ANALYST = "quality_analyst"
    CONTENT_CREATOR = "content_creator"
    CLIENT = "client"


ALL_ROLES: frozenset[Role] = frozenset(Role)

#: Most privileged first. Clients of the legacy API that read one ``role`` get the strongest one held.
PRECEDENCE: tuple[Role, ...] = (
    Role.ADMIN,
    Role.CAMPAIGN_MANAGER,
    Role.SUPERVISOR,
    Role.QUALITY_ANALYST,
    Role.CONTENT_CREATOR,
    Role.AGENT,
    Role.CLIENT,
)


def legacy_role(roles: Iterable[str]) -> Role | None:
    held = set(roles)
    return next((role for role in PRECEDENCE if role in held), None)


def sorted_roles(roles: Iterable[str]) -> list[Role]:
    held = set(roles)
    return [role for role in PRECEDENCE if role in held]
