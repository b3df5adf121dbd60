"""First start: with no user at all, create an admin and print its one-time password once."""

from __future__ import annotations

import sys

import structlog

from crm.audit import SYSTEM
from crm.passwords import PasswordHasher, generate_password
from crm.roles import Role
from crm.users import EmailTaken, UserStore

log = structlog.get_logger(__name__)


async def ensure_admin(users: UserStore, passwords: PasswordHasher, email: str) -> bool:
    """Create the first admin if the database has no user; return whether one was created."""
    if await users.count() > 0:
        return False
    password = generate_password()
    try:
        await users.create(
            SYSTEM,
            email=email,
            password_hash=await passwords.hash(password),
            roles=[Role.ADMIN],
            display_name="Administrator",
            must_change_password=True,
        )
    except EmailTaken:  # another node won the race
        return False
    log.warning("bootstrap_admin_created", email=email)
    # Printed, not logged: log shippers keep lines forever, a terminal does not.
    print(
        f"\n  First start: created admin {email} with one-time password: {password}\n"
        "  Sign in with it and change it (POST /api/auth/password). It is not shown again.\n",
        file=sys.stdout,
        flush=True,
    )
    return True
