"""Prometheus metrics: counted in every pool child, aggregated by the worker's main process.

prometheus_client's multiprocess mode keeps each process's counts in files under one directory.
The worker's main process creates a fresh directory before the pool forks
(:func:`enable_multiprocess`); metric objects are created lazily, so whatever imported
prometheus_client first, a child's counts land in that directory and a scrape sums them.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client import multiprocess as mp
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from stalwart.broker.mover import Mover
from stalwart.dlq.entry import DeadLetter
from stalwart.errors import StateStoreError
from stalwart.hooks import Hook
from stalwart.job.context import JobContext, Outcome
from stalwart.policies.limits import redis_errors
from stalwart.runtime import Runtime

if TYPE_CHECKING:
    from prometheus_client.registry import Collector

log = logging.getLogger("stalwart.ops.metrics")
ENV_DIR = "PROMETHEUS_MULTIPROC_DIR"
DIR_PREFIX = "stalwart-metrics-"
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
_TIMED = {"succeeded", "retried", "dead"}


class JobMetrics:
    """The per-process metric objects (not registered: a scrape reads them from the files)."""

    def __init__(self) -> None:
        self.jobs = Counter("stalwart_jobs", "Deliveries that ended, by task and outcome "
                            "(a job retried twice counts two retried and one final)",
                            ["task", "outcome"], registry=None)
        self.duration = Histogram("stalwart_job_duration_seconds", "Time from claim to outcome",
                                  ["task"], registry=None, buckets=DURATION_BUCKETS)
        self.retries = Counter("stalwart_retries", "Failed attempts scheduled to retry",
                               ["task"], registry=None)
        self.deferrals = Counter("stalwart_deferrals", "Jobs deferred (limit, breaker, busy, paused)",
                                 ["task", "reason"], registry=None)
        self.dead_letters = Counter("stalwart_dead_letters", "Entries written to the DLQ",
                                    ["task", "reason"], registry=None)
        self.worker_lost = Counter("stalwart_worker_lost", "Jobs whose pool child died mid-job",
                                   ["task"], registry=None)
        self.redis_errors = Counter("stalwart_redis_errors", "State-store errors met by a limit or breaker",
                                    ["policy"], registry=None)


class MetricsHook(Hook):
    """Counts every outcome the envelope reports, in whichever process reports it."""

    def __init__(self) -> None:
        self._metrics: JobMetrics | None = None
        self._value_class: Any = None
        self._errors_seen: dict[str, int] = {}

    @property
    def metrics(self) -> JobMetrics:
        """Created on first use, again if multiprocess mode was switched on since."""
        if self._metrics is None or self._value_class is not values.ValueClass:
            self._value_class = values.ValueClass
            self._metrics = JobMetrics()
        return self._metrics

    def after_job(self, ctx: JobContext, outcome: Outcome) -> None:
        m = self.metrics
        m.jobs.labels(ctx.task_name, outcome.kind).inc()
        if outcome.kind in _TIMED:
            m.duration.labels(ctx.task_name).observe(outcome.duration)
        self.sync_redis_errors()

    def on_retry(self, ctx: JobContext, exc: BaseException, delay: float) -> None:
        self.metrics.retries.labels(ctx.task_name).inc()

    def on_defer(self, ctx: JobContext, reason: str, delay: float) -> None:
        self.metrics.deferrals.labels(ctx.task_name, reason).inc()

    def on_dead_letter(self, entry: DeadLetter, exc: BaseException | None) -> None:
        self.metrics.dead_letters.labels(entry.task or "unknown", entry.reason).inc()

    def on_worker_lost(self, task_name: str, task_id: str, reason: str, headers: dict[str, Any]) -> None:
        self.metrics.worker_lost.labels(task_name).inc()

    def sync_redis_errors(self) -> None:
        """Carry this process's new limit/breaker Redis errors into the shared counter."""
        for policy, count in policy_redis_errors().items():
            seen = self._errors_seen.get(policy, 0)
            if count > seen:
                self.metrics.redis_errors.labels(policy).inc(count - seen)
            self._errors_seen[policy] = count


def policy_redis_errors() -> dict[str, int]:
    """Per-process Redis error counts of limits and breakers."""
    return redis_errors()


def enable_multiprocess(base: str | None = None) -> Path:
    """Main process, before the pool forks: a fresh metrics directory shared with the children."""
    clean_stale_dirs(base)
    path = Path(tempfile.mkdtemp(prefix=f"{DIR_PREFIX}{os.getpid()}-", dir=base))
    os.environ[ENV_DIR] = str(path)
    # prometheus_client picks its value class when first imported; choose it explicitly.
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
    return path


def clean_stale_dirs(base: str | None = None) -> None:
    """Remove metrics directories left by workers that no longer run (killed, not stopped)."""
    for path in Path(base or tempfile.gettempdir()).glob(f"{DIR_PREFIX}*"):
        pid = path.name[len(DIR_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def mark_dead(pid: int) -> None:
    """A pool child exited: drop its live-gauge files (its counters stay and keep counting)."""
    path = os.environ.get(ENV_DIR)
    if path and os.path.isdir(path):
        mp.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]


def remove_dir(path: Path) -> None:
    """The worker stopped: its metrics directory goes with it."""
    if os.environ.get(ENV_DIR) == str(path):
        del os.environ[ENV_DIR]
    shutil.rmtree(path, ignore_errors=True)


def exposition(path: Path | None, *collectors: Collector) -> bytes:
    """Prometheus text: the children's and this process's counts plus ``collectors``."""
    registry = CollectorRegistry(auto_describe=False)
    if path is not None:
        mp.MultiProcessCollector(registry, path=str(path))  # type: ignore[no-untyped-call]
    for collector in collectors:
        registry.register(collector)
    return bytes(generate_latest(registry))


class StateCollector:
    """Gauges read at scrape time in the main process: delayed sets, DLQ, breakers, mover."""

    def __init__(self, runtime: Runtime, mover: Mover | None = None) -> None:
        self.runtime = runtime
        self.mover = mover

    def collect(self) -> Iterator[Metric]:
        yield from self._mover()
        up = GaugeMetricFamily("stalwart_state_store_up", "1 when the scrape could read Redis")
        try:
            families = [*self._delayed(), *self._dlq(), *self._breakers()]
        except StateStoreError as exc:
            log.warning("metrics scrape could not read Redis: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _mover(self) -> Iterator[Metric]:
        if self.mover is None:
            return
        moved = CounterMetricFamily("stalwart_delayed_moved", "Jobs moved from delayed sets to queues")
        moved.add_metric([], self.mover.moved)
        errors = CounterMetricFamily("stalwart_mover_redis_errors", "Redis errors met by the mover")
        errors.add_metric([], self.mover.errors)
        yield from (moved, errors)

    def _delayed(self) -> list[Metric]:
        gauge = GaugeMetricFamily("stalwart_delayed_jobs", "Jobs waiting in a delayed set", labels=["queue"])
        for queue, count in self.runtime.delayed.depth().items():
            gauge.add_metric([queue], count)
        return [gauge]

    def _dlq(self) -> list[Metric]:
        stats = self.runtime.dlq.stats()
        size = GaugeMetricFamily("stalwart_dlq_entries", "Entries in the DLQ", labels=["reason"])
        for reason, count in stats["by_reason"].items():
            size.add_metric([reason], count)
        total = GaugeMetricFamily("stalwart_dlq_size", "Entries in the DLQ, all reasons")
        total.add_metric([], stats["total"])
        evicted = CounterMetricFamily("stalwart_dlq_evictions", "DLQ entries evicted by retention",
                                      labels=["cause"])
        for cause, count in stats["evicted_by"].items():
            evicted.add_metric([cause], count)
        return [size, total, evicted]

    def _breakers(self) -> list[Metric]:
        gauge = GaugeMetricFamily("stalwart_breaker_state", "1 for each breaker's current state",
                                  labels=["breaker", "state"])
        for name in self.runtime.limits.names("breakers"):
            state = self.runtime.breakers.state(name)
            for known in sorted({*BREAKER_STATES, state}):
                gauge.add_metric([name, known], 1 if known == state else 0)
        return [gauge]


BREAKER_STATES = ("closed", "half_open", "open", "forced_open")
