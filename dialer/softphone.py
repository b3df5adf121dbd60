"""What an agent's browser softphone needs: its SIP identity on the default connection and a fresh login token.

The credential is made at the carrier once per agent and connection (its password sealed in the database) and
reused; each request mints a new short-lived WebRTC login token (JWT) for it. Two first requests at once (two
tabs, two nodes) may both create one: the database keeps the first, and the other is deleted at the carrier
("only the most recent registration receives calls", so two live credentials for one agent would split them).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import asyncpg
import structlog

from dialer import connections
from dialer.carrier import Carrier, CarrierError
from dialer.carriers import Carriers
from dialer.connections import Sealer, TelephonyError

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Softphone:
    connection: str
    sip_username: str
    login_token: str


class Softphones:
    def __init__(self, pool: asyncpg.Pool, sealer: Sealer, carriers: Carriers) -> None:
        self.pool = pool
        self.sealer = sealer
        self.carriers = carriers

    async def for_user(self, user_id: int) -> Softphone:
        connection = await connections.default_connection(self.pool)
        if not connection.credential_connection_id:
            raise TelephonyError(503, "the default telephony connection has no credential connection for agents")
        carrier = await self.carriers.for_connection(connection)
        row = await self.pool.fetchrow(
            """SELECT provider_credential_id, sip_username FROM telephony_credentials
                WHERE user_id = $1 AND telephony_connection_id = $2 AND revoked_at IS NULL""",
            user_id,
            connection.id,
        )
        if row is None:
            row = await self._new_credential(carrier, connection.id, connection.credential_connection_id, user_id)
        token = await carrier.login_token(row["provider_credential_id"])
        return Softphone(connection.name, row["sip_username"], token)

    async def _new_credential(
        self, carrier: Carrier, connection_id: int, credential_connection_id: str, user_id: int
    ) -> asyncpg.Record:
        credential = await carrier.create_credential(credential_connection_id, f"pivotal-user-{user_id}")
        stored = False
        try:
            row = await self.pool.fetchrow(
                """INSERT INTO telephony_credentials (user_id, telephony_connection_id, provider_credential_id,
                                                      sip_username, secret_encrypted)
                   VALUES ($1, $2, $3, $4, $5)
                   ON CONFLICT (user_id, telephony_connection_id) WHERE revoked_at IS NULL DO NOTHING
                   RETURNING provider_credential_id, sip_username""",
                user_id, connection_id, credential.id, credential.sip_username,
                self.sealer.seal(credential.sip_password),
            )  # fmt: skip
            stored = row is not None
        finally:
            if not stored:  # another tab's credential won, or we failed or were cancelled: ours must not linger
                await asyncio.shield(self._delete(carrier, credential.id))
        if row is not None:
            return row
        row = await self.pool.fetchrow(
            """SELECT provider_credential_id, sip_username FROM telephony_credentials
                WHERE user_id = $1 AND telephony_connection_id = $2 AND revoked_at IS NULL""",
            user_id,
            connection_id,
        )
        if row is None:  # the winner's credential was revoked in between
            raise TelephonyError(503, "the softphone credential changed while it was being made; try again")
        return row

    async def _delete(self, carrier: Carrier, credential_id: str) -> None:
        try:
            await carrier.delete_credential(credential_id)
        except CarrierError as exc:
            log.warning("softphone_credential_orphaned", credential=credential_id, error=str(exc))
