"""The composition root: one aiohttp application, one cleanup context per resource.

Contexts start in order and are torn down in reverse, each only if it came up: database server (embedded
or configured) -> pool and schema -> services (tokens, first admin).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import asyncpg
import structlog
from aiohttp import web

from admin_api import (
    audit_routes,
    auth_routes,
    campaign_routes,
    compliance_routes,
    consent_routes,
    contact_routes,
    decision_routes,
    domain_set_routes,
    email_campaign_routes,
    email_sender_routes,
    export_routes,
    import_routes,
    lead_routes,
    list_routes,
    order_routes,
    portal_routes,
    record_routes,
    search_routes,
    segment_routes,
    telephony_routes,
    user_routes,
)
from admin_api.api import Api
from admin_api.problems import problem_middleware
from admin_api.services import SERVICES, Services
from config import Settings
from config.settings import TelephonySettings
from console_web import pages
from console_web.agent_ws import ENGINE
from console_web.supervisor_ws import HUB, SupervisorHub
from crm.audience.import_service import ImportService
from crm.audit import SYSTEM
from crm.compliance.feed import SuppressionFeed
from crm.login_throttle import LoginThrottle
from crm.passwords import PasswordHasher
from crm.tokens import TokenService
from crm.users import UserStore
from dialer import connections
from dialer.carrier import warm_up as carrier_warm_up
from dialer.carriers import Carriers
from dialer.connections import Sealer
from dialer.engine import Engine
from dialer.recordings import Recordings
from dialer.softphone import Softphones
from dialer.webhook_http import WEBHOOK_HANDLER, webhook_handler
from dialer.webhook_ingress import EventLog, Legs, WebhookIngress
from dialer.webhook_signature import load_public_key
from dispatch.engine import EmailEngine, EngineOptions
from dispatch.tokens import Signer
from dispatch.tracking import EventBuffer
from pivotal import console_routes, email_routes, email_webhook_routes, ops_routes, webhook_routes
from pivotal.bootstrap import ensure_admin
from pivotal.campaign_clock import CampaignClock
from pivotal.database import create_pool, database_url
from pivotal.email_routes import EMAIL_ENGINE, ENGAGEMENT
from pivotal.email_webhook_routes import EMAIL_WEBHOOKS, EmailWebhooks
from pivotal.http_middleware import METRICS, add_request_id_header, observe_middleware
from pivotal.lead_allocator import LeadAllocator
from pivotal.lead_pusher import LeadPusher
from pivotal.local_state import jwt_secret, secrets_key
from pivotal.metrics import Metrics
from pivotal.periodic import Periodic
from pivotal.schema import apply_schema
from pivotal.server import ON_LISTENING
from pivotal.stall_watch import StallWatch

log = structlog.get_logger(__name__)

SETTINGS = web.AppKey("settings", Settings)
INGRESS = web.AppKey("webhook_ingress", WebhookIngress)
POOL = web.AppKey("pool", asyncpg.Pool)
DATABASE_URL = web.AppKey("database_url", str)

#: Seconds the pool gets to close its connections at shutdown before they are terminated.
POOL_CLOSE_TIMEOUT_S = 5.0


def routes() -> Api:
    return Api().include(
        ops_routes.api,
        auth_routes.api,
        user_routes.api,
        audit_routes.api,
        import_routes.api,
        segment_routes.api,
        export_routes.api,
        contact_routes.api,
        record_routes.api,
        domain_set_routes.api,
        list_routes.api,
        search_routes.api,
        compliance_routes.api,
        consent_routes.api,
        decision_routes.api,
        webhook_routes.api,
        telephony_routes.api,
        campaign_routes.api,
        lead_routes.api,
        order_routes.api,
        portal_routes.api,
        console_routes.api,
        email_routes.api,
        email_campaign_routes.api,
        email_sender_routes.api,
        email_webhook_routes.api,
    )


async def _database_server(app: web.Application) -> AsyncIterator[None]:
    async with database_url(app[SETTINGS]) as url:
        app[DATABASE_URL] = url
        yield


async def _pool(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    pool = await create_pool(app[DATABASE_URL], settings.database)
    try:
        async with pool.acquire() as conn:
            await apply_schema(conn)
    except BaseException:
        pool.terminate()
        raise
    app[POOL] = pool
    app[METRICS].pool.pool = pool
    yield
    app[METRICS].pool.pool = None
    try:
        async with asyncio.timeout(POOL_CLOSE_TIMEOUT_S):
            await pool.close()
    except TimeoutError:
        log.warning("database_pool_close_timed_out", seconds=POOL_CLOSE_TIMEOUT_S)
        pool.terminate()
    log.info("database_pool_closed")


def _services_context(clock: Callable[[], float]) -> Callable[[web.Application], AsyncIterator[None]]:
    async def services(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        auth = settings.auth
        users = UserStore(app[POOL])
        passwords = PasswordHasher(auth.bcrypt_rounds)
        imports = ImportService(
            app[POOL],
            settings.data_dir / "imports",
            region=settings.audience.default_phone_region,
            max_bytes=settings.audience.max_import_bytes,
        )
        metrics = app[METRICS]

        async def connect() -> asyncpg.Connection:
            return await asyncpg.connect(
                app[DATABASE_URL], timeout=5, server_settings={"application_name": "pivotal-suppressions"}
            )

        sealer = Sealer(secrets_key(settings))
        carriers = Carriers(app[POOL], sealer, settings.telephony.api_base_url, app[METRICS].observe_carrier)
        softphones = Softphones(app[POOL], sealer, carriers)
        feed = SuppressionFeed(connect, observe_lag=metrics.suppression_lag.observe)
        await feed.start()
        metrics.suppressions.feed = feed
        app[SERVICES] = Services(
            pool=app[POOL],
            users=users,
            tokens=TokenService(jwt_secret(settings), auth.token_ttl_s),
            passwords=passwords,
            login_throttle=LoginThrottle.create(
                auth.login_max_failures_per_account, auth.login_max_failures_per_address, auth.login_window_s
            ),
            clock=clock,
            imports=imports,
            suppressions=feed,
            sealer=sealer,
            carriers=carriers,
            softphones=softphones,
            default_phone_region=settings.audience.default_phone_region,
            trust_forwarded_for=settings.server.trust_forwarded_for,
            webrtc_sdk_url=settings.telephony.webrtc_sdk_url,
            webhook_allow_private=settings.orders.webhook_allow_private,
            recordings_dir=settings.data_dir / "recordings",
        )
        try:
            await ensure_admin(users, passwords, auth.bootstrap_admin_email)
            yield
        finally:
            await imports.close()
            metrics.suppressions.feed = None
            await feed.close()
            await carriers.close()

    return services


async def _telephony(app: web.Application) -> AsyncIterator[None]:
    """Webhook ingress (legs, the batched event log, the verifier: 503 until a key is known); in sandbox mode
    the simulated carrier, started here, provides the key and the API and receives the daemon's URL."""
    settings = app[SETTINGS].telephony
    key = load_public_key(settings.webhook_public_key) if settings.webhook_public_key else None
    # the SDK's import (about 3 s of models) in a thread, so a restart is ready without it; a dial that comes
    # first waits for it
    warm = asyncio.create_task(asyncio.to_thread(carrier_warm_up), name="telnyx-sdk-warm-up")
    sandbox: web.AppRunner | None = None
    if settings.sandbox:
        if settings.webhook_public_key:
            log.warning("sandbox_ignores_webhook_public_key", hint="set telephony.sandbox = false to take real calls")
        sandbox, sim_key, base_url, point_webhooks = await _start_sandbox_carrier(settings)
        key = load_public_key(sim_key)
        app[SERVICES].carriers.base_url = base_url
        app[SERVICES].sandbox_rtc_url = base_url.replace("http://", "ws://").removesuffix("/v2") + "/_sim/rtc"
        app.setdefault(ON_LISTENING, []).append(point_webhooks)
        await _ensure_sandbox_connection(app)
    events = EventLog(app[POOL])
    app[INGRESS] = ingress = WebhookIngress(key, Legs(), events, max_bytes=settings.max_webhook_bytes)
    app[WEBHOOK_HANDLER] = webhook_handler(ingress, app[METRICS].observe_webhook)
    events.start()
    try:
        yield
    finally:
        await events.close()
        if sandbox is not None:
            await sandbox.cleanup()
        await warm  # a thread cannot be cancelled; it ends by itself within seconds


async def _start_sandbox_carrier(
    settings: TelephonySettings,
) -> tuple[web.AppRunner, str, str, Callable[[int], None]]:
    from sim.carrier import Options, SimCarrier  # sandbox only: production never imports the simulator

    carrier = SimCarrier(Options(seed=1, speed=settings.sandbox_speed, channel_limit=settings.sandbox_channel_limit))
    runner = web.AppRunner(carrier.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", settings.sandbox_port).start()
    port = _first_port(runner)
    base_url = f"http://127.0.0.1:{port}/v2"

    def point_webhooks(daemon_port: int) -> None:
        carrier.options.webhook_url = f"http://127.0.0.1:{daemon_port}/webhooks/telnyx"

    log.info("sandbox_carrier_started", api=base_url)
    return runner, carrier.public_key, base_url, point_webhooks


def _first_port(runner: web.AppRunner) -> int:
    address = runner.addresses[0]
    return int(address[1])


async def _ensure_sandbox_connection(app: web.Application) -> None:
    """A default "Sandbox" connection, so agents' softphones work out of the box (only if none exists)."""
    services = app[SERVICES]
    if not await services.pool.fetchval("SELECT 1 FROM telephony_connections WHERE deleted_at IS NULL LIMIT 1"):
        await connections.create(
            services.pool, SYSTEM, services.sealer,
            {"name": "Sandbox", "connection_id": "sandbox", "credential_connection_id": "sandbox-agents",
             "api_key": "sandbox", "is_default": True},
        )  # fmt: skip


async def _dialer(app: web.Application) -> AsyncIterator[None]:
    """The dialer engine: recovery first, then a runner per running campaign; carrier events reach it from the
    webhook ingress."""
    services = app[SERVICES]
    ingress = app[INGRESS]
    engine = Engine(services.pool, services.carriers, services.suppressions, app[METRICS].dialer, ingress.legs)
    await engine.start()
    ingress.listener = engine.on_event
    recordings = Recordings(services.pool, services.recordings_dir)
    ingress.recordings = recordings.saved
    try:
        await recordings.resume()
    except (asyncpg.PostgresError, OSError) as exc:
        log.warning("recordings_not_resumed", error=repr(exc))
    app[ENGINE] = engine
    app[HUB] = hub = SupervisorHub(engine, services.pool)
    hub.start()
    try:
        yield
    finally:
        ingress.listener = None
        ingress.recordings = None
        await recordings.close()
        await hub.close()
        await engine.close()


async def _email(app: web.Application) -> AsyncIterator[None]:
    """The e-mail engine (a sender per running e-mail campaign) and the writer of opens and clicks."""
    settings = app[SETTINGS]
    services = app[SERVICES]
    feed = services.suppressions
    options = EngineOptions(
        links_base_url=settings.email.links_base_url or f"http://{settings.server.host}:{settings.server.port}",
        sandbox=settings.email.sandbox, ambiguous=settings.email.ambiguous_policy,
        max_consecutive_errors=settings.email.max_consecutive_errors,
    )  # fmt: skip

    async def connect() -> asyncpg.Connection:  # the campaigns' advisory locks: a session of their own
        return await asyncpg.connect(app[DATABASE_URL], timeout=5,
                                     server_settings={"application_name": "pivotal-email-locks"})  # fmt: skip

    engine = EmailEngine(services.pool, lambda: feed.index, Signer(secrets_key(settings)), options,
                         services.sealer.open, connect, observe=app[METRICS].observe_email)  # fmt: skip
    app[METRICS].email_campaigns_sending.set_function(lambda: len(engine.running))
    if settings.email.links_base_url is None:  # the port is known once listening

        def links_base(port: int) -> None:
            options.links_base_url = f"http://{settings.server.host}:{port}"

        app.setdefault(ON_LISTENING, []).append(links_base)
    engagement = EventBuffer(services.pool)
    app[EMAIL_ENGINE], app[ENGAGEMENT] = engine, engagement
    webhook_events = app[METRICS].email_webhooks
    app[EMAIL_WEBHOOKS] = EmailWebhooks(
        settings.email, services.clock, count=lambda provider, kind: webhook_events.labels(provider, kind).inc()
    )
    engagement.start()
    await engine.start()
    try:
        yield
    finally:
        await engine.close()
        await engagement.close()


async def _periodic_jobs(app: web.Application) -> AsyncIterator[None]:
    """The campaigns' clock (scheduled starts, ends); published leads to the orders they fit, and the orders'
    steering of the dialer; leads pushed to clients' webhooks."""
    services, orders = app[SERVICES], app[SETTINGS].orders
    feed = services.suppressions
    jobs: list[Periodic] = [CampaignClock(app[POOL], lambda: feed.healthy)]
    if orders.allocation_interval_s:
        jobs.append(LeadAllocator(app[POOL], services.clock, orders.allocation_interval_s))
    if orders.push_webhooks:
        jobs.append(LeadPusher(app[POOL], services.sealer, services.clock, retry_base_s=orders.push_retry_base_s,
                               allow_private=orders.webhook_allow_private))  # fmt: skip
    for job in jobs:
        job.start()
    try:
        yield
    finally:
        for job in jobs:
            await job.close()


async def _stall_watch(app: web.Application) -> AsyncIterator[None]:
    """Logs where the event loop was whenever it stalls for 100 ms, and times garbage collections."""
    watch = StallWatch(app[METRICS].registry)
    watch.start(asyncio.get_running_loop())
    try:
        yield
    finally:
        watch.stop()


def _softphone_sources(app: web.Application) -> tuple[str | None, str | None]:
    services = app.get(SERVICES)
    if services is None:  # still starting
        return None, app[SETTINGS].telephony.webrtc_sdk_url
    return services.sandbox_rtc_url, services.webrtc_sdk_url


def build_app(
    settings: Settings, *, extra_routes: Api | None = None, clock: Callable[[], float] = time.time
) -> web.Application:
    """The daemon's application. ``extra_routes`` lets tests and later engines add declared routes."""
    app = web.Application(
        middlewares=[observe_middleware, problem_middleware],
        client_max_size=settings.server.max_body_bytes,
    )
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    app.on_response_prepare.append(add_request_id_header)
    api = routes()
    if extra_routes is not None:
        api.include(extra_routes)
    api.mount(app)
    pages.mount(app, lambda: _softphone_sources(app))
    app[ops_routes.ENDPOINTS] = api.endpoints
    app.cleanup_ctx.extend(
        [_stall_watch, _database_server, _pool, _services_context(clock), _telephony, _dialer, _email,
         _periodic_jobs]
    )  # fmt: skip
    return app
