"""bcrypt password hashing, off the event loop (one hash costs ~250 ms at 12 rounds)."""

from __future__ import annotations

import asyncio
import secrets

import bcrypt

#: bcrypt only reads the first 72 bytes; longer passwords are refused rather than silently truncated.
MAX_PASSWORD_BYTES = 72
MIN_PASSWORD_CHARS = 8


def _hash(password: str, rounds: int) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds)).decode()


def _check(password: str, hashed: str) -> bool:
    try:
        return bcrypt.checkpw(password.encode(), hashed.encode())
    except ValueError:  # a corrupt or foreign hash in the database must not become a 500
        return False


class PasswordHasher:
    def __init__(self, rounds: int) -> None:
        self.rounds = rounds
        # Compared against when the account does not exist, so a miss costs as long as a wrong password.
        # Made on the first miss, not at start-up, where 250 ms would be paid by every command.
        self._dummy: str | None = None

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(_hash, password, self.rounds)

    async def verify(self, password: str, hashed: str | None) -> bool:
        if hashed is None:
            if self._dummy is None:
                self._dummy = await asyncio.to_thread(_hash, secrets.token_urlsafe(16), self.rounds)
            await asyncio.to_thread(_check, password, self._dummy)
            return False
        return await asyncio.to_thread(_check, password, hashed)


def generate_password() -> str:
    return secrets.token_urlsafe(15)
