"""Who blocked the event loop: a watchdog thread and garbage-collection pauses, for the operator.

Latency targets (answer to bridge within 50 ms) die by the one callback that holds the loop for 100 ms; the lag
histogram says it happened, not where. A heartbeat runs on the loop every ``BEAT_S``; a daemon thread looks at it
as often, and when the loop has been silent for ``threshold`` seconds it captures the loop thread's stack (the
code that is running instead of the loop) and logs it with the stall's length. Collections by Python's cyclic
garbage collector stop the whole interpreter, so each one's pause goes into a histogram by generation.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram

log = structlog.get_logger("pivotal.stall")

BEAT_S = 0.02
#: Frames of the blocked stack that are logged, innermost last.
STACK_DEPTH = 12


#: A full collection only after this many collections of the middle generation (CPython's default is 10), and
#: as before only once the old generation has grown by a quarter.
FULL_COLLECTION_EVERY = 100


def settle_heap() -> None:
    """Move everything alive after start-up out of the collector's reach (``gc.freeze``), and collect the old
    generation less often.

    Modules, classes, libphonenumber's tables and the engine's rebuilt state live as long as the process, yet
    every full collection walked them: about 170,000 objects after the imports alone, and 200-390 ms with the
    loop stopped in a live run with 880 calls (measured with this module's histogram). Frozen objects are still
    freed by reference counting; only cycles among them would outlive their use, and start-up's objects are
    not garbage. What remains for a full collection is the live state (about 55,000 objects at 880 calls, tens
    of milliseconds), so those are made rarer: cyclic garbage waits a little longer, no request does.
    """
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)
    log.info("heap settled", frozen_objects=gc.get_freeze_count())


class StallWatch:
    def __init__(
        self, registry: CollectorRegistry, threshold: float = 0.1, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.threshold = threshold
        self._clock = clock
        self._beat = clock()
        self._reported_beat = -1.0
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._handle: asyncio.TimerHandle | None = None
        self._gc_started = 0.0
        self.stalls = Counter(
            "pivotal_event_loop_stalls", "Times the event loop ran nothing for the threshold", registry=registry
        )
        self.gc_pause = Histogram(
            "pivotal_gc_pause_seconds",
            "Pauses of Python's cyclic garbage collector, by generation",
            ["generation"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=registry,
        )

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop, self._loop_thread = loop, threading.get_ident()
        self._beat = self._clock()
        self._handle = loop.call_later(BEAT_S, self._on_beat)
        gc.callbacks.append(self._on_gc)
        self._thread = threading.Thread(target=self._watch, name="stall-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._handle is not None:
            self._handle.cancel()
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        if self._thread is not None:
            self._thread.join(timeout=1.0)

    def _on_beat(self) -> None:
        now = self._clock()
        gap = now - self._beat - BEAT_S
        if gap >= self.threshold:
            log.warning("event loop stalled", stalled_ms=round(gap * 1000, 1))
        self._beat = now
        assert self._loop is not None
        self._handle = self._loop.call_later(BEAT_S, self._on_beat)

    def _watch(self) -> None:
        while not self._stopping.wait(BEAT_S):
            beat = self._beat
            silent = self._clock() - beat - BEAT_S
            if silent < self.threshold or beat == self._reported_beat:
                continue
            self._reported_beat = beat  # one stack per stall: the first look is nearest its cause
            self.stalls.inc()
            frame = sys._current_frames().get(self._loop_thread)
            stack = traceback.format_stack(frame, limit=STACK_DEPTH) if frame is not None else []
            log.warning(
                "event loop blocked",
                silent_ms=round(silent * 1000, 1),
                where=[line.strip().replace("\n", " | ") for line in stack],
            )

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        elif self._gc_started:
            self.gc_pause.labels(str(info.get("generation", "?"))).observe(time.perf_counter() - self._gc_started)
