"""The envelope: one delivery of a job, from claim to outcome (DESIGN §3).

Common path, two state-store round trips: ``job_begin`` (deadline, staleness, done/busy check,
delivery count, claim) before the body and ``job_end`` (done + result) after it.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
from contextvars import ContextVar
from typing import Any, NoReturn, cast

from celery.exceptions import Ignore, MaxRetriesExceededError, Reject
from celery.exceptions import Retry as CeleryRetry

from stalwart.dlq.entry import DeadLetter
from stalwart.enqueue.translate import current_trace
from stalwart.errors import CircuitOpen, ConfigurationError, LimitExceeded, StalwartError, StateStoreError
from stalwart.job import callbacks, records, successor
from stalwart.job.classify import ExplicitRetry, Verdict, classify
from stalwart.job.commit import Claim, ClaimLost, holding, retry_store
from stalwart.job.context import JobContext, Outcome
from stalwart.job.header import HEADER, Meta
from stalwart.job.retry import RetryCall, exceeded
from stalwart.job.spec import MAX_AGE_SECONDS, EnvelopeTask
from stalwart.policies import switches
from stalwart.policies.permits import Decision, PermitPolicy
from stalwart.runtime import Runtime
from stalwart.store.jobs import EndOutcome, job_key, owner

log = logging.getLogger("stalwart.job.delivery")
HOSTNAME = socket.gethostname()
# The job running in this process (pool child), for log records and Sentry events.
current_job: ContextVar[JobContext | None] = ContextVar("stalwart_job", default=None)
# The delivery running in this context, for Task.retry().
_current: ContextVar[Delivery | None] = ContextVar("stalwart_delivery", default=None)


class DeadLettered(StalwartError):
    """The job was dead-lettered before or instead of running its body."""


def run(task: EnvelopeTask, runtime: Runtime, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Run one delivery of ``task`` inside the envelope."""
    req = task.request
    task_id = str(req.id)
    meta = Meta.from_header(getattr(req, HEADER, None))
    if meta.first_seen is None:
        meta.first_seen = meta.sent
    if meta.deadline is None and task.max_age is not None and 0 <= task.max_age <= MAX_AGE_SECONDS:
        meta.deadline = meta.sent + int(task.max_age * 1000)  # (the option refuses others at declaration)
    ctx = JobContext(
        task_name=task.name,
        task_id=task_id,
        queue=(req.delivery_info or {}).get("routing_key") or task.app.conf.task_default_queue,
        args=tuple(args),
        kwargs=dict(kwargs),
        meta=meta,
        attempt=(req.retries or 0) + 1,
        hostname=req.hostname or HOSTNAME,
        job_key=job_key(meta.key, task_id),
    )
    delivery = Delivery(task, runtime, ctx)
    token, job_token, own = current_trace.set(meta.trace), current_job.set(ctx), _current.set(delivery)
    try:
        return delivery.run()
    finally:
        _current.reset(own)
        current_job.reset(job_token)
        current_trace.reset(token)


def retry(call: RetryCall, *, throw: bool) -> CeleryRetry:
    """``Task.retry()`` of the job running in this context (see :mod:`stalwart.job.retry`)."""
    delivery = _current.get()
    if delivery is None:
        raise ConfigurationError("retry() is only available inside a task body run by the envelope")
    return delivery.request_retry(call, throw=throw)


class Delivery:
    """The steps of one delivery; each outcome method ends by returning or raising to Celery."""

    def __init__(self, task: EnvelopeTask, runtime: Runtime, ctx: JobContext) -> None:
        self.task = task
        self.runtime = runtime
        self.ctx = ctx
        # unique per delivery: two deliveries of one message in one process are two owners
        self.owner = owner(HOSTNAME, os.getpid(), ctx.meta.msg)
        self.claimed = False
        self.granted: list[tuple[PermitPolicy, Decision]] = []
        self.exhausted = False  # retry() found the retries used up: any failure now is final
        self.handed_on: tuple[int, float] | None = None  # retry(throw=False): (next gen, delay)

    def _ttl_ms(self) -> int:
        s = self.runtime.settings
        return int((s.idempotency_ttl_seconds if self.ctx.meta.key else s.done_ttl_seconds) * 1000)

    def run(self) -> Any:
        try:
            self.task.bind_arguments(self.ctx.args, self.ctx.kwargs)
        except TypeError as exc:
            return self.dead("bad_arguments", exc, ran=False)
        state = self.runtime.switches.state(self.ctx.task_name) if self.runtime.switches else None
        if state == "disabled":
            return self.dead("disabled", DeadLettered(f"task {self.ctx.task_name} is disabled"), ran=False)
        if state == "paused":
            return self.park()
        code, value = self.begin()
        if code != "run":
            return self.not_run(code, value)
        self.claimed = True
        self.runtime.hooks.call("before_job", self.ctx)
        try:
            denied = self.acquire_permits()
        except Exception as exc:  # noqa: BLE001 - a policy's own bug: classified like a failure, never lost
            return self.fail(exc)
        if denied is not None:
            return self.on_denied(denied)
        return self.execute()

    # -- before the body -------------------------------------------------------------------

    def begin(self) -> tuple[str, str]:
        s = self.runtime.settings
        try:
            begun = self.runtime.jobs.begin(
                self.ctx.job_key, owner=self.owner, lease_ms=int(s.lease_seconds * 1000),
                max_deliveries=self.task.max_deliveries, deadline_ms=self.ctx.meta.deadline,
                gen=self.ctx.meta.gen, ttl_ms=self._ttl_ms(), task_id=self.ctx.task_id,
            )
        except StateStoreError as exc:
            log.error("state store unreachable for %s[%s], requeueing: %s",
                      self.ctx.task_name, self.ctx.task_id, exc)
            raise Reject(f"state store unreachable: {exc}", requeue=True) from exc
        self.ctx.server_now_ms = begun.now_ms
        if begun.linked:
            callbacks.skip_sent(self.task.request)
        if begun.code in ("run", "poison", "expired"):
            self.ctx.deliveries = int(begun.value)
        return begun.code, begun.value

    def not_run(self, code: str, value: str) -> Any:
        if code == "done":
            self.runtime.hooks.call("after_job", self.ctx, Outcome("skipped", reason="done"))
            return json.loads(value)["v"] if value else None
        if code in ("dead", "stale"):
            log.info("dropping %s copy of %s[%s]", code, self.ctx.task_name, self.ctx.task_id)
            self.runtime.hooks.call("after_job", self.ctx, Outcome("skipped", reason=code))
            raise Ignore()
        if code == "busy":
            return self.defer(int(value) / 1000 + random.random() * 0.1, "busy")
        if code == "poison":
            exc = DeadLettered(
                f"poison: delivered {value} times without finishing "
                f"(max_deliveries={self.task.max_deliveries})"
            )
            return self.dead("poison", exc, ran=False)
        exc = DeadLettered(f"expired: deadline passed before attempt {self.ctx.attempt} started")
        return self.dead("expired", exc, ran=False)

    def acquire_permits(self) -> Decision | None:
        for policy in (*self.task.permits, *self.task.flow_permits):  # singleton's slot last
            decision = policy.acquire(self.runtime, self.ctx)
            if not decision.granted:
                return decision
            self.granted.append((policy, decision))
        return None

    def release_permits(self, outcome: Outcome) -> None:
        for policy, decision in reversed(self.granted):
            try:
                policy.release(self.runtime, self.ctx, decision, outcome)
            except Exception:
                log.exception("releasing %s for %s[%s] failed", policy.name, self.ctx.task_name, self.ctx.task_id)
        self.granted.clear()

    def on_denied(self, decision: Decision) -> Any:
        self.release_permits(Outcome("deferred", reason=decision.reason))
        if decision.fallback and self.task.fallback is not None:
            log.info("%s[%s]: %s, running fallback", self.ctx.task_name, self.ctx.task_id, decision.reason)
            try:
                result = self.task.fallback(*self.ctx.args, **self.ctx.kwargs)
            except Exception as err:  # noqa: BLE001 - a failing fallback is a failed attempt
                return self.fail(err)
            return self.succeed(result)
        remaining = self.ctx.remaining()
        jitter = random.random() * min(0.05, decision.retry_after * 0.1 + 0.01)
        if remaining is not None and decision.retry_after >= remaining:
            exc = DeadLettered(f"expired: deferred by {decision.reason} past the deadline")
            return self.dead("expired", exc, ran=False)
        return self.defer(decision.retry_after + jitter, decision.reason)

    # -- the body --------------------------------------------------------------------------

    def execute(self) -> Any:
        try:
            ttl_ms = self._ttl_ms()
            claim = Claim(self.runtime.jobs, self.ctx.job_key, self.owner, ttl_ms)
            with self.runtime.leases.hold(self.ctx.job_key, self.owner, ttl_ms), holding(claim):
                result = self.task.run(*self.ctx.args, **self.ctx.kwargs)
        except ClaimLost as exc:
            return self.on_claim_lost(exc)
        except (Ignore, Reject):
            self.release_permits(Outcome("skipped", self.ctx.elapsed()))
            raise
        except BaseException as exc:
            if not isinstance(exc, Exception) and type(exc).__name__ != "SoftTimeLimitExceeded":
                raise  # SystemExit/KeyboardInterrupt: let the worker handle its own shutdown
            if isinstance(exc, (LimitExceeded, CircuitOpen)) and self.handed_on is None:
                # A limit or breaker used around one call in the body said "not now": a deferral,
                # like a declared permit's, so it never uses up an attempt.
                return self.on_denied(Decision.deny(exc.seconds, str(exc)))
            return self.fail(exc)
        return self.succeed(result)

    def on_claim_lost(self, exc: ClaimLost) -> Any:
        """commit() found the claim gone. Dropped only when the job is done or dead; otherwise its
        effect never happened, so the job goes round again (the same generation: a newer holder's
        successor still wins) instead of being acknowledged without an effect."""
        self.release_permits(Outcome("skipped", self.ctx.elapsed()))
        try:
            state = self.runtime.jobs.read(self.ctx.job_key).state
        except StateStoreError:
            state = "unknown"
        if state in ("done", "dead"):
            log.info("%s[%s]: %s; the job is %s", self.ctx.task_name, self.ctx.task_id, exc, state)
            raise exc
        log.warning("%s[%s]: %s (job %s); sending it round again", self.ctx.task_name, self.ctx.task_id, exc, state)
        self.claimed = False
        return self.defer(random.random() * 0.1, "claim_lost")

    # -- outcomes ----------------------------------------------------------------------------

    def succeed(self, result: Any) -> Any:
        if self.handed_on is not None:  # retry(throw=False) then returned: the retry still runs
            return self.finish_handed_on(self.handed_on, None, result)
        outcome = Outcome("succeeded", self.ctx.elapsed())
        self.release_permits(outcome)
        self.end("done", self.encode_result(result))
        self.runtime.hooks.call("after_job", self.ctx, outcome)
        return result

    def encode_result(self, result: Any) -> str:
        try:
            text = json.dumps({"v": result}, separators=(",", ":"))
        except (TypeError, ValueError):
            return json.dumps({"v": None, "unstored": "not JSON-serialisable"})
        if len(text) > self.task.result_max_bytes:
            return json.dumps({"v": None, "unstored": f"larger than {self.task.result_max_bytes} bytes"})
        return text

    def fail(self, exc: BaseException) -> Any:
        if self.handed_on is not None:  # the retry is already published: this run just failed
            return self.finish_handed_on(self.handed_on, exc, None)
        verdict = self.verdict(exc)
        self.ctx.meta.history.append(self.attempt_record(exc))
        if verdict.action == "retry":
            outcome = Outcome("retried", self.ctx.elapsed(), exc, delay=verdict.delay)
            self.release_permits(outcome)
            self.publish_successor(verdict.delay, retries=1, call=self.retry_call(exc))
            self.runtime.hooks.call("on_retry", self.ctx, exc, verdict.delay)
            self.runtime.hooks.call("after_job", self.ctx, outcome)
            log.info("%s[%s] attempt %d failed (%s: %s), retrying in %.2fs",
                     self.ctx.task_name, self.ctx.task_id, self.ctx.attempt,
                     type(exc).__name__, exc, verdict.delay)
            raise CeleryRetry(exc=exc if isinstance(exc, Exception) else None, when=cast(Any, verdict.delay))
        return self.dead(verdict.reason, exc, ran=True)

    def verdict(self, exc: BaseException) -> Verdict:
        if self.exhausted:  # retry() said the retries are used up
            return Verdict("dead", "exhausted")
        return classify(exc, self.task.retry_policy, self.task.permanent_for, self.ctx.attempt, self.ctx.remaining())

    @staticmethod
    def retry_call(exc: BaseException) -> RetryCall | None:
        return exc.call if isinstance(exc, ExplicitRetry) else None

    # -- Task.retry() ------------------------------------------------------------------------

    def request_retry(self, call: RetryCall, *, throw: bool) -> CeleryRetry:
        """``self.retry(...)`` from the body: raise (or, ``throw=False``, publish and return)."""
        policy = self.task.retry_policy
        limit = call.max_retries
        if limit is None and policy.max_attempts is not None:
            limit = policy.max_attempts - 1
        if exceeded(self.ctx.attempt, limit):
            self.exhausted = True
            if call.exc is not None:
                raise call.exc
            raise MaxRetriesExceededError(
                f"Can't retry {self.ctx.task_name}[{self.ctx.task_id}] args:{self.ctx.args} kwargs:{self.ctx.kwargs}",
                task_args=self.ctx.args, task_kwargs=self.ctx.kwargs,
            )
        request = ExplicitRetry(call.exc, call.countdown, call)
        verdict = self.verdict(request)
        if throw or verdict.action != "retry" or self.handed_on is not None:
            raise request
        self.ctx.meta.history.append(self.attempt_record(request))
        next_gen = self.publish_successor(verdict.delay, retries=1, call=call, record=False)
        self.handed_on = (next_gen, verdict.delay)
        self.runtime.hooks.call("on_retry", self.ctx, request, verdict.delay)
        return CeleryRetry(exc=call.exc if isinstance(call.exc, Exception) else None, when=cast(Any, verdict.delay))

    def finish_handed_on(self, handed_on: tuple[int, float], exc: BaseException | None, result: Any) -> Any:
        """The body went on after ``retry(throw=False)`` and ended: record the published retry;
        Celery marks this run as its body ended (success, or failure when it raised)."""
        next_gen, delay = handed_on
        outcome = Outcome("retried", self.ctx.elapsed(), exc, delay=delay)
        self.release_permits(outcome)
        self.end("waiting", "", next_gen, due_ms=int(min(delay, MAX_AGE_SECONDS) * 1000))
        self.runtime.hooks.call("after_job", self.ctx, outcome)
        if exc is not None:
            raise exc
        return result

    def attempt_record(self, exc: BaseException) -> dict[str, Any]:
        return records.attempt_record(self.ctx, exc)

    def dead(self, reason: str, exc: BaseException, *, ran: bool) -> NoReturn:
        """Dead-letter the job, then fail it in Celery so Flower and the logs show it."""
        if not ran:
            self.ctx.meta.history.append(self.attempt_record(exc))
        outcome = Outcome("dead", self.ctx.elapsed(), exc, reason=reason)
        self.release_permits(outcome)
        entry = self.dead_letter(reason, exc)
        self.ctx.dlq_entry_id = entry.id
        if reason != "bad_arguments":
            self.end("dead", "")
        self.runtime.hooks.call("on_dead_letter", entry, exc)
        self.runtime.hooks.call("after_job", self.ctx, outcome)
        log.error("%s[%s] dead-lettered (%s) as %s: %s: %s", self.ctx.task_name, self.ctx.task_id,
                  reason, entry.id, type(exc).__name__, exc)
        if isinstance(exc, DeadLettered):
            raise DeadLettered(f"{exc} (dead-letter entry {entry.id})")
        raise exc

    def dead_letter(self, reason: str, exc: BaseException) -> DeadLetter:
        entry = records.dead_letter_entry(self.ctx, self.task.request, reason, exc)
        try:
            if not self.runtime.dlq.add(entry):  # this message is dead-lettered already (a redelivery)
                log.info("%s[%s] was dead-lettered before as %s", self.ctx.task_name, self.ctx.task_id, entry.id)
        except StateStoreError as err:
            log.error("could not write dead-letter entry for %s[%s], requeueing: %s",
                      self.ctx.task_name, self.ctx.task_id, err)
            raise Reject(f"DLQ unreachable: {err}", requeue=True) from err
        except Exception as err:  # a bug writing the entry: the job goes back, never acknowledged unfiled
            log.exception("could not write dead-letter entry for %s[%s], requeueing",
                          self.ctx.task_name, self.ctx.task_id)
            raise Reject(f"DLQ entry not written: {type(err).__name__}", requeue=True) from err
        return entry

    def defer(self, delay: float, reason: str) -> NoReturn:
        """Send the job back through the delayed set: not a failure, no attempt used."""
        self.publish_successor(delay, retries=0)
        self.deferred(reason, delay)

    def park(self) -> NoReturn:
        """A paused task's job: parked on the broker until the task is resumed, so it takes no
        worker slot and is not delivered again while paused (not a failure, no attempt used)."""
        self.publish_successor(0.0, retries=0, park=True)
        try:  # a resume may have raced this park: look again, fresh, and release if so
            switches.release_unpaused(self.runtime.redis, self.runtime.broker_redis, self.runtime.keys,
                                      task=self.ctx.task_name)
        except StateStoreError as exc:
            log.warning("could not check the switches after parking %s[%s]: %s",
                        self.ctx.task_name, self.ctx.task_id, exc)
        self.deferred("paused", 0.0)

    def deferred(self, reason: str, delay: float) -> NoReturn:
        self.runtime.hooks.call("on_defer", self.ctx, reason, delay)
        outcome = Outcome("deferred", self.ctx.elapsed(), reason=reason, delay=delay)
        self.runtime.hooks.call("after_job", self.ctx, outcome)
        log.debug("%s[%s] deferred %.3fs (%s)", self.ctx.task_name, self.ctx.task_id, delay, reason)
        raise Ignore()

    def publish_successor(self, delay: float, retries: int, *, call: RetryCall | None = None,
                          record: bool = True, park: bool = False) -> int:
        """Publish the next message of this job, then (``record``) record it: a crash between
        loses nothing. Its arguments, options and custom headers are this one's, changed by
        ``call`` (a ``retry()``); returns its generation."""
        next_gen = self.ctx.meta.gen + 1 if self.claimed else self.ctx.meta.gen
        sig = successor.signature(self.task, self.ctx, gen=next_gen, delay=delay, retries=retries, call=call,
                                  park=park)
        try:
            sig.apply_async()
        except Exception as err:  # broker unreachable (kombu/redis errors): hand the job back
            log.error("could not publish the next message of %s[%s], requeueing: %s",
                      self.ctx.task_name, self.ctx.task_id, err)
            raise Reject(f"broker unreachable: {err}", requeue=True) from err
        if self.claimed and record:
            self.end("waiting", "", next_gen, due_ms=int(min(delay, MAX_AGE_SECONDS) * 1000))
        return next_gen

    def end(self, outcome: EndOutcome, result: str, next_gen: int = 0, due_ms: int = 0) -> None:
        def record() -> bool:
            return self.runtime.jobs.end(self.ctx.job_key, owner=self.owner, outcome=outcome,
                                         ttl_ms=self._ttl_ms(), gen=self.ctx.meta.gen, result=result,
                                         next_gen=next_gen, due_ms=due_ms)

        try:  # retried for about a lease: rides out a state-store restart or failover
            retry_store(record, self.runtime.settings.lease_seconds)
        except StateStoreError as exc:
            # The job's effect already happened; the claim's lease expires on its own.
            log.error("could not record %s for %s[%s]: %s", outcome, self.ctx.task_name, self.ctx.task_id, exc)
