"""What route handlers need from the rest of the daemon, stored on the aiohttp application."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp import web

from crm.audience.import_service import ImportService
from crm.compliance.feed import SuppressionFeed
from crm.login_throttle import LoginThrottle
from crm.passwords import PasswordHasher
from crm.tokens import TokenService
from crm.users import UserStore
from dialer.carriers import Carriers
from dialer.connections import Sealer
from dialer.softphone import Softphones


@dataclass
class Services:
    pool: asyncpg.Pool
    users: UserStore
    tokens: TokenService
    passwords: PasswordHasher
    login_throttle: LoginThrottle
    clock: Callable[[], float]
    imports: ImportService
    #: The in-memory suppression index, kept current from PostgreSQL (``feed.index``).
    suppressions: SuppressionFeed
    #: Seals carrier secrets (telephony.secrets_key) and serves agents' softphone tokens.
    sealer: Sealer
    carriers: Carriers
    softphones: Softphones
    #: Country for phone numbers written without a country code (settings.audience.default_phone_region).
    default_phone_region: str = "US"
    #: Take the client address from X-Forwarded-For (only behind a proxy that sets it).
    trust_forwarded_for: bool = False
    #: Sandbox mode: the simulated carrier's softphone websocket (ws://127.0.0.1:PORT/_sim/rtc).
    sandbox_rtc_url: str | None = None
    webrtc_sdk_url: str = ""
    #: Clients' webhook URLs may point at this network (orders.webhook_allow_private).
    webhook_allow_private: bool = False
    #: Where call recordings are copied (<data_dir>/recordings).
    recordings_dir: Path = Path("recordings")
    #: Active orders by campaign, for the orders a lead may serve (crm.orders.store.orders_for_lead).
    servable_orders: dict[int, Any] = field(default_factory=dict)


SERVICES = web.AppKey("services", Services)
#: Set by the daemon's observing middleware on every request; quoted in problems and the audit log.
REQUEST_ID = web.RequestKey("request_id", str)
