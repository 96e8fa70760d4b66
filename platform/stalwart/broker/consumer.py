"""The worker's guard against bad messages: they are dead-lettered, never fatal, never dropped.

Runs in the worker's main process. Celery's consumer logs and discards a message for an
unknown task and rejects undecodable ones; these hooks write a DLQ entry with the reason
first, then acknowledge. The task strategy checks each message's content type and body before
Celery hands it to the pool, where a decode failure would fail the job without a trace.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

import celery
from celery import signals
from celery.utils.collections import AttributeDict
from celery.worker.consumer import Consumer as CeleryConsumer
from celery.worker.strategy import default as default_strategy
from kombu.exceptions import ContentDisallowed
from kombu.serialization import loads, prepare_accept_content

from stalwart.broker.transport import MALFORMED_CONTENT_TYPE, MALFORMED_HEADER
from stalwart.dlq import message as dlq_message
from stalwart.dlq.entry import DeadLetter
from stalwart.errors import StalwartError, StateStoreError
from stalwart.job.header import HEADER, Meta
from stalwart.runtime import runtime_of

log = logging.getLogger("stalwart.broker.consumer")
RAW_LIMIT = 64 * 1024


def body_problem(message: Any, accept: set[str]) -> tuple[str, str] | None:
    """(reason, detail) when a protocol-2 task message cannot run, else None."""
    if message.content_type == MALFORMED_CONTENT_TYPE:
        return "malformed", str((message.headers or {}).get(MALFORMED_HEADER, "undecodable"))
    if message.content_type not in accept:
        return "refused_content", f"content type {message.content_type!r} is refused (accepted: {sorted(accept)})"
    try:
        decoded = loads(message.body, message.content_type, message.content_encoding, accept=accept)
    except Exception as exc:  # noqa: BLE001 - any decoder error means the same thing: the body is unusable
        return "malformed", f"body does not decode as {message.content_type}: {exc}"
    if not (
        isinstance(decoded, (list, tuple))
        and len(decoded) == 3
        and isinstance(decoded[0], (list, tuple))
        and isinstance(decoded[1], dict)
    ):
        return "malformed", "body is not [args, kwargs, embed]"
    headers = message.headers or {}
    if not isinstance(headers.get("id"), str):
        return "malformed", "message headers lack a task id"
    return None


class BadMessage(StalwartError):
    """A message that never reached a task body; it was dead-lettered with this reason."""


def dead_letter_message(consumer: Any, message: Any, reason: str, detail: str,
                        exc: BaseException | None = None) -> None:
    """Write a DLQ entry for a message that never reached a task body, ack it, then tell Celery's
    listeners as Celery itself would (signal, ``task-failed`` event, result backend)."""
    app = consumer.app
    entry = entry_for_message(message, reason, detail)
    try:
        runtime_of(app).dlq.add(entry)
    except StateStoreError as err:
        log.error("could not dead-letter a %s message (%s); requeueing it: %s", reason, detail, err)
        message.reject_log_error(log, (), requeue=True)
        return
    log.error("dead-lettered a %s message as %s: %s", reason, entry.id, detail)
    runtime_of(app).hooks.call("on_dead_letter", entry, None)
    message.ack_log_error(log, ())
    announce(consumer, message, entry, exc)


def announce(consumer: Any, message: Any, entry: DeadLetter, exc: BaseException | None) -> None:
    """Celery's ``task_unknown``/``task_rejected`` signal, and for a message with a task id a
    ``task-received`` + ``task-failed`` event pair (so Flower lists it) and a FAILURE result."""
    if entry.reason == "unregistered":
        signals.task_unknown.send(sender=consumer, message=message, exc=exc, name=entry.task, id=entry.task_id)
    else:
        signals.task_rejected.send(sender=consumer, message=message, exc=exc)
    if not entry.task_id:
        return
    error = BadMessage(f"{entry.reason}: {entry.exc_message} (dead-letter entry {entry.id})")
    headers = message.headers if isinstance(message.headers, dict) else {}
    request = AttributeDict(name=entry.task, chord=None, root_id=headers.get("root_id"), errbacks=None,
                            correlation_id=entry.task_id, reply_to=None, ignore_result=False)
    try:
        consumer.app.backend.mark_as_failure(entry.task_id, error, request=request)
    except Exception as err:  # noqa: BLE001 - the entry is written; a sick result backend only loses the mark
        log.warning("could not mark %s failed in the result backend: %s", entry.task_id, err)
    dispatcher = getattr(consumer, "event_dispatcher", None)
    if dispatcher is None:
        return
    dispatcher.send("task-received", uuid=entry.task_id, name=entry.task or "(unknown)",
                    args=f"(dead-letter entry {entry.id})", kwargs="{}", retries=0, eta=None,
                    root_id=headers.get("root_id"), parent_id=headers.get("parent_id"))
    dispatcher.send("task-failed", uuid=entry.task_id, exception=repr(error), traceback="")


def entry_for_message(message: Any, reason: str, detail: str) -> DeadLetter:
    headers = message.headers if isinstance(message.headers, dict) else {}
    headers = {k: v for k, v in headers.items() if k != MALFORMED_HEADER}
    info = message.delivery_info or {}
    meta = Meta.from_header(headers.get(HEADER))
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    options: dict[str, Any] | None = None
    raw: str | None = None
    call = _decoded_call(message) if reason == "unregistered" else None
    if call is not None:  # kept whole (arguments, canvas, custom headers) so replay can resend it
        args, kwargs = call[0], call[1]
        options = dlq_message.from_message(headers, call[2], message.properties)
    else:  # never decoded into a call: kept raw, and replay refuses it (no arguments to resend)
        raw = _raw(message.body)
    return DeadLetter(
        source=str(message.delivery_tag),
        reason=reason,
        task=headers.get("task") if isinstance(headers.get("task"), str) else None,
        task_id=headers.get("id") if isinstance(headers.get("id"), str) else None,
        queue=info.get("routing_key"),
        args=args,
        kwargs=kwargs,
        headers=headers,
        exc_type={"unregistered": "NotRegistered", "refused_content": "ContentDisallowed"}.get(reason, "DecodeError"),
        exc_message=detail[:4000],
        first_seen=meta.first_seen or meta.sent if HEADER in headers else None,
        raw=raw,
        options=options,
    )


def _decoded_call(message: Any) -> tuple[list[Any], dict[str, Any], dict[str, Any]] | None:
    try:
        decoded = message.decode()
    except Exception:  # noqa: BLE001 - a refused (pickle) or undecodable body: there is no call
        return None
    return dlq_message.split_body(decoded)


def _raw(body: object) -> str:
    data = body if isinstance(body, bytes) else str(body).encode("utf-8", "surrogateescape")
    try:
        return data[:RAW_LIMIT].decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(data[:RAW_LIMIT]).decode()


def strategy(task: Any, app: celery.Celery, consumer: Any, **kwargs: Any) -> Any:
    """Celery's default strategy, behind a check of each message's content and body."""
    inner = default_strategy(task, app, consumer, **kwargs)
    accept = set(prepare_accept_content(app.conf.accept_content) or ())

    def handler(message: Any, body: Any, ack: Any, reject: Any, callbacks: Any, **kw: Any) -> Any:
        if body is None:  # protocol 2: Celery would only decode the body in the pool child
            problem = body_problem(message, accept)
            if problem is not None:
                return dead_letter_message(consumer, message, *problem)
        return inner(message, body, ack, reject, callbacks, **kw)

    return handler


class Consumer(CeleryConsumer):
    """Celery's consumer, dead-lettering what it would discard or choke on."""

    def on_unknown_message(self, body: Any, message: Any) -> None:
        dead_letter_message(self, message, "malformed", "not a Celery task message (no task name)")

    def on_unknown_task(self, body: Any, message: Any, exc: BaseException) -> None:
        name = (message.headers or {}).get("task") if isinstance(message.headers, dict) else None
        dead_letter_message(self, message, "unregistered", f"no task named {name!r} is registered here", exc)

    def on_invalid_task(self, body: Any, message: Any, exc: BaseException) -> None:
        reason = "refused_content" if isinstance(exc, ContentDisallowed) else "malformed"
        dead_letter_message(self, message, reason, f"{type(exc).__name__}: {exc}", exc)

    def on_decode_error(self, message: Any, exc: BaseException) -> None:
        if message.content_type == MALFORMED_CONTENT_TYPE:
            problem = body_problem(message, set())
            detail = problem[1] if problem else str(exc)
            dead_letter_message(self, message, "malformed", detail, exc)
            return
        reason = "refused_content" if isinstance(exc, ContentDisallowed) else "malformed"
        dead_letter_message(self, message, reason, f"{type(exc).__name__}: {exc}", exc)
