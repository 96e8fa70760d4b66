"""Prometheus metrics: counted in every pool child, aggregated by the worker's main process.

prometheus_client's multiprocess mode keeps each process's counts in files under one directory.
The worker's main process creates a fresh directory before the pool forks
(:func:`enable_multiprocess`); metric objects are created lazily, so whatever imported
prometheus_client first, a child's counts land in that directory and a scrape sums them.

Bounded, however many children ``worker_max_tasks_per_child`` recycles: a child that exits folds
its counter and histogram files into one archive file per type (:func:`mark_dead`), and a scrape
folds the files of children that died without exiting (SIGKILL, OOM) the same way, so the
directory holds the live processes' files plus two. Folding and scraping take one file lock, so a
scrape never counts a child twice. Label values are bounded too: task names and policy names
beyond :data:`MAX_LABEL_VALUES` per label are counted as ``other``, deferral reasons are reduced
to their kind, and bad messages (whose task name is whatever the message said) count as ``-``.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client import multiprocess as mp
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

# A private module of prometheus_client: the one way to read and write its multiprocess files.
# Pinned by tests/unit/test_metrics.py::test_prometheus_mmap_dict_contract.
from prometheus_client.mmap_dict import MmapedDict

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
ARCHIVE = "archive"  # counter_archive.db, histogram_archive.db: the counts of exited children
FOLDED_TYPES = ("counter", "histogram")
LOCK_FILE = "fold.lock"
MAX_LABEL_VALUES = 200
OTHER = "other"
BAD_MESSAGE_REASONS = frozenset({"malformed", "refused_content", "unregistered"})
DEFERRAL_KINDS = (("rate limit", "rate_limit"), ("concurrency limit", "concurrency"), ("breaker", "breaker"),
                  ("state store unavailable", "state_store"))
PLAIN_DEFERRALS = frozenset({"paused", "busy", "claim_lost"})
_thread_lock = threading.Lock()


def _new_lock_in_child() -> None:
    """A child forked while a scrape thread held the lock must not inherit it held."""
    global _thread_lock  # noqa: PLW0603 - the one module lock, replaced in a forked child
    _thread_lock = threading.Lock()


os.register_at_fork(after_in_child=_new_lock_in_child)


class LabelValues:
    """At most ``limit`` distinct values of one label in this process; the rest are ``other``."""

    def __init__(self, limit: int = MAX_LABEL_VALUES) -> None:
        self.limit = limit
        self.seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self.seen:
            return value
        if len(self.seen) >= self.limit:
            return OTHER
        self.seen.add(value)
        return value


def deferral_kind(reason: str) -> str:
    """A deferral reason without the limit or breaker name it may carry."""
    if reason in PLAIN_DEFERRALS:
        return reason
    for marker, kind in DEFERRAL_KINDS:
        if marker in reason:
            return kind
    return OTHER


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
        self.task = LabelValues()
        self.policy = LabelValues()

    @property
    def metrics(self) -> JobMetrics:
        """Created on first use, again if multiprocess mode was switched on since."""
        if self._metrics is None or self._value_class is not values.ValueClass:
            self._value_class = values.ValueClass
            self._metrics = JobMetrics()
        return self._metrics

    def after_job(self, ctx: JobContext, outcome: Outcome) -> None:
        m = self.metrics
        task = self.task(ctx.task_name)
        m.jobs.labels(task, outcome.kind).inc()
        if outcome.kind in _TIMED:
            m.duration.labels(task).observe(outcome.duration)
        self.sync_redis_errors()

    def on_retry(self, ctx: JobContext, exc: BaseException, delay: float) -> None:
        self.metrics.retries.labels(self.task(ctx.task_name)).inc()

    def on_defer(self, ctx: JobContext, reason: str, delay: float) -> None:
        self.metrics.deferrals.labels(self.task(ctx.task_name), deferral_kind(reason)).inc()

    def on_dead_letter(self, entry: DeadLetter, exc: BaseException | None) -> None:
        # a bad message names whatever task it likes: not a label value
        task = "-" if entry.reason in BAD_MESSAGE_REASONS else self.task(entry.task or "-")
        self.metrics.dead_letters.labels(task, entry.reason).inc()

    def on_worker_lost(self, task_name: str, task_id: str, reason: str, headers: dict[str, Any]) -> None:
        self.metrics.worker_lost.labels(self.task(task_name)).inc()

    def sync_redis_errors(self) -> None:
        """Carry this process's new limit/breaker Redis errors into the shared counter."""
        for policy, count in policy_redis_errors().items():
            seen = self._errors_seen.get(policy, 0)
            if count > seen:
                self.metrics.redis_errors.labels(self.policy(policy)).inc(count - seen)
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
    """A pool child exited: drop its live-gauge files and fold its counts into the archive."""
    path = os.environ.get(ENV_DIR)
    if path and os.path.isdir(path):
        mp.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]
        with folding(Path(path)):
            fold(Path(path), pid)


@contextmanager
def folding(path: Path) -> Iterator[None]:
    """Exclusive use of the metrics files, across the processes sharing ``path``."""
    with _thread_lock, (path / LOCK_FILE).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def fold(path: Path, pid: int) -> None:
    """Add the counter and histogram values of process ``pid`` to the archive files, then remove
    its files (the caller holds :func:`folding`). Sums, as a scrape would make them."""
    for typ in FOLDED_TYPES:
        source = path / f"{typ}_{pid}.db"
        if not source.exists():
            continue
        values = list(MmapedDict.read_all_values_from_file(str(source)))  # type: ignore[no-untyped-call]
        archive = MmapedDict(str(path / f"{typ}_{ARCHIVE}.db"))  # type: ignore[no-untyped-call]
        try:
            for key, value, timestamp, _ in values:
                total, _ = archive.read_value(key)  # type: ignore[no-untyped-call]
                archive.write_value(key, total + value, timestamp)  # type: ignore[no-untyped-call]
        finally:
            archive.close()  # type: ignore[no-untyped-call]
        source.unlink()


def fold_dead(path: Path) -> int:
    """Fold the files of every process that is gone (killed, not exited); how many."""
    pids: set[int] = set()
    for f in path.glob("*.db"):
        typ, _, rest = f.name.partition("_")
        name = rest.removesuffix(".db")
        if typ in FOLDED_TYPES and name.isdigit() and int(name) != os.getpid() and not _alive(int(name)):
            pids.add(int(name))
    for pid in pids:
        fold(path, pid)
    return len(pids)


def remove_dir(path: Path) -> None:
    """The worker stopped: its metrics directory goes with it."""
    if os.environ.get(ENV_DIR) == str(path):
        del os.environ[ENV_DIR]
    shutil.rmtree(path, ignore_errors=True)


def exposition(path: Path | None, *collectors: Collector) -> bytes:
    """Prometheus text: the children's and this process's counts plus ``collectors``."""
    registry = CollectorRegistry(auto_describe=False)
    for collector in collectors:
        registry.register(collector)
    if path is None:
        return bytes(generate_latest(registry))
    mp.MultiProcessCollector(registry, path=str(path))  # type: ignore[no-untyped-call]
    with folding(path):  # no child folds its files while they are read
        fold_dead(path)
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
