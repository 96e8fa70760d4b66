"""Debounced enqueue: the enqueues of one key within ``wait`` become one job, run once with the
latest call, ``wait`` after the last enqueue and at most ``max_wait`` after the first.

A burst lives in the state store (:class:`stalwart.store.flow.DebounceStore`), one hash per task
and rendered key; every enqueue of the burst replaces its call atomically and gets the burst's
task id. A burst's first enqueue publishes a *trigger*, a small job of the internal task
``stalwart.debounce`` on the task's own queue, delayed until the burst is due. When the trigger
runs it either finds the burst due and closes it in the same script (so a later enqueue opens a
new burst: no call is ever added to a burst that has closed) and publishes the task's job under
the burst's id with the latest call, or sends itself again for the new due time.

Crash safety: a trigger killed after closing its burst is delivered again and publishes again
(the call waits in the closed hash until published; the envelope runs one task id once). A
trigger lost before publishing (its enqueuer died) is replaced by the next enqueue of the key
that finds the burst ``REARM_SECONDS`` past due.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from typing import Any

import celery

from stalwart.enqueue.keys import render_key
from stalwart.enqueue.translate import current_trace
from stalwart.errors import ConfigurationError
from stalwart.runtime import Runtime, runtime_of
from stalwart.store.flow import DebounceStore

TRIGGER_TASK = "stalwart.debounce"
REARM_SECONDS = 30.0  # a burst this long past due without its trigger looking gets a new trigger
RETAIN_SECONDS = 86400.0  # a burst's record outlives its longest wait by this much
# Options a debounced enqueue cannot take: the burst decides when the job runs and what it is called.
REFUSED = {"countdown": "the burst decides when the job runs", "eta": "the burst decides when the job runs",
           "task_id": "every enqueue of a burst gets the burst's task id",
           "idempotency_key": "the debounce key already collapses enqueues of a key"}
# What Celery's apply_async hands send_task that is not the job's own (the task object, result class).
_CALLER_ONLY = ("task_type", "result_cls", "producer", "connection", "router", "add_to_parent")


def store(runtime: Runtime) -> DebounceStore:
    return DebounceStore(runtime.redis, runtime.keys)


def ttl_ms(task: Any) -> int:
    window = task.debounce.max_wait if task.debounce.max_wait is not None else task.debounce.wait
    return int((window + REARM_SECONDS + RETAIN_SECONDS) * 1000)


def rendered_key(task: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """The debounce key of one call; ConfigurationError when the arguments cannot render it."""
    return render_key(f"debounce key of {task.name}", task.debounce.key, task.run, args, kwargs)


def stored_options(options: dict[str, Any]) -> dict[str, Any]:
    """The call's Celery options as JSON: refused ones raise, deadlines become absolute."""
    out: dict[str, Any] = {}
    for name, value in options.items():
        if value is None or name in _CALLER_ONLY:
            continue
        if name in REFUSED:
            raise ConfigurationError(f"a debounced task takes no {name}= ({REFUSED[name]})")
        if name in ("deadline", "expires"):
            if isinstance(value, dt.datetime):
                at = (value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)).timestamp()
            elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                at = time.time() + float(value)
            else:
                raise ConfigurationError(f"{name} must be seconds (a number) or a datetime, got {value!r}")
            out["deadline_at"] = min(at, out.get("deadline_at", at))
            continue
        out[name] = getattr(value, "name", value) if name == "queue" else value
    if "trace_id" not in out and current_trace.get() is not None:
        out["trace_id"] = current_trace.get()
    return out


def encode_call(args: tuple[Any, ...], kwargs: dict[str, Any], options: dict[str, Any]) -> str:
    try:
        return json.dumps({"args": list(args), "kwargs": kwargs, "options": options}, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"a debounced call's arguments and options must be JSON: {exc}") from None


def decode_call(text: str) -> tuple[list[Any], dict[str, Any], dict[str, Any]]:
    """A stored call as ``send_task`` arguments (an absolute deadline as a datetime)."""
    call = json.loads(text)
    options = dict(call.get("options") or {})
    at = options.pop("deadline_at", None)
    if isinstance(at, (int, float)):
        options["deadline"] = dt.datetime.fromtimestamp(at, tz=dt.timezone.utc)
    return list(call.get("args") or []), dict(call.get("kwargs") or {}), options


def trigger_queue(app: celery.Celery, name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                  options: dict[str, Any]) -> str | None:
    """The queue the task's job goes to: its trigger waits there too, for the same workers."""
    if options.get("queue"):
        return str(options["queue"])
    routed = app.amqp.router.route({}, name, args, kwargs)
    queue = routed.get("queue")
    return str(getattr(queue, "name", queue)) if queue is not None else None


def send(app: celery.Celery, task: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
         options: dict[str, Any]) -> str:
    """Enqueue one call of a debounced task; the task id of the job that will run it."""
    if task.idempotency_key is not None:
        raise ConfigurationError(f"{task.name}: a debounced task takes no idempotency_key")
    key = rendered_key(task, args, kwargs)
    call = encode_call(args, kwargs, stored_options(options))
    debounce = task.debounce
    runtime = runtime_of(app)
    joined = store(runtime).enqueue(
        task.name, key, new_id=celery.uuid(), wait_ms=math.ceil(debounce.wait * 1000),
        max_wait_ms=math.ceil(debounce.max_wait * 1000) if debounce.max_wait is not None else 0,
        call=call, ttl_ms=ttl_ms(task), rearm_ms=int(REARM_SECONDS * 1000),
    )
    if joined.new or joined.rearm:
        app.send_task(TRIGGER_TASK, args=[task.name, key, joined.burst_id],
                      countdown=max(joined.due_ms, 1) / 1000,
                      queue=trigger_queue(app, task.name, args, kwargs, options))
    return joined.burst_id


def fire(app: celery.Celery, task_name: str, key: str, burst_id: str, queue: str | None) -> str:
    """The trigger's body: publish the burst's job when it is due, else wait again."""
    task = app.tasks.get(task_name)
    if task is None or getattr(task, "debounce", None) is None:
        raise ConfigurationError(f"{task_name} is not a debounced task here; its burst {burst_id} cannot run")
    runtime = runtime_of(app)
    verdict = store(runtime).fire(task_name, key, burst_id, ttl_ms=ttl_ms(task),
                                  rearm_ms=int(REARM_SECONDS * 1000))
    if verdict.action == "wait":
        app.send_task(TRIGGER_TASK, args=[task_name, key, burst_id], countdown=max(verdict.wait_ms, 1) / 1000,
                      queue=queue)
    elif verdict.action == "run":
        args, kwargs, options = decode_call(verdict.call)
        app.send_task(task_name, args, kwargs, task_id=burst_id, stalwart_debounced=True, **options)
        store(runtime).done(task_name, key, burst_id)
    return verdict.action
