"""Acknowledging and restoring unacked messages, on the Redis clock and byte for byte.

kombu's Redis QoS selects the messages to restore by ``time()`` of the worker doing it, so a worker
whose clock runs ahead puts back a live worker's in-flight jobs. Here the selection runs in Lua on
the Redis clock (``unacked_due``), and each message goes back to its list in one compare-and-restore
script (``unacked_restore``) with its exact bytes, whatever they are. A message given back by a live
consumer is an orderly requeue and its fetch count is cleared: a deliberate reject with requeue, or
the channel closing (a warm shutdown) over a message the worker had not begun to receive. A message
whose receipt began and never finished (the consumer marks it, :meth:`RestoringChannel.stalwart_receiving`)
ended the worker: SystemExit, Celery's WorkerShutdown/WorkerTerminate or KeyboardInterrupt raised while
Celery took it; its restore at shutdown keeps its count, as does one restored because its visibility
timeout passed (its consumer died), so the crash-loop guard quarantines it after ``max_fetches``.
A fair job (``stalwart_fair``) goes back into its list's fair lane, as its key's next job
(:mod:`stalwart.broker.fair`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual

from stalwart.broker import decode
from stalwart.broker.fair import fair_of_item
from stalwart.store import broker as broker_store

log = logging.getLogger("stalwart.broker.restore")
RESTORE_BATCH = 1000


class RestoringChannel(kombu_redis.Channel):
    """The channel half of the above: settle and restore by tag with Stalwart's scripts."""

    _stalwart_recorded: set[str]
    _stalwart_quarantined: dict[str, str]
    _stalwart_receiving: set[str]
    stalwart: Any
    connection_errors: tuple[type[BaseException], ...]

    def stalwart_client(self) -> Any:
        """One client on the channel's pool, made once (kombu's private ``_create_client``, pinned by
        a contract test) and made again if kombu replaces the pool. kombu's ``conn_or_acquire()``
        builds a new redis-py client per call (an ack, an event published): about 0.2 ms of CPU
        each; redis-py clients are thread-safe, taking a pooled connection per command."""
        client = self.__dict__.get("_stalwart_client")
        if client is None or client.connection_pool is not self.pool:
            client = self.__dict__["_stalwart_client"] = self._create_client()  # type: ignore[attr-defined] # kombu's
        return client

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        """kombu's, with the channel's one client instead of a new one per call."""
        yield client or self.stalwart_client()

    def stalwart_settle(self, tag: str) -> None:
        """Forget a message for good (acknowledged, or rejected without requeue)."""
        entry = self._stalwart_quarantined.pop(tag, None)
        if entry is not None:
            self.stalwart_settle_quarantine(entry)
            return
        with self.conn_or_acquire() as client:
            broker_store.ack(client, self.stalwart.keys, tag)

    def stalwart_settle_quarantine(self, entry_id: str) -> None:
        with self.conn_or_acquire() as client:
            broker_store.quarantine_done(client, self.stalwart.keys, entry_id)

    def stalwart_receiving(self, tag: str) -> None:
        """The consumer begins to receive ``tag``: a restore before :meth:`stalwart_received` is a crash."""
        self._stalwart_receiving.add(tag)

    def stalwart_received(self, tag: str) -> None:
        """The consumer took ``tag`` (or dead-lettered it) without the process ending."""
        self._stalwart_receiving.discard(tag)

    def stalwart_restore(self, tag: str, client: Any = None, leftmost: bool = False, *, orderly: bool = True) -> None:
        """Put ``tag`` back on its queue; ``orderly`` clears its fetch count."""
        self._stalwart_quarantined.pop(tag, None)
        self._stalwart_receiving.discard(tag)
        with self.conn_or_acquire(client) as conn:
            record = broker_store.record_of(conn, self.stalwart.keys, tag)
            if record is not None:
                self._restore_record(conn, tag, record, leftmost=leftmost, orderly=orderly)

    def stalwart_restore_due(self, limit: int) -> int:
        """Restore the messages past their visibility timeout; how many went back."""
        restored = 0
        with self.conn_or_acquire() as conn:
            due = broker_store.due(conn, self.stalwart.keys, visibility_ms=self.stalwart.limits.visibility_ms,
                                   limit=limit)
            for tag, record in due:
                restored += self._restore_record(conn, tag, record, leftmost=False, orderly=False)
        if restored:
            log.info("restored %d message(s) whose worker stopped re-stamping them", restored)
        return restored

    def _restore_record(self, conn: Any, tag: str, record: bytes, *, leftmost: bool, orderly: bool) -> bool:
        target = decode.restore_target(record)
        if target is None:
            log.error("the unacked record of %s cannot be read; it stays in the unacked hash", tag)
            return False
        item, exchange, routing_key = target
        try:
            # kombu's binding lookup; our own records name the queue directly (exchange "").
            queue = routing_key if not exchange else next(iter(self._lookup(exchange, routing_key)))
        except Exception as exc:  # noqa: BLE001 - an unroutable record is left in place, never dropped
            log.error("cannot route the unacked record of %s (%s): it stays in the unacked hash", tag, exc)
            return False
        message = {"properties": {"priority": decode.priority_of(item)}}
        priority = self._get_message_priority(message, reverse=False)
        list_key = self.global_keyprefix + self._q_for_pri(queue, priority)  # type: ignore[attr-defined]
        return broker_store.restore(conn, self.stalwart.keys, tag=tag, record=record, list_key=list_key, item=item,
                                    leftmost=leftmost, orderly=orderly, job=fair_of_item(item))


class RestoringQoS(kombu_redis.QoS):
    """kombu's Redis ack emulation, with Stalwart's scripts for each write."""

    @property
    def owner(self) -> RestoringChannel:
        return cast(RestoringChannel, self.channel)

    def append(self, message: Any, delivery_tag: str) -> None:
        channel = self.owner
        if delivery_tag in channel._stalwart_recorded:
            channel._stalwart_recorded.discard(delivery_tag)
            virtual.QoS.append(self, message, delivery_tag)  # in-memory bookkeeping only
            return
        super().append(message, delivery_tag)  # not fetched by Stalwart's script (kombu's fanout path)

    def ack(self, delivery_tag: str) -> None:
        self.owner.stalwart_settle(delivery_tag)
        virtual.QoS.ack(self, delivery_tag)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        quarantined = self.owner._stalwart_quarantined
        if delivery_tag in quarantined:
            entry = quarantined.pop(delivery_tag)
            if not requeue:  # a requeued quarantine item stays in the stream; a worker takes it again
                self.owner.stalwart_settle_quarantine(entry)
        elif requeue:  # this live consumer's deliberate requeue: not a crash
            self.owner.stalwart_restore(delivery_tag, leftmost=True, orderly=True)
        else:
            self.owner.stalwart_settle(delivery_tag)
        virtual.QoS.ack(self, delivery_tag)

    def restore_by_tag(self, tag: str, client: Any = None, leftmost: bool = False) -> None:
        """The channel closing hands back what it holds (kombu's ``restore_unacked``): an orderly
        requeue, unless the message's receipt began and never finished (it ended the worker)."""
        crashed = tag in self.owner._stalwart_receiving
        self.owner.stalwart_restore(tag, client=client, leftmost=leftmost, orderly=not crashed)

    def restore_visible(self, start: int = 0, num: int | None = 10, interval: int = 10) -> None:
        """Put back every message whose visibility timeout passed on the Redis clock.

        kombu calls this every ``unacked_restore_interval``; its ``interval`` throttle is not
        needed: when nothing is due, a sweep is one script call.
        """
        try:
            self.owner.stalwart_restore_due(num or RESTORE_BATCH)
        except self.owner.connection_errors as exc:
            log.debug("restore sweep skipped: %s", exc)
