"""Prometheus metrics: process, HTTP by route template, database pool.

Each application gets its own registry, so several daemons (or test apps) in one process never collide.
"""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, PlatformCollector, ProcessCollector
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from crm.compliance.feed import SuppressionFeed
from dialer.dialer_metrics import DialerMetrics

# 20 ms: the QA queue's next-lead target (issue 9) falls on a bucket edge, not inside 10-25 ms
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class PoolCollector(Collector):
    """Reads the asyncpg pool's sizes at scrape time; nothing to keep in step."""

    def __init__(self) -> None:
        self.pool: asyncpg.Pool | None = None

    def collect(self) -> Iterable[GaugeMetricFamily]:
        size = GaugeMetricFamily("pivotal_db_pool_connections", "Open connections in the pool")
        idle = GaugeMetricFamily("pivotal_db_pool_idle_connections", "Idle connections in the pool")
        limit = GaugeMetricFamily("pivotal_db_pool_max_connections", "Configured pool maximum")
        if self.pool is not None:
            size.add_metric([], self.pool.get_size())
            idle.add_metric([], self.pool.get_idle_size())
            limit.add_metric([], self.pool.get_max_size())
        return [size, idle, limit]


class SuppressionCollector(Collector):
    """Sizes of the in-memory suppression index, read at scrape time."""

    def __init__(self) -> None:
        self.feed: SuppressionFeed | None = None

    def collect(self) -> Iterable[GaugeMetricFamily]:
        entries = GaugeMetricFamily(
            "pivotal_suppressions_in_memory", "Suppressions held in memory, by channel and scope", labels=["channel"]
        )
        size = GaugeMetricFamily("pivotal_suppressions_memory_bytes", "Bytes of the in-memory suppression arrays")
        loaded = GaugeMetricFamily("pivotal_suppressions_loaded_timestamp_seconds", "When the index was last loaded")
        healthy = GaugeMetricFamily(
            "pivotal_suppressions_feed_healthy", "1 while suppression changes are known to reach this node, else 0"
        )
        if self.feed is not None:
            healthy.add_metric([], 1.0 if self.feed.healthy else 0.0)
            index = self.feed.index
            for channel, count in index.sizes().items():
                entries.add_metric([channel], count)
            size.add_metric([], index.nbytes)
            loaded.add_metric([], index.loaded_at)
        return [entries, size, loaded, healthy]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.pool = PoolCollector()
        self.registry.register(self.pool)
        self.http_requests = Counter(
            "pivotal_http_requests",
            "HTTP requests answered, by route template",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_latency = Histogram(
            "pivotal_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.suppressions = SuppressionCollector()
        self.registry.register(self.suppressions)
        self.suppression_lag = Histogram(
            "pivotal_suppression_propagation_seconds",
            "From a suppression change's commit to this node's in-memory index",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=self.registry,
        )
        self.webhooks = Counter(
            "pivotal_webhooks",
            "Carrier webhook deliveries by result (applied, ignored, illegal_transition, unmatched, duplicate, "
            "rejected_<why>)",
            ["result"],
            registry=self.registry,
        )
        self.webhook_latency = Histogram(
            "pivotal_webhook_handling_seconds",
            "From a webhook's arrival to its state change and answer",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25),
            registry=self.registry,
        )
        self.carrier_commands = Counter(
            "pivotal_carrier_commands",
            "Carrier API commands by outcome: ok, retried (one count per retry), call_ended (422 90018), refused "
            "(another 4xx), failed (5xx, 429 or no answer after every retry)",
            ["command", "result"],
            registry=self.registry,
        )
        self.carrier_latency = Histogram(
            "pivotal_carrier_command_seconds",
            "A carrier command from first send to final answer, retries included",
            ["command"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=self.registry,
        )
        self.dialer = DialerMetrics(self.registry)
        self.email_messages = Counter(
            "pivotal_email_messages",
            "E-mail recipients by provider and outcome: sent, failed, retry (temporary or the account's fault), "
            "throttled, suppressed (at send time), skipped (not rendered)",
            ["provider", "outcome"],
            registry=self.registry,
        )
        self.email_send_latency = Histogram(
            "pivotal_email_send_seconds",
            "From a recipient's pick-up by its sender to the provider's answer",
            ["provider"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=self.registry,
        )
        self.email_campaigns_sending = Gauge(
            "pivotal_email_campaigns_sending", "E-mail campaigns this node is sending", registry=self.registry
        )
        self.email_webhooks = Counter(
            "pivotal_email_webhook_events",
            "Provider webhook events received (verified; a redelivery counts again), by provider and kind "
            "(delivered, bounce_hard, bounce_soft, complaint, unsubscribe, open, click); refused requests as "
            "kind rejected_<reason>",
            ["provider", "kind"],
            registry=self.registry,
        )
        self.http_in_flight = Gauge("pivotal_http_requests_in_flight", "Requests being handled", registry=self.registry)
        self._email_counters: dict[tuple[str, str], Counter] = {}
        self._email_latencies: dict[str, Histogram] = {}

    def observe_email(self, provider: str, outcome: str, seconds: float | None) -> None:
        # once per recipient, tens of thousands a second with a batched provider: the labelled children are
        # looked up once (``labels()`` validates and locks on every call)
        counter = self._email_counters.get((provider, outcome))
        if counter is None:
            counter = self._email_counters[provider, outcome] = self.email_messages.labels(provider, outcome)
        counter.inc()
        if seconds is not None:
            latency = self._email_latencies.get(provider)
            if latency is None:
                latency = self._email_latencies[provider] = self.email_send_latency.labels(provider)
            latency.observe(seconds)

    def observe_webhook(self, result: str, seconds: float) -> None:
        self.webhooks.labels(result).inc()
        self.webhook_latency.observe(seconds)

    def observe_carrier(self, command: str, result: str, seconds: float) -> None:
        self.carrier_commands.labels(command, result).inc()
        if result != "retried":
            self.carrier_latency.labels(command).observe(seconds)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.http_requests.labels(method, route, str(status)).inc()
        self.http_latency.labels(method, route).observe(seconds)


def route_template(request: web.Request) -> str:
    """The route's template (``/api/users/{userId}``), never the raw path: label cardinality stays bounded."""
    info = request.match_info
    route = info.route if info is not None else None
    resource = route.resource if route is not None else None
    if resource is None:
        return "unmatched"
    return resource.canonical
