"""Worker bootsteps: the delayed-set mover and the in-flight visibility keeper."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from celery import bootsteps
from celery.worker import state as worker_state

from . import logs, reporting
from .delayed import Mover
from .presence import Presence
from .switches import SwitchBoard
from .visibility import VisibilityKeeper

if TYPE_CHECKING:
    from .app import Stalwart


def in_flight_tags() -> list[str]:
    """Delivery tags of every message this worker has received and not yet acknowledged."""
    for _ in range(3):
        try:
            return [r.message.delivery_tag for r in list(worker_state.reserved_requests)]
        except RuntimeError:  # the set changed while being copied; try again
            continue
    return []


class StalwartStep(bootsteps.StartStopStep):
    """Starts the mover and the visibility keeper with the worker, stops them with it."""

    label = "Stalwart"
    # Threads start only once the pool has forked its children: a fork copies every lock a
    # running thread holds, and a child would wait on it forever.
    requires = ("celery.worker.components:Pool",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.mover: Mover | None = None
        self.keeper: VisibilityKeeper | None = None
        self.presence: Presence | None = None

    def start(self, parent: Any) -> None:
        app: Stalwart = parent.app
        runtime = app.stalwart
        options = app.conf.broker_transport_options
        self.mover = Mover(runtime.broker_redis, runtime.keys, runtime.settings.mover_interval_seconds)
        self.mover.start()
        self.keeper = VisibilityKeeper(
            runtime.broker_redis,
            options.get("unacked_index_key", "unacked_index"),
            in_flight_tags,
            interval=max(0.5, options.get("visibility_timeout", 15) / 3),
        )
        self.keeper.start()
        self.presence = Presence(runtime.redis, runtime.keys, parent.hostname)
        self.presence.start()

    def stop(self, parent: Any) -> None:
        for part in (self.mover, self.keeper, self.presence):
            if part is not None:
                part.stop()


def install(app: Stalwart) -> None:
    """Register Stalwart's bootsteps on ``app``."""
    from . import ops  # noqa: PLC0415 - ops imports prometheus_client, which the CLI never needs
    from .metrics import MetricsHook  # noqa: PLC0415

    app.steps["worker"].add(StalwartStep)
    logs.install()
    reporting.install(app)
    app.stalwart.switches = SwitchBoard(lambda: app.stalwart.redis, app.stalwart.keys)
    app.steps["worker"].add(ops.OpsStep)
    app.steps["consumer"].add(ops.Heartbeat)
    app.stalwart.hooks.add(MetricsHook())
