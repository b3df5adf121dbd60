"""What an agent's browser softphone needs: its SIP identity on the default connection and a fresh login token.

The credential is made at the carrier once per agent and connection (its password sealed in the database) and
reused; each request mints a new short-lived WebRTC login token (JWT) for it. Two first requests at once (two
tabs, two nodes) may both create one: the database keeps the first, and the other is deleted at the carrier
("only the most recent registration receives calls", so two live credentials for one agent would split them).
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
import structlog

from dialer import connections
from dialer.carrier import CarrierError
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
            if row is None:  # another tab made one at the same moment: use that one, delete ours
                try:
                    await carrier.delete_credential(credential.id)
                except CarrierError as exc:
                    log.warning("softphone_credential_orphaned", credential=credential.id, error=str(exc))
                row = await self.pool.fetchrow(
                    """SELECT provider_credential_id, sip_username FROM telephony_credentials
                        WHERE user_id = $1 AND telephony_connection_id = $2 AND revoked_at IS NULL""",
                    user_id,
                    connection.id,
                )
                assert row is not None
        token = await carrier.login_token(row["provider_credential_id"])
        return Softphone(connection.name, row["sip_username"], token)
