"""What an agent's browser softphone needs: its SIP identity on the default connection and a fresh login token.

The credential is made at the carrier once per agent and connection (its password sealed in the database) and
reused; each request mints a new short-lived WebRTC login token (JWT) for it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import asyncpg

from dialer import connections
from dialer.carrier import Carrier
from dialer.connections import Sealer, TelephonyError


@dataclass(frozen=True)
class Softphone:
    connection: str
    sip_username: str
    login_token: str


class Softphones:
    def __init__(self, pool: asyncpg.Pool, sealer: Sealer, base_url: str) -> None:
        self.pool = pool
        self.sealer = sealer
        self.base_url = base_url
        self._carriers: dict[int, tuple[str, Carrier]] = {}

    async def close(self) -> None:
        for _, carrier in self._carriers.values():
            with contextlib.suppress(Exception):
                await carrier.close()
        self._carriers.clear()

    async def _carrier(self, connection_id: int) -> Carrier:
        key = await connections.api_key(self.pool, self.sealer, connection_id)
        if key is None:
            raise TelephonyError(503, "the default telephony connection has no API key")
        cached = self._carriers.get(connection_id)
        if cached is not None and cached[0] == key:
            return cached[1]
        if cached is not None:
            await cached[1].close()
        carrier = Carrier(key, self.base_url)
        self._carriers[connection_id] = (key, carrier)
        return carrier

    async def for_user(self, user_id: int) -> Softphone:
        connection = await connections.default_connection(self.pool)
        if not connection.credential_connection_id:
            raise TelephonyError(503, "the default telephony connection has no credential connection for agents")
        carrier = await self._carrier(connection.id)
        row = await self.pool.fetchrow(
            """SELECT provider_credential_id, sip_username FROM telephony_credentials
                WHERE user_id = $1 AND telephony_connection_id = $2 AND revoked_at IS NULL""",
            user_id,
            connection.id,
        )
        if row is None:
            credential = await carrier.create_credential(connection.credential_connection_id, f"pivotal-user-{user_id}")
            row = await self.pool.fetchrow(
                """INSERT INTO telephony_credentials (user_id, telephony_connection_id, provider_credential_id,
                                                      sip_username, secret_encrypted)
                   VALUES ($1, $2, $3, $4, $5)
                   ON CONFLICT (user_id, telephony_connection_id) WHERE revoked_at IS NULL DO NOTHING
                   RETURNING provider_credential_id, sip_username""",
                user_id, connection.id, credential.id, credential.sip_username,
                self.sealer.seal(credential.sip_password),
            )  # fmt: skip
            if row is None:  # another tab made one at the same moment: use that one
                row = await self.pool.fetchrow(
                    """SELECT provider_credential_id, sip_username FROM telephony_credentials
                        WHERE user_id = $1 AND telephony_connection_id = $2 AND revoked_at IS NULL""",
                    user_id,
                    connection.id,
                )
                assert row is not None
        token = await carrier.login_token(row["provider_credential_id"])
        return Softphone(connection.name, row["sip_username"], token)
