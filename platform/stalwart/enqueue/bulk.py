"""Bulk enqueue: many jobs, one idempotency round trip and one publish pipeline per chunk.

Each message is built and routed by Celery's own machinery (router, ``create_task_message``,
``send_task_message``) on a producer whose publishes kombu buffers in one Redis pipeline
(``Producer.batch``).
Idempotency keys are claimed first, in one pipeline of ``enqueue_claim`` calls, so a key
already enqueued (earlier, or earlier in the same batch) returns its owner and is not published.
A ``fair_by`` task's jobs are stamped with their ``stalwart_fair`` header as ``send_task`` stamps
them, and the transport queues them in their lane within the same pipeline.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import celery

from stalwart.enqueue import translate as enqueue_mod
from stalwart.job.header import FAIR_HEADER
from stalwart.runtime import runtime_of
from stalwart.store.enqueue import scoped as scoped_key

CHUNK = 1000
# Redis commands per message in the publish pipeline: LPUSH or the delayed-set script
# (plus PEXPIRE on queues with an expiry); the batch holds a whole chunk and flushes once.
_COMMANDS_PER_JOB = 6

JobSpec = tuple[Sequence[Any], Mapping[str, Any], Mapping[str, Any]] | tuple[Sequence[Any], Mapping[str, Any]]


@dataclass
class Prepared:
    """One job ready to publish: its task id, Celery options (headers set) and key."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    options: dict[str, Any]
    task_id: str = field(default_factory=celery.uuid)
    key: str | None = None


def enqueue_many(
    app: celery.Celery, task: str | celery.Task[Any, Any], jobs: Iterable[JobSpec], *, chunk: int = CHUNK
) -> list[Any]:
    """Enqueue ``(args, kwargs[, options])`` jobs of ``task``; one AsyncResult per job, in order.

    A job whose idempotency key is already enqueued (pending, running or done within its
    retention, or an earlier job of this call) gets the owner's result handle and is not
    published. ``countdown``/``eta`` jobs go to the delayed set in the same pipeline.
    """
    name = task if isinstance(task, str) else task.name
    task_obj = app.tasks.get(name)
    prepared = [prepare(task_obj, job, name) for job in jobs]
    results: list[Any] = []
    for start in range(0, len(prepared), chunk):
        results.extend(_enqueue_chunk(app, name, prepared[start : start + chunk]))
    return results


def prepare(task: Any, job: JobSpec, name: str | None = None) -> Prepared:
    """Translate one job's Stalwart options (key, deadline, countdown, trace) into headers."""
    args, kwargs = tuple(job[0] or ()), dict(job[1] or {})
    options = dict(job[2]) if len(job) > 2 else {}
    if (
        task is not None
        and getattr(task, "idempotency_key", None) is not None
        and "idempotency_key" not in options
    ):
        options["idempotency_key"] = task.derive_key(args, kwargs)
    fair = task.fair_header(args, kwargs) if callable(getattr(task, "fair_header", None)) else None
    if fair is not None:  # a re-send that names its lane keeps it
        options["headers"] = {FAIR_HEADER: fair, **(options.get("headers") or {})}
    name = name or getattr(task, "name", None)
    if name and isinstance(options.get("idempotency_key"), str):  # one key, one task
        options["idempotency_key"] = scoped_key(name, options["idempotency_key"])
    task_id = options.pop("task_id", None) or celery.uuid()
    meta = enqueue_mod.translate(options)
    return Prepared(args, kwargs, options, task_id, meta.key)


def claim_keys(app: celery.Celery, jobs: Sequence[Prepared]) -> list[str]:
    """The owning task id of each job's key (its own id when unkeyed or newly claimed)."""
    keyed = [(job.key, job.task_id) for job in jobs if job.key is not None]
    if not keyed:
        return [job.task_id for job in jobs]
    runtime = runtime_of(app)
    owners = iter(runtime.enqueues.claim_many(keyed, int(runtime.settings.idempotency_ttl_seconds * 1000)))
    return [next(owners) if job.key is not None else job.task_id for job in jobs]


def release_keys(app: celery.Celery, jobs: Sequence[Prepared]) -> None:
    """Give back the keys this call claimed for jobs it then failed to publish."""
    runtime_of(app).enqueues.release([job.key for job in jobs if job.key is not None])


def _enqueue_chunk(app: celery.Celery, name: str, jobs: Sequence[Prepared]) -> list[Any]:
    owners = claim_keys(app, jobs)
    fresh = [job for job, owner in zip(jobs, owners, strict=True) if owner == job.task_id]
    try:
        with app.producer_or_acquire() as producer, _batch(producer, len(jobs)):
            declared: set[str] = set()
            for job in fresh:
                _publish(app, producer, name, job, declared)
    except BaseException:
        release_keys(app, fresh)
        raise
    return [app.AsyncResult(owner) for owner in owners]


def _batch(producer: Any, jobs: int) -> Any:
    """kombu's publish batch (one pipeline per chunk); kombu < 5.7 has none and publishes each job."""
    if not hasattr(producer, "batch"):
        return nullcontext()
    return producer.batch(max_size=max(1, jobs * _COMMANDS_PER_JOB))


def _publish(app: celery.Celery, producer: Any, name: str, job: Prepared, declared: set[str]) -> None:
    """Build the protocol-2 message with Celery's machinery and publish it into the batch.

    Unlike ``send_task`` this declares each queue once per chunk and emits no ``task-sent``
    event (monitors see the job from ``task-received`` on).
    """
    options = app.amqp.router.route(dict(job.options), name, job.args, job.kwargs)
    limits = {k: options.pop(k, None) for k in ("time_limit", "soft_time_limit")}
    message = app.amqp.create_task_message(
        job.task_id, name, job.args, job.kwargs, ignore_result=options.pop("ignore_result", None),
        reply_to=options.pop("reply_to", None) or app.thread_oid, **limits,
    )
    queue = options.get("queue")
    if queue is not None and getattr(queue, "name", None) not in declared:
        producer.maybe_declare(queue)
        declared.add(queue.name)
    app.amqp.send_task_message(producer, name, message, declare=[], **options)

