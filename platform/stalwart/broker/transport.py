"""kombu's Redis transport with two changes: delayed publishing and a malformed-message guard.

* A message published with the ``stalwart_delay_ms`` header goes to its queue's delayed set
  (a sorted set on the broker Redis, scored by due time on the Redis clock) instead of the
  queue list. Movers in every worker push it to the list when due (:mod:`stalwart.delayed`).
  Nothing waits unacked in a worker, so the visibility timeout can be short.
* A list item that is not a kombu JSON envelope would raise in kombu's reader and kill the
  worker. Instead it is wrapped in a valid envelope with the content type
  ``application/x-stalwart-malformed``, so the consumer dead-letters it like any bad message.
"""

from __future__ import annotations

import base64
import json
import uuid
from queue import Empty
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str

from stalwart.job.header import DELAY_HEADER
from stalwart.store import broker as broker_store
from stalwart.store.delayed import DelayedStore
from stalwart.store.keys import Keys
from stalwart.store.switches import PARK_HEADER, ParkedStore

MALFORMED_CONTENT_TYPE = "application/x-stalwart-malformed"
MALFORMED_HEADER = "stalwart_malformed"
_ENVELOPE_FIELDS = ("body", "properties", "headers", "content-type")


def decode_envelope(item: bytes | str, queue: str) -> dict[str, Any]:
    """The kombu envelope in ``item``, or a quarantine envelope that carries it as raw bytes."""
    raw = item if isinstance(item, bytes) else item.encode("utf-8", "surrogateescape")
    message: object = None
    try:
        message = json.loads(bytes_to_str(raw))
        problem = _envelope_problem(message)
    except (ValueError, UnicodeDecodeError) as exc:
        problem = f"not a JSON envelope: {exc}"
    if problem is None and isinstance(message, dict):
        return message
    problem = problem or "envelope is not an object"
    return quarantine(raw, queue, problem, _original_tag(message))


def _original_tag(message: object) -> str | None:
    props = message.get("properties") if isinstance(message, dict) else None
    tag = props.get("delivery_tag") if isinstance(props, dict) else None
    return tag if isinstance(tag, str) else None


def quarantine(raw: bytes, queue: str, problem: str, tag: str | None) -> dict[str, Any]:
    """A valid envelope carrying ``raw``; it keeps the original delivery tag when there was one,
    so acknowledging it also clears the unacked record fetch.lua wrote under that tag."""
    return {
        "body": base64.b64encode(raw).decode(),
        "content-encoding": "binary",
        "content-type": MALFORMED_CONTENT_TYPE,
        "headers": {MALFORMED_HEADER: problem[:500]},
        "properties": {
            "body_encoding": "base64",
            "delivery_tag": tag or uuid.uuid4().hex,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
        },
    }


def _envelope_problem(message: object) -> str | None:
    if not isinstance(message, dict):
        return f"envelope is a JSON {type(message).__name__}, not an object"
    missing = [f for f in _ENVELOPE_FIELDS if f not in message]
    if missing:
        return f"envelope lacks {', '.join(missing)}"
    props = message["properties"]
    if not isinstance(props, dict) or "delivery_tag" not in props:
        return "envelope properties lack a delivery_tag"
    if message["headers"] is not None and not isinstance(message["headers"], dict):
        return "envelope headers are not an object"
    return None


class QoS(kombu_redis.QoS):
    """kombu's Redis ack emulation, minus the unacked write fetch.lua already made atomically."""

    def append(self, message: Any, delivery_tag: str) -> None:
        recorded: set[str] = getattr(self.channel, "_stalwart_recorded", set())
        if delivery_tag in recorded:
            recorded.discard(delivery_tag)
            virtual.QoS.append(self, message, delivery_tag)  # in-memory bookkeeping only
            return
        super().append(message, delivery_tag)


class Channel(kombu_redis.Channel):
    """A kombu Redis channel with delayed publishing and the malformed-message guard."""

    QoS = QoS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Delivery tags whose unacked record fetch.lua wrote; QoS.append skips its own write.
        self._stalwart_recorded: set[str] = set()
        super().__init__(*args, **kwargs)

    _stalwart_wait: str | None = None  # the one list being waited on with BLMOVE, if any

    @property
    def _stalwart_keys(self) -> Keys:
        options = getattr(self.connection.client, "transport_options", None) or {}
        return Keys(str(options.get("stalwart_prefix", "stalwart")))

    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        headers = message.get("headers") or {}
        if headers.get(PARK_HEADER):  # a paused task's job: parked until resumed (stalwart.store.switches)
            with self.conn_or_acquire() as client:
                list_key = self._q_for_pri(queue, self._get_message_priority(message, reverse=False))
                ParkedStore(client, self._stalwart_keys).park(list_key, message)
            return
        delay = headers.pop(DELAY_HEADER, None)
        if not delay or int(delay) <= 0:
            super()._put(queue, message, **kwargs)
            return
        batch = kwargs.pop("_publish_batch", None)
        list_key = self._q_for_pri(queue, self._get_message_priority(message, reverse=False))
        payload = json.dumps(message)
        with self.conn_or_acquire() as client:
            delayed = DelayedStore(client, self._stalwart_keys)
            if batch is not None:  # a bulk enqueue: schedule in the producer's pipeline
                if not getattr(batch, "stalwart_scripts_loaded", False):
                    delayed.ensure_loaded()
                    batch.stalwart_scripts_loaded = True
                batch.add(*delayed.schedule_command(list_key, delay_ms=int(delay), payload=payload))
                return
            delayed.schedule(list_key, delay_ms=int(delay), payload=payload)

    def _brpop_start(self, timeout: float | None = None) -> None:
        """Wait for a message without taking it (BLMOVE a list onto itself) when consuming one list.

        The message is then taken by :meth:`_fetch` atomically with its unacked record, so a
        worker killed in between loses nothing. Several lists (queues or priority steps) fall
        back to kombu's BRPOP.
        """
        lists = [self._q_for_pri(q, pri) for pri in self.priority_steps for q in self.active_queues]
        if len(lists) != 1:
            self._stalwart_wait = None
            super()._brpop_start(timeout)  # type: ignore[misc] # not in kombu's stubs
            return
        self._stalwart_wait = lists[0]
        self._in_poll = self.client.connection
        timeout = self.brpop_timeout if timeout is None else timeout
        self.client.connection.send_command("BLMOVE", lists[0], lists[0], "RIGHT", "RIGHT", timeout or 0)

    def _fetch(self, list_key: str) -> tuple[bytes, bool] | None:
        """Take the oldest message of ``list_key`` and record it unacked, in one script."""
        try:
            return broker_store.fetch(self.client, list_key, self.unacked_key, self.unacked_index_key)
        except self.connection_errors:
            self.client.connection.disconnect()
            raise

    def _brpop_read(self, **options: Any) -> bool:
        try:
            if self._stalwart_wait:
                return self._wait_read(self._stalwart_wait, **options)
            return self._pop_read(**options)
        finally:
            self._in_poll = None
            flush = getattr(self, "_flush_brpop_reauth", None)
            if flush is not None:
                flush()

    def _response(self, command: str, **options: Any) -> Any:
        """The reply to the blocking command sent by _brpop_start; reconnect next time on errors."""
        try:
            return self.client.parse_response(self.client.connection, command, **options)
        except self.connection_errors:
            self.client.connection.disconnect()
            raise

    def _pop_read(self, **options: Any) -> bool:
        """kombu's BRPOP path (several lists), behind the malformed-message guard."""
        dest__item = self._response("BRPOP", **options)
        if not dest__item:
            raise Empty()
        dest, item = dest__item
        dest = bytes_to_str(dest).rsplit(self.sep, 1)[0]
        self._queue_cycle.rotate(dest)
        self.connection._deliver(decode_envelope(item, dest), dest)
        return True

    def _wait_read(self, list_key: str, **options: Any) -> bool:
        """The BLMOVE wait woke up: take the message and its unacked record in one script."""
        found = self._fetch(list_key) if self._response("BLMOVE", **options) else None
        if not found:
            raise Empty()
        item, recorded = found
        dest = bytes_to_str(list_key).rsplit(self.sep, 1)[0]
        message = decode_envelope(item, dest)
        if recorded:
            # fetch.lua already wrote kombu's unacked record: QoS.append must not write it again.
            self._stalwart_recorded.add(message["properties"]["delivery_tag"])
        self.connection._deliver(message, dest)
        return True

    def _get(self, queue: str, timeout: float | None = None) -> dict[str, Any]:
        with self.conn_or_acquire() as client:
            for pri in self.priority_steps:
                item = broker_store.pop(client, self._q_for_pri(queue, pri))
                if item:
                    self._maybe_update_queues_expire(client, queue)
                    return decode_envelope(item, queue)
            self._maybe_update_queues_expire(client, queue)
            raise Empty()


class Transport(kombu_redis.Transport):
    """Use with Celery's ``broker_transport = "stalwart.broker.transport:Transport"``."""

    Channel = Channel
