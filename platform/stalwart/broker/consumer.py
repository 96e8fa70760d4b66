"""The worker's guard against bad messages: they are dead-lettered, never fatal, never dropped.

Runs in the worker's main process, behind the transport's decode boundary
(:mod:`stalwart.broker.decode`), which has already checked the envelope and headers. Celery's
consumer logs and discards a message for an unknown task and rejects undecodable ones; these hooks
write a DLQ entry with the reason first, then acknowledge. The task strategy checks each message's
content type and body before Celery hands it to the pool, where a decode failure would fail the job
without a trace, and dead-letters anything Celery's own strategy still raises on. A job revoked by
an operator is not run: Celery discards it; that is logged and counted as a skipped job here.
"""

from __future__ import annotations

import base64
import logging
import time
from typing import Any

import celery
from celery import signals
from celery.exceptions import InvalidTaskError
from celery.utils.collections import AttributeDict
from celery.worker.consumer import Consumer as CeleryConsumer
from celery.worker.strategy import default as default_strategy
from kombu.exceptions import ContentDisallowed, DecodeError
from kombu.serialization import prepare_accept_content

from stalwart.broker import decode
from stalwart.broker.decode import MALFORMED_CONTENT_TYPE, MALFORMED_HEADER
from stalwart.dlq import message as dlq_message
from stalwart.dlq.entry import DeadLetter
from stalwart.errors import StalwartError, StateStoreError
from stalwart.job.context import JobContext, Outcome
from stalwart.job.header import HEADER, Meta
from stalwart.runtime import runtime_of
from stalwart.store.jobs import job_key

log = logging.getLogger("stalwart.broker.consumer")
DLQ_RETRY_PAUSE = 0.5
RAW_LIMIT = 64 * 1024


QUARANTINE_REASONS = ("malformed", "poison")
_EMBED_LISTS = ("callbacks", "errbacks", "chain")


def body_problem(message: Any, accept: set[str]) -> tuple[str, str] | None:
    """(reason, detail) when a protocol-2 task message cannot run, else None.

    Decodes with ``message.decode()``, whose result kombu caches for Celery's own use.
    """
    if message.content_type == MALFORMED_CONTENT_TYPE:
        return quarantine_reason(message), str((message.headers or {}).get(MALFORMED_HEADER, "undecodable"))
    if message.content_type not in accept:
        return "refused_content", f"content type {message.content_type!r} is refused (accepted: {sorted(accept)})"
    try:
        decoded = message.decode()
    except Exception as exc:  # noqa: BLE001 - any decoder error means the same thing: the body is unusable
        return "malformed", f"body does not decode as {message.content_type}: {type(exc).__name__}: {exc}"
    problem = decoded_problem(decoded)
    if problem is not None:
        return "malformed", problem
    headers = message.headers or {}
    if not isinstance(headers.get("id"), str):
        return "malformed", "message headers lack a task id"
    return None


def decoded_problem(decoded: object) -> str | None:
    """Why a decoded protocol-2 body is not ``[args, kwargs, embed]`` that Celery and the envelope
    can take (bounded nesting, valid Unicode, an embed that does not shadow the request)."""
    if not (isinstance(decoded, (list, tuple)) and len(decoded) == 3 and isinstance(decoded[0], (list, tuple))
            and isinstance(decoded[1], dict)):
        return "body is not [args, kwargs, embed]"
    embed = decoded[2]
    if embed is not None and not isinstance(embed, dict):
        return "body's embed (callbacks, chain, chord) is not an object"
    if decode.too_deep(decoded):
        return f"body nested deeper than {decode.MAX_DEPTH} levels"
    if decode.has_lone_surrogate(decoded):
        return "body holds a string with a lone UTF-16 surrogate (not valid Unicode)"
    for name, value in (embed or {}).items():
        if decode.reserved(name):
            return f"body's embed {name!r} would shadow a method of the task request"
        bad_list = name in _EMBED_LISTS and value is not None and not (
            isinstance(value, list) and all(isinstance(s, dict) for s in value))
        if bad_list or (name == "chord" and value is not None and not isinstance(value, dict)):
            return f"body's embed {name!r} is not a signature list/object"
    return None


def quarantine_reason(message: Any) -> str:
    """The DLQ reason a quarantine envelope carries (malformed, or poison from the fetch guard)."""
    headers = message.headers if isinstance(message.headers, dict) else {}
    reason = headers.get(decode.REASON_HEADER)
    return reason if reason in QUARANTINE_REASONS else "malformed"


class BadMessage(StalwartError):
    """A message that never reached a task body; it was dead-lettered with this reason."""


def dead_letter_message(consumer: Any, message: Any, reason: str, detail: str,
                        exc: BaseException | None = None) -> None:
    """Write a DLQ entry for a message that never reached a task body, ack it, then tell Celery's
    listeners as Celery itself would (signal, ``task-failed`` event, result backend)."""
    app = consumer.app
    try:
        entry = entry_for_message(message, reason, detail)
        runtime_of(app).dlq.add(entry)
    except Exception as err:  # noqa: BLE001 - an unwritable entry is requeued, never dropped or fatal
        level = logging.ERROR if isinstance(err, StateStoreError) else logging.CRITICAL
        log.log(level, "could not dead-letter a %s message (%s); requeueing it: %s: %s",
                reason, detail, type(err).__name__, err)
        message.reject_log_error(log, (), requeue=True)
        # The message is back in its queue and may be the only one there: do not take it again at
        # once, in a loop, while the DLQ cannot be written.
        time.sleep(DLQ_RETRY_PAUSE)
        return
    log.error("dead-lettered a %s message as %s: %s", reason, entry.id, detail)
    runtime_of(app).hooks.call("on_dead_letter", entry, None)
    message.ack_log_error(log, ())
    try:
        announce(consumer, message, entry, exc)
    except Exception as err:  # noqa: BLE001 - the entry is written; telling listeners is best effort
        log.warning("could not announce dead-letter entry %s: %s: %s", entry.id, type(err).__name__, err)


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


_ENVELOPE_HEADERS = {MALFORMED_HEADER, decode.REASON_HEADER, decode.SOURCE_HEADER, *decode.CONTEXT_HEADERS.values()}


def entry_for_message(message: Any, reason: str, detail: str) -> DeadLetter:
    raw_headers = message.headers if isinstance(message.headers, dict) else {}
    headers = {k: v for k, v in raw_headers.items() if k not in _ENVELOPE_HEADERS}
    # What the transport's quarantine envelope carries (only it makes that content type; the
    # decode boundary quarantines a producer's message that claims it).
    ours = raw_headers if message.content_type == MALFORMED_CONTENT_TYPE else {}
    task = headers.get("task", ours.get(decode.CONTEXT_HEADERS["task"]))
    task_id = headers.get("id", ours.get(decode.CONTEXT_HEADERS["id"]))
    source = ours.get(decode.SOURCE_HEADER) or message.delivery_tag
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
        source=str(source),
        reason=reason,
        task=task if isinstance(task, str) else None,
        task_id=task_id if isinstance(task_id, str) else None,
        queue=info.get("routing_key"),
        args=args,
        kwargs=kwargs,
        headers=headers,
        exc_type={"unregistered": "NotRegistered", "refused_content": "ContentDisallowed",
                  "poison": "CrashLoop"}.get(reason, "DecodeError"),
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
    """Celery's default strategy, behind a check of each message's content and body.

    Whatever Celery's strategy still raises (apart from the errors Celery's consumer turns into
    our on_invalid_task/on_decode_error, and connection errors) is dead-lettered, not fatal.
    """
    inner = default_strategy(task, app, consumer, **kwargs)
    accept = set(prepare_accept_content(app.conf.accept_content) or ())
    passthrough = (*consumer.connection_errors, InvalidTaskError, ContentDisallowed, DecodeError)

    def handler(message: Any, body: Any, ack: Any, reject: Any, callbacks: Any, **kw: Any) -> Any:
        if body is None:  # protocol 2: Celery would only decode the body in the pool child
            problem = body_problem(message, accept)
            if problem is not None:
                return dead_letter_message(consumer, message, *problem)
        try:
            return inner(message, body, ack, reject, callbacks, **kw)
        except passthrough:
            raise
        except Exception as exc:
            log.exception("Celery could not accept a %s message", task.name)
            return dead_letter_message(consumer, message, "malformed",
                                       f"the worker could not accept it: {type(exc).__name__}: {exc}", exc)

    return handler


def on_revoked(sender: Any = None, request: Any = None, terminated: bool = False, **_: Any) -> None:
    """Celery discarded a job revoked by an operator (``celery control revoke``): log and count it.

    ``request`` is Celery's task request context (headers as attributes).
    """
    if request is None or terminated:
        return
    try:
        runtime = runtime_of(getattr(sender, "app", None))
    except StalwartError:
        return
    task_id = str(getattr(request, "id", None))
    name = str(getattr(request, "task", None) or getattr(sender, "name", "?"))
    meta = Meta.from_header(getattr(request, HEADER, None))
    retries = getattr(request, "retries", 0)
    info = getattr(request, "delivery_info", None)
    log.warning("%s[%s] was revoked by an operator: it is not run (acknowledged, no DLQ entry)", name, task_id)
    ctx = JobContext(task_name=name, task_id=task_id, queue=str((info or {}).get("routing_key") or ""),
                     args=(), kwargs={}, meta=meta, attempt=(retries if isinstance(retries, int) else 0) + 1,
                     hostname=str(getattr(request, "hostname", "")), job_key=job_key(meta.key, task_id))
    runtime.hooks.call("after_job", ctx, Outcome("skipped", reason="revoked"))


class Receipt:
    """The transport's mark on a message whose receipt began (see :mod:`stalwart.broker.restore`)."""

    def __init__(self, channel: Any, tag: str) -> None:
        self.channel, self.tag = channel, tag

    @classmethod
    def of(cls, message: Any) -> Receipt:
        channel = getattr(message, "channel", None)
        tag = str(getattr(message, "delivery_tag", ""))
        if channel is not None and hasattr(channel, "stalwart_receiving"):  # Stalwart's transport only
            channel.stalwart_receiving(tag)
            return cls(channel, tag)
        return cls(None, tag)

    def done(self) -> None:
        if self.channel is not None:
            self.channel.stalwart_received(self.tag)


class Consumer(CeleryConsumer):
    """Celery's consumer, dead-lettering what it would discard or choke on."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        signals.task_revoked.connect(on_revoked, weak=False, dispatch_uid="stalwart-revoked")

    def create_task_handler(self, promise: Any = None) -> Any:
        """Celery's task message handler, behind a guard: only protocol-2 task messages reach it
        (a quarantine envelope or any other kombu message is dead-lettered here), and whatever it
        still raises, apart from connection errors, is dead-lettered instead of ending the worker."""
        # Celery's consumer loop builds its message handler here (celery.worker.loops)
        inner = super().create_task_handler() if promise is None else super().create_task_handler(promise)
        connection_errors = tuple(getattr(self, "connection_errors", ()))

        def on_task_received(message: Any) -> Any:
            # A receipt that ends the process (SystemExit, WorkerShutdown, KeyboardInterrupt: not
            # Exception) leaves the mark, so the shutdown's restore keeps the message's fetch count.
            mark = Receipt.of(message)
            result = receive(message)
            mark.done()
            return result

        def receive(message: Any) -> Any:
            headers = message.headers if isinstance(message.headers, dict) else {}
            if message.content_type == MALFORMED_CONTENT_TYPE:
                detail = str(headers.get(MALFORMED_HEADER, "undecodable"))
                return dead_letter_message(self, message, quarantine_reason(message), detail)
            if not isinstance(headers.get("task"), str):
                return dead_letter_message(self, message, "malformed",
                                           "not a Celery task message (protocol 2 headers naming a task)")
            try:
                return inner(message)
            except connection_errors:
                raise
            except Exception as exc:
                log.exception("Celery could not take a message")
                return dead_letter_message(self, message, "malformed",
                                           f"the worker could not accept it: {type(exc).__name__}: {exc}", exc)

        return on_task_received

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
            dead_letter_message(self, message, quarantine_reason(message), detail, exc)
            return
        reason = "refused_content" if isinstance(exc, ContentDisallowed) else "malformed"
        dead_letter_message(self, message, reason, f"{type(exc).__name__}: {exc}", exc)
