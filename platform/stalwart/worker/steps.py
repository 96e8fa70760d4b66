"""The worker's composition root: the bootsteps that wire Stalwart into a starting worker.

``Stalwart()`` only registers these steps. Everything with an effect on the process (log
formatting, Sentry, the metrics hook, run-time switches, the mover, the visibility keeper,
presence, the ops port) happens here, when a worker builds its blueprint, never when an
enqueuing app or the CLI builds a ``Stalwart()``.
"""

from __future__ import annotations

from typing import Any

import celery
from celery import bootsteps
from celery.worker import state as worker_state

from stalwart.broker.mover import Mover
from stalwart.broker.visibility import VisibilityKeeper
from stalwart.job.pools import check_time_limits
from stalwart.ops import logs, sentry
from stalwart.ops.metrics import MetricsHook
from stalwart.ops.presence import Presence
from stalwart.ops.server import Heartbeat, OpsStep
from stalwart.policies.singleton import DeadWaiting
from stalwart.policies.switches import SwitchBoard
from stalwart.runtime import Runtime, runtime_of


def in_flight_tags() -> list[str]:
    """Delivery tags of every message this worker has received and not yet acknowledged."""
    for _ in range(3):
        try:
            return [r.message.delivery_tag for r in list(worker_state.reserved_requests)]
        except RuntimeError:  # the set changed while being copied; try again
            continue
    return []


def wire(app: celery.Celery, runtime: Runtime) -> None:
    """Per-process wiring, in the worker's main process before the pool forks (children inherit it)."""
    if runtime.wired:
        return
    runtime.wired = True
    logs.install(runtime.settings.log_format)
    sentry.install(app, runtime)
    runtime.switches = SwitchBoard(lambda: runtime.redis, runtime.keys)
    runtime.hooks.add(MetricsHook())
    runtime.hooks.add(DeadWaiting(runtime))  # a dead-lettered singleton job stops being its key's waiting one


class StalwartStep(bootsteps.StartStopStep):
    """Wires the process, then runs the mover, the visibility keeper and presence with the worker."""

    label = "Stalwart"
    # Threads start only once the pool has forked its children: a fork copies every lock a
    # running thread holds, and a child would wait on it forever.
    requires = ("celery.worker.components:Pool",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        wire(parent.app, runtime_of(parent.app))
        # time limits on a pool that cannot enforce them: refused here, loudly (stalwart.job.pools)
        check_time_limits(parent.app, parent.pool_cls, runtime_of(parent.app).settings.unenforced_time_limits)
        self.mover: Mover | None = None
        self.keeper: VisibilityKeeper | None = None
        self.presence: Presence | None = None

    def start(self, parent: Any) -> None:
        runtime = runtime_of(parent.app)
        options = parent.app.conf.broker_transport_options
        self.mover = Mover(runtime.delayed, runtime.settings.mover_interval_seconds)
        self.mover.start()
        self.keeper = VisibilityKeeper(
            runtime.broker_redis,
            # the index's full name: kombu's global_keyprefix is part of it
            options.get("global_keyprefix", "") + options.get("unacked_index_key", "unacked_index"),
            in_flight_tags,
            interval=max(0.5, options.get("visibility_timeout", 15) / 3),
        )
        self.keeper.start()
        self.presence = Presence(runtime.presence, parent.hostname)
        self.presence.start()

    def stop(self, parent: Any) -> None:
        for part in (self.mover, self.keeper, self.presence):
            if part is not None:
                part.stop()


def register_steps(app: celery.Celery) -> None:
    """Add Stalwart's bootsteps to ``app`` (no other effect)."""
    app.steps["worker"].add(StalwartStep)
    app.steps["worker"].add(OpsStep)
    app.steps["consumer"].add(Heartbeat)
