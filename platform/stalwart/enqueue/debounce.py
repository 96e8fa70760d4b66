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
that finds the burst ``REARM_SECONDS`` past due. Every trigger carries the burst's call as last
known when it was sent (the opening enqueue's, or the latest one's when it waits again): a burst
the state store lost (a restart without persistence) runs with that call when its trigger fires,
so a restart loses the calls made since, never the whole burst.

Deadlines: ``deadline``/``expires`` are stored as ms from the enqueue, which the enqueue script
makes absolute on the Redis clock; the burst's job is published with what is left of it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import time
from typing import Any

import celery

from stalwart.enqueue.flow_keys import render_flow_key
from stalwart.enqueue.translate import current_trace
from stalwart.errors import ConfigurationError
from stalwart.runtime import Runtime, runtime_of
from stalwart.store.flow import DebounceStore

log = logging.getLogger("stalwart.enqueue.debounce")
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
    return render_flow_key(f"debounce key of {task.name}", task.debounce.key, task.run, args, kwargs)


def stored_options(options: dict[str, Any]) -> tuple[dict[str, Any], int | None]:
    """The call's Celery options as JSON (refused ones raise), and its deadline in ms from now.

    ``deadline``/``expires`` leave the options: the enqueue script makes the deadline absolute on
    the Redis clock (a datetime is first measured against this process's clock, as a plain
    enqueue's is), so a producer's skewed clock never decides when the job expires.
    """
    out: dict[str, Any] = {}
    deadline: float | None = None
    for name, value in options.items():
        if value is None or name in _CALLER_ONLY:
            continue
        if name in REFUSED:
            raise ConfigurationError(f"a debounced task takes no {name}= ({REFUSED[name]})")
        if name in ("deadline", "expires"):
            if isinstance(value, dt.datetime):
                left = (value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)).timestamp() - time.time()
            elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                left = float(value)
            else:
                raise ConfigurationError(f"{name} must be seconds (a number) or a datetime, got {value!r}")
            deadline = left if deadline is None else min(deadline, left)
            continue
        out[name] = getattr(value, "name", value) if name == "queue" else value
    if "trace_id" not in out and current_trace.get() is not None:
        out["trace_id"] = current_trace.get()
    return out, None if deadline is None else math.floor(deadline * 1000)


def encode_call(args: tuple[Any, ...], kwargs: dict[str, Any], options: dict[str, Any]) -> str:
    try:
        return json.dumps({"args": list(args), "kwargs": kwargs, "options": options}, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"a debounced call's arguments and options must be JSON: {exc}") from None


def decode_call(text: str, deadline_ms: int | None = None,
                now_ms: int = 0) -> tuple[list[Any], dict[str, Any], dict[str, Any]]:
    """A stored call as ``send_task`` arguments. Its deadline (epoch ms on the Redis clock, read
    at ``now_ms`` on that clock) becomes seconds from now, the form a fresh enqueue takes: the
    transport moves the job's header onto the Redis clock once, as for any enqueue."""
    call = json.loads(text)
    options = dict(call.get("options") or {})
    at = options.pop("deadline_at", None)  # a call stored before deadlines moved to the Redis clock
    if isinstance(at, (int, float)):
        options["deadline"] = dt.datetime.fromtimestamp(at, tz=dt.timezone.utc)
    if deadline_ms is not None:
        options["deadline"] = (deadline_ms - now_ms) / 1000
    return list(call.get("args") or []), dict(call.get("kwargs") or {}), options


def trigger_queue(app: celery.Celery, name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                  options: dict[str, Any]) -> str | None:
    """The queue the task's job goes to: its trigger waits there too, for the same workers."""
    if options.get("queue"):
        return str(options["queue"])
    routed = app.amqp.router.route({}, name, args, kwargs)
    queue = routed.get("queue")
    return str(getattr(queue, "name", queue)) if queue is not None else None


def carried(call: str, deadline_ms: int | None) -> dict[str, Any]:
    """What a trigger carries: the burst's call as last known, run if the state store lost it."""
    return {"call": call, "deadline": deadline_ms}


def send(app: celery.Celery, task: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
         options: dict[str, Any]) -> str:
    """Enqueue one call of a debounced task; the task id of the job that will run it."""
    if task.idempotency_key is not None:
        raise ConfigurationError(f"{task.name}: a debounced task takes no idempotency_key")
    stored, deadline_in_ms = stored_options(options)
    call = encode_call(args, kwargs, stored)  # not JSON: refused before the key is even looked at
    key = rendered_key(task, args, kwargs)
    debounce = task.debounce
    runtime = runtime_of(app)
    joined = store(runtime).enqueue(
        task.name, key, new_id=celery.uuid(), wait_ms=math.ceil(debounce.wait * 1000),
        max_wait_ms=math.ceil(debounce.max_wait * 1000) if debounce.max_wait is not None else 0,
        call=call, ttl_ms=ttl_ms(task), rearm_ms=int(REARM_SECONDS * 1000), deadline_in_ms=deadline_in_ms,
    )
    if joined.new or joined.rearm:
        app.send_task(TRIGGER_TASK, args=[task.name, key, joined.burst_id, carried(call, joined.deadline_ms)],
                      countdown=max(joined.due_ms, 1) / 1000,
                      queue=trigger_queue(app, task.name, args, kwargs, options))
    return joined.burst_id


def fire(app: celery.Celery, task_name: str, key: str, burst_id: str, queue: str | None,
         last: dict[str, Any] | None = None) -> str:
    """The trigger's body: publish the burst's job when it is due, else wait again.

    ``last`` is the call the trigger carries (the latest known when it was sent): a burst the
    state store has no trace of (lost with a restart, say) runs with it under the burst's id. A
    burst whose job was published already is harmless to publish again: the envelope runs one
    task id once.
    """
    task = app.tasks.get(task_name)
    if task is None or getattr(task, "debounce", None) is None:
        raise ConfigurationError(f"{task_name} is not a debounced task here; its burst {burst_id} cannot run")
    runtime = runtime_of(app)
    verdict = store(runtime).fire(task_name, key, burst_id, ttl_ms=ttl_ms(task),
                                  rearm_ms=int(REARM_SECONDS * 1000))
    if verdict.action == "wait":
        app.send_task(TRIGGER_TASK, args=[task_name, key, burst_id, carried(verdict.call, verdict.deadline_ms)],
                      countdown=max(verdict.wait_ms, 1) / 1000, queue=queue)
    elif verdict.action == "run":
        publish(app, task_name, burst_id, verdict.call, verdict.deadline_ms, verdict.now_ms)
        store(runtime).done(task_name, key, burst_id)
    elif verdict.action == "gone" and isinstance(last, dict) and isinstance(last.get("call"), str):
        deadline = last.get("deadline")
        log.warning("debounce %s[%s]: burst %s not in the state store (lost?): running the call its "
                    "trigger carried", task_name, key, burst_id)
        publish(app, task_name, burst_id, last["call"], deadline if isinstance(deadline, int) else None,
                verdict.now_ms)
    return verdict.action


def publish(app: celery.Celery, task_name: str, burst_id: str, call: str, deadline_ms: int | None,
            now_ms: int) -> None:
    """Publish a closed burst's job: its call under the burst's task id."""
    args, kwargs, options = decode_call(call, deadline_ms, now_ms)
    app.send_task(task_name, args, kwargs, task_id=burst_id, stalwart_debounced=True, **options)
