"""The ops port: /healthz, /readyz and /metrics, served once per worker by its main process.

``STALWART_OPS_PORT`` turns it on (``0`` picks a free port and logs it). Health is about the
process: alive, its consumer loop turning, and taking work when there is work to take (ready
messages wait in its queues, it has free slots, yet it took nothing for ``stale_seconds``: the
"connected but not consuming" failure). Readiness is about taking work: broker and state store
answer PING, the consumer consumes, and the worker is not draining. The server handles at most
``max_connections`` connections at once, each on its own thread; more are closed at once.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from celery import bootsteps, signals
from celery.worker import state as worker_state
from prometheus_client import CONTENT_TYPE_LATEST
from redis.backoff import NoBackoff
from redis.retry import Retry

from stalwart.broker.mover import Mover
from stalwart.ops import metrics
from stalwart.runtime import runtime_of
from stalwart.settings import Settings
from stalwart.store import broker as broker_store
from stalwart.store.connection import client_from_url, pinger

log = logging.getLogger("stalwart.ops.server")
Check = Callable[[], None]  # raises when the thing it checks is not usable
Ready = Callable[[tuple[str, ...]], int]  # how many messages wait in these lists (raises if unknown)
MAX_CONNECTIONS = 8


@dataclass(frozen=True)
class OpsConfig:
    """Where the ops server listens and when the consumer loop counts as stalled."""

    port: int
    host: str = "0.0.0.0"  # noqa: S104 - Prometheus scrapes workers from another host
    stale_seconds: float = 30.0

    @classmethod
    def from_settings(cls, settings: Settings) -> OpsConfig | None:
        """None when no ops port is configured (``STALWART_OPS_PORT`` unset: the server is off)."""
        if settings.ops_port is None:
            return None
        return cls(port=settings.ops_port, host=settings.ops_host, stale_seconds=settings.ops_stale_seconds)


@dataclass
class OpsState:
    """What the probes report: updated by the consumer and the shutdown signal, read by HTTP."""

    stale_seconds: float = 30.0
    clock: Callable[[], float] = time.monotonic
    consuming: bool = False
    draining: bool = False
    last_beat: float | None = None
    checks: dict[str, Check] = field(default_factory=dict)
    # What the consumer reports on each beat: when it last took a message (or started
    # consuming), the lists it takes from, whether it has a free slot; and how to count the
    # messages waiting in those lists.
    last_take: float | None = None
    lists: tuple[str, ...] = ()
    free_slots: bool = False
    ready: Ready | None = None

    def beat(self) -> None:
        """The consumer loop turned."""
        self.last_beat = self.clock()

    def took(self, at: float | None, lists: tuple[str, ...], free_slots: bool) -> None:
        """The consumer's own report: its last take (monotonic), its lists, its free slots."""
        if at is not None:
            self.last_take = max(self.last_take or at, at)
        self.lists = lists
        self.free_slots = free_slots

    def not_taking(self) -> str | None:
        """Why the consumer counts as stalled although its loop turns, or None.

        Only when it should be taking: consuming, not draining, a free slot, messages waiting.
        """
        if not self.consuming or self.draining or not self.free_slots or self.last_take is None:
            return None
        idle = self.clock() - self.last_take
        if idle <= self.stale_seconds or self.ready is None or not self.lists:
            return None
        try:
            waiting = self.ready(self.lists)
        except Exception:  # noqa: BLE001 - the broker is unreachable: /readyz reports that, not health
            return None
        if waiting <= 0:
            return None
        return f"took nothing for {idle:.1f}s while {waiting} messages wait and it has a free slot"

    def loop_age(self) -> float | None:
        return None if self.last_beat is None else self.clock() - self.last_beat

    def stalled(self) -> bool:
        age = self.loop_age()
        return self.consuming and age is not None and age > self.stale_seconds

    def health(self) -> tuple[int, dict[str, Any]]:
        """200 unless the consumer loop stopped turning while it should be consuming."""
        age = self.loop_age()
        body: dict[str, Any] = {
            "consumer": "draining" if self.draining else ("consuming" if self.consuming else "connecting"),
            "loop_age_seconds": None if age is None else round(age, 3),
        }
        if self.stalled() and not self.draining:
            return 503, {"status": "fail", "reasons": [f"consumer loop stalled for {age:.1f}s"], **body}
        idle = self.not_taking()
        if idle is not None:
            return 503, {"status": "fail", "reasons": [f"consumer {idle}"], **body}
        return 200, {"status": "ok", **body}

    def readiness(self) -> tuple[int, dict[str, Any]]:
        """200 when the worker takes work: not draining, consuming, and its Redis answers."""
        reasons: list[str] = []
        if self.draining:
            reasons.append("draining: the worker is shutting down")
        if not self.consuming:
            reasons.append("not consuming")
        elif self.stalled():
            reasons.append("consumer loop stalled")
        results = {name: self._run(check) for name, check in self.checks.items()}
        reasons += [f"{name}: {error}" for name, error in results.items() if error]
        body = {"checks": {name: error or "ok" for name, error in results.items()}}
        if reasons:
            return 503, {"status": "fail", "reasons": reasons, **body}
        return 200, {"status": "ok", **body}

    @staticmethod
    def _run(check: Check) -> str | None:
        try:
            check()
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready", with its reason
            return f"{type(exc).__name__}: {exc}"
        return None


class OpsHandler(BaseHTTPRequestHandler):
    """Routes the three endpoints; everything else is 404."""

    server: OpsServer
    timeout = 10  # a client that sends nothing gives its thread back

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            self._json(*self.server.state.health())
        elif path == "/readyz":
            self._json(*self.server.state.readiness())
        elif path == "/metrics":
            self._send(200, CONTENT_TYPE_LATEST, self.server.metrics())
        else:
            self._json(404, {"status": "fail", "reasons": [f"no endpoint {path}"]})

    def _json(self, code: int, body: dict[str, Any]) -> None:
        self._send(code, "application/json", json.dumps(body).encode())

    def _send(self, code: int, content_type: str, data: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("ops %s - %s", self.address_string(), format % args)


class OpsServer(ThreadingHTTPServer):
    """A threaded HTTP server on a daemon thread; ``metrics`` renders the exposition.

    At most ``max_connections`` connections are served at once (one thread each); a connection
    beyond that is closed at once, so a flood of clients cannot grow the worker's threads.
    """

    daemon_threads = True

    def __init__(self, config: OpsConfig, state: OpsState, metrics: Callable[[], bytes],
                 max_connections: int = MAX_CONNECTIONS) -> None:
        super().__init__((config.host, config.port), OpsHandler)
        self.state = state
        self.metrics = metrics
        self.refused = 0
        self._slots = threading.BoundedSemaphore(max_connections)
        self._thread: threading.Thread | None = None

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> OpsServer:
        self._thread = threading.Thread(target=self.serve_forever, name="stalwart-ops", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


def waiting(url: str, timeout: float, prefix: str) -> Ready:
    """Counts the messages waiting in some queue lists of the broker at ``url`` (fair lanes too,
    under Stalwart's key ``prefix``)."""
    client = client_from_url(url, timeout, retry=Retry(NoBackoff(), 0))

    def count(lists: tuple[str, ...]) -> int:
        return sum(broker_store.list_lengths(client, list(lists), prefix))

    return count


def ping(url: str, timeout: float) -> Check:
    """A check that PINGs the Redis at ``url`` once, without retrying."""
    return pinger(url, timeout)


def _mover(worker: Any) -> Mover | None:
    """The delayed-set mover of the worker's Stalwart step, if it has started."""
    for step in worker.steps:
        mover = getattr(step, "mover", None)
        if mover is not None:
            return mover  # type: ignore[no-any-return]
    return None


def _child_exited(pid: int | None = None, **_: Any) -> None:
    if pid is not None:
        metrics.mark_dead(pid)


class OpsStep(bootsteps.StartStopStep):
    """Worker main process: the metrics directory (before the pool forks) and the ops server."""

    label = "StalwartOps"
    requires = ("celery.worker.components:Pool",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.config = OpsConfig.from_settings(runtime_of(parent.app).settings)
        self.server: OpsServer | None = None
        self.metrics_dir: Path | None = None
        self.state = OpsState()
        if self.config is None:
            return
        self.state = parent.stalwart_ops = OpsState(stale_seconds=self.config.stale_seconds)
        self.metrics_dir = metrics.enable_multiprocess()
        signals.worker_process_shutdown.connect(_child_exited, weak=False, dispatch_uid="stalwart-metrics")
        signals.worker_shutting_down.connect(self._shutting_down, weak=False)
        signals.worker_shutdown.connect(self._shutdown, sender=parent, weak=False)

    def include_if(self, parent: Any) -> bool:
        return self.config is not None

    def start(self, parent: Any) -> None:
        if self.config is None:  # include_if keeps this step out; narrows the type
            return
        runtime = runtime_of(parent.app)
        settings = runtime.settings
        timeout = min(settings.redis_timeout_seconds, 2.0)
        self.state.checks = {"broker": ping(settings.broker_url, timeout),
                             "state_store": ping(settings.redis_url, timeout)}
        self.state.ready = waiting(settings.broker_url, timeout, settings.prefix)

        def render() -> bytes:
            return metrics.exposition(self.metrics_dir, metrics.StateCollector(runtime, _mover(parent)))

        self.server = OpsServer(self.config, self.state, render).start()
        log.info("ops server listening on %s:%d (/healthz /readyz /metrics)",
                 self.config.host, self.server.port)

    def stop(self, parent: Any) -> None:
        """Draining: /readyz answers 503 while in-flight jobs finish; the server stays up."""
        self.state.draining = True

    def _shutting_down(self, sender: Any = None, **_: Any) -> None:
        self.state.draining = True

    def _shutdown(self, sender: Any = None, **_: Any) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self.metrics_dir is not None:
            metrics.remove_dir(self.metrics_dir)


class Heartbeat(bootsteps.StartStopStep):
    """Consumer: marks the worker consuming and beats on the consumer's timer while it loops."""

    label = "StalwartHeartbeat"
    requires = ("celery.worker.consumer.tasks:Tasks",)
    interval = 1.0

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.tref: Any = None

    def start(self, parent: Any) -> None:
        state: OpsState | None = getattr(parent.controller, "stalwart_ops", None)
        if state is None:
            return
        state.beat()
        state.last_take = state.clock()  # consuming starts now: the stall rule counts from here
        state.consuming = True

        def beat() -> None:
            state.beat()
            state.took(*consumer_report(parent))

        self.tref = parent.timer.call_repeatedly(self.interval, beat)

    def stop(self, parent: Any) -> None:
        state: OpsState | None = getattr(parent.controller, "stalwart_ops", None)
        if state is not None:
            state.consuming = False
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None

    shutdown = stop


def consumer_report(consumer: Any) -> tuple[float | None, tuple[str, ...], bool]:
    """(last take, lists, has a free slot) of a Celery consumer on Stalwart's transport.

    Read on the consumer's own thread (its timer), never from the HTTP threads.
    """
    transport = getattr(getattr(consumer, "connection", None), "transport", None)
    slots = getattr(getattr(consumer, "pool", None), "num_processes", None) or getattr(
        consumer.controller, "concurrency", 1)
    busy = len(worker_state.reserved_requests)
    return (getattr(transport, "stalwart_last_take", None), tuple(getattr(transport, "stalwart_lists", ())),
            busy < int(slots or 1))
