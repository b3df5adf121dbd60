"""The dialer's Prometheus metrics, per campaign: what it did (counters, latencies) and what it holds now (gauges
read from the engine at scrape time, so nothing has to be kept in step)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


class DialerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.dials = Counter("pivotal_dialer_dials", "Calls placed", ["campaign"], registry=registry)
        self.answers = Counter(
            "pivotal_dialer_answers",
            "Answered calls by who answered (human, machine)",
            ["campaign", "kind"],
            registry=registry,
        )
        self.abandons = Counter(
            "pivotal_dialer_abandons", "People answered and given no agent in time", ["campaign"], registry=registry
        )
        self.bridges = Counter("pivotal_dialer_bridges", "Calls bridged to an agent", ["campaign"], registry=registry)
        self.answer_to_bridge = Histogram(
            "pivotal_dialer_answer_to_bridge_seconds",
            "Routing latency when an agent is free: from the human-answer webhook to the bridge command",
            ["campaign"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=registry,
        )
        self.queue_wait = Histogram(
            "pivotal_dialer_queue_wait_seconds",
            "People who waited for a free agent: from the human-answer webhook to the bridge command",
            ["campaign"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 1.7, 2.0, 3.0, 5.0),
            registry=registry,
        )
        self.time_to_connect = Histogram(
            "pivotal_dialer_time_to_connect_seconds",
            "From the dial to the bridge with an agent",
            ["campaign"],
            buckets=(1, 2, 4, 6, 8, 10, 15, 20, 30, 45, 60),
            registry=registry,
        )
        self.dial_level = Gauge(
            "pivotal_dialer_dial_level",
            "Lines in use per active agent at the last tick",
            ["campaign"],
            registry=registry,
        )
        self.hopper = Gauge("pivotal_dialer_hopper_depth", "Contacts ready to dial", ["campaign"], registry=registry)
        self.loop_lag = Histogram(
            "pivotal_event_loop_lag_seconds",
            "How late the event loop ran a timer due every 100 ms",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=registry,
        )
        self.dispositions = Counter(
            "pivotal_dialer_dispositions", "Dispositions saved, by code", ["campaign", "code"], registry=registry
        )
        self.agents = AgentsCollector()
        registry.register(self.agents)


class AgentsCollector(Collector):
    """Agents by campaign and state, and calls waiting for an agent, read from the engine at scrape time."""

    def __init__(self) -> None:
        self.source: Callable[[], Iterable[tuple[int, str, int]]] | None = None
        self.waiting: Callable[[], Iterable[tuple[int, int]]] | None = None

    def collect(self) -> Iterable[GaugeMetricFamily]:
        agents = GaugeMetricFamily("pivotal_dialer_agents", "Agents logged in, by campaign and state",
                                   labels=["campaign", "state"])  # fmt: skip
        waiting = GaugeMetricFamily(
            "pivotal_dialer_calls_waiting", "People answered and waiting for an agent", labels=["campaign"]
        )
        if self.source is not None:
            for campaign, state, count in self.source():
                agents.add_metric([str(campaign), state], count)
        if self.waiting is not None:
            for campaign, count in self.waiting():
                waiting.add_metric([str(campaign)], count)
        return [agents, waiting]
