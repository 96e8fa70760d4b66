"""The run side of ``singleton=``: one job per rendered key runs at a time, on a leased slot.

An envelope permit (see :mod:`stalwart.policies.permits`). Granted: the job holds its key's slot,
leased for the job lease and renewed while it runs (a SIGKILLed holder's slot comes back when
the lease runs out), and, if it was its key's waiting job, it stops being it in the same script.
Denied: the job is deferred (no attempt used) for about the holder's expected rest (the key's
average run time so far; a quarter of the holder's run once it is past that), never past the
holder's lease nor over ``MAX_RETRY_SECONDS``; only a key's waiting job is normally denied, so
the churn is one job per key, a few times per run. The state store unreachable: denied for a
second (one at a time is never given up).

A dead-lettered job (any reason) that is its key's waiting job stops being it (:class:`DeadWaiting`,
a hook every Stalwart app registers), so a later enqueue makes a new job instead of merging into
one that will never run.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stalwart.enqueue.flow_keys import render_flow_key
from stalwart.enqueue.keys import KeySpec
from stalwart.enqueue.singleton import store, ttl_ms
from stalwart.errors import ConfigurationError, PolicyKeyError, StateStoreError
from stalwart.hooks import Hook
from stalwart.job.context import JobContext, Outcome
from stalwart.policies.permits import Decision
from stalwart.runtime import Runtime
from stalwart.store.flow import SingletonStore

log = logging.getLogger("stalwart.policies.singleton")
MAX_RETRY_SECONDS = 5.0  # a denied job asks again at least this often (see singleton_acquire.lua)
UNAVAILABLE_RETRY = 1.0


@dataclass(frozen=True)
class SingletonPermit:
    """The run slot of a singleton task's rendered key."""

    spec: KeySpec
    fun: Callable[..., Any]
    name: str = "singleton"

    def acquire(self, runtime: Runtime, ctx: JobContext) -> Decision:
        task = runtime.task_of(ctx.task_name)  # its run() is the call's signature (bind=True drops self)
        run = task.run if task is not None else self.fun
        try:
            key = render_flow_key(f"singleton key of {ctx.task_name}", self.spec, run, ctx.args, ctx.kwargs)
        except ConfigurationError as exc:  # these arguments never render it: dead-lettered, not retried
            raise PolicyKeyError(str(exc)) from None
        token = f"{ctx.task_id}:{uuid.uuid4().hex[:12]}"
        lease_ms = int(runtime.settings.lease_seconds * 1000)
        singletons = store(runtime)
        try:
            granted, wait_ms = singletons.acquire(
                ctx.task_name, key, task_id=ctx.task_id, token=token, lease_ms=lease_ms, ttl_ms=ttl_ms(runtime),
                max_retry_ms=int(MAX_RETRY_SECONDS * 1000))
        except StateStoreError as exc:
            log.warning("singleton %s[%s]: state store unavailable, deferring: %s", ctx.task_name, key, exc)
            return Decision.deny(UNAVAILABLE_RETRY, f"singleton {ctx.task_name}: state store unavailable")
        if not granted:
            return Decision.deny(wait_ms / 1000, f"singleton {ctx.task_name}[{key}] is running")
        RENEWER.add(token, Held(singletons, ctx.task_name, key, lease_ms, ttl_ms(runtime)))
        return Decision.grant(token)

    def release(self, runtime: Runtime, ctx: JobContext, decision: Decision, outcome: Outcome) -> None:
        if not decision.granted or decision.token is None:
            return
        held = RENEWER.remove(decision.token)
        if held is not None:
            held.store.release(held.task, held.key, decision.token)

    def dead(self, runtime: Runtime, ctx: JobContext) -> None:
        """The job was dead-lettered: if it is its key's waiting job it stops being it (a later
        enqueue then makes a new job instead of merging into one that never runs)."""
        task = runtime.task_of(ctx.task_name)
        try:
            key = render_flow_key(f"singleton key of {ctx.task_name}", self.spec,
                                  task.run if task is not None else self.fun, ctx.args, ctx.kwargs)
        except ConfigurationError:
            return  # a key its arguments never render was never a key's waiting job
        try:
            store(runtime).forget(ctx.task_name, key, ctx.task_id, ttl_ms=ttl_ms(runtime))
        except StateStoreError as exc:  # it is then replaced once not seen for STALE_SECONDS
            log.warning("singleton %s[%s]: could not clear the dead-lettered waiting job %s: %s",
                        ctx.task_name, key, ctx.task_id, exc)


class DeadWaiting(Hook):
    """Tells a dead-lettered singleton job's permit (every dead reason goes through ``after_job``
    with a ``dead`` outcome, in the process that dead-lettered it)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def after_job(self, ctx: JobContext, outcome: Outcome) -> None:
        if outcome.kind != "dead":
            return
        task = self.runtime.task_of(ctx.task_name)
        for permit in getattr(task, "flow_permits", ()):
            if isinstance(permit, SingletonPermit):
                permit.dead(self.runtime, ctx)


@dataclass
class Held:
    """A slot this process holds: where it is and how long its lease is."""

    store: SingletonStore
    task: str
    key: str
    lease_ms: int
    ttl_ms: int
    renewed: float = 0.0


class SlotRenewer:
    """One daemon thread per process renewing held singleton slots every third of their lease.

    A renewal runs under the lock, so a slot released meanwhile is never taken back by a late one.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._held: dict[str, Held] = {}
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._clock = clock

    def forget(self) -> None:
        """A forked child starts empty, with its own lock (the parent's may have been held)."""
        self._lock = threading.Lock()
        self._held, self._pid = {}, None

    def add(self, token: str, held: Held) -> None:
        with self._lock:
            if self._pid != os.getpid():
                self._pid, self._held = os.getpid(), {}
                threading.Thread(target=self._run, name="stalwart-singleton-leases", daemon=True).start()
            held.renewed = self._clock()
            self._held[token] = held

    def remove(self, token: str) -> Held | None:
        with self._lock:
            return self._held.pop(token, None)

    def held(self) -> int:
        with self._lock:
            return len(self._held)

    def _run(self) -> None:
        while True:
            time.sleep(0.1)
            self.renew_due()

    def renew_due(self) -> None:
        now = self._clock()
        with self._lock:
            due = [t for t, h in self._held.items() if now - h.renewed >= h.lease_ms / 3000]
        for token in due:
            with self._lock:
                held = self._held.get(token)
                if held is None:
                    continue
                try:
                    code = held.store.renew(held.task, held.key, token, lease_ms=held.lease_ms, ttl_ms=held.ttl_ms)
                except StateStoreError as exc:
                    log.warning("singleton %s[%s]: could not renew the slot: %s", held.task, held.key, exc)
                    continue
                held.renewed = self._clock()
            if code == 0:
                log.warning("singleton %s[%s]: the slot's lease ran out and another job took it",
                            held.task, held.key)


RENEWER = SlotRenewer()
os.register_at_fork(after_in_child=RENEWER.forget)
