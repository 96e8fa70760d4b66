"""kombu's Redis transport, made loss-free, total and clock-safe for Stalwart.

* **Fetch.** One Lua script (``fetch``) takes the next message of all the lists a channel consumes
  (queues times priority steps: higher priority first, queues in kombu's round-robin rotation) and
  records it unacked in the same step, so a worker killed mid-fetch loses nothing. An idle channel
  waits with ``BLMOVE`` on one list, which takes nothing, and fetches again when it wakes or times
  out. There is no BRPOP. A list whose key turns out to be another type (the wait gets WRONGTYPE)
  is logged once and skipped by the wait for a minute; with no list to wait on, the channel polls
  with the fetch once per wait timeout.
* **Decode boundary.** What the script hands over goes through :mod:`stalwart.broker.decode`
  before kombu and Celery see it: delivered, normalised (plain Celery producers), quarantined to
  the DLQ with its raw bytes, or scheduled. The script itself quarantines what it cannot record,
  and counts fetches: a message fetched more than ``stalwart_max_fetches`` times without being
  acknowledged is quarantined as ``poison`` (the crash-loop guard).
* **Stale waits.** A command without a reply past its timeout plus ``stalwart_wait_grace`` (a
  half-open connection) has its socket shut, which kombu and Celery see as a lost connection.
* **One clock.** Unacked index, restore and visibility re-stamps use the Redis clock
  (:mod:`stalwart.broker.restore`); a producer's ``sent`` and ``deadline`` are moved onto it.
* **Delayed publishing.** A message with the ``stalwart_delay_ms`` header goes to its list's delayed
  set. The caller's message is never changed, so kombu's retry of a publish keeps the delay.
* **Fair lanes.** A message with the ``stalwart_fair`` header goes to its list's fair lane (or the
  lane's delayed set), where the fetch serves the keys in rotation (:mod:`stalwart.broker.fair`).
* **global_keyprefix** is part of every key name Stalwart passes (:func:`broker_store.unprefixed`).
"""

from __future__ import annotations

import json
import logging
import select
import socket
import time
import uuid
from dataclasses import dataclass
from queue import Empty
from typing import Any
from weakref import WeakSet

from kombu.transport import redis as kombu_redis
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError
from redis.retry import Retry

from stalwart.broker import decode
from stalwart.broker import fair as fair_lanes
from stalwart.broker.restore import RestoringChannel, RestoringQoS
from stalwart.job.header import DELAY_HEADER, HEADER
from stalwart.store import broker as broker_store
from stalwart.store.broker import BrokerKeys, FetchLimits, Quarantined
from stalwart.store.keys import Keys
from stalwart.store.switches import PARK_HEADER, ParkedStore

log = logging.getLogger("stalwart.broker.transport")
FETCH, WAIT = "fetch", "wait"
QUARANTINE_TAG = "stalwart-quarantine:"
CLOCK_REFRESH_SECONDS = 30.0
UNWAITABLE_SECONDS = 60.0


@dataclass(frozen=True)
class ChannelConfig:
    """What a channel reads once from its transport options."""

    keys: BrokerKeys
    limits: FetchLimits
    stalwart_keys: Keys
    wait_grace: float

    @classmethod
    def of(cls, channel: Any) -> ChannelConfig:
        options = channel.connection.client.transport_options or {}
        prefix = str(options.get("stalwart_prefix", "stalwart"))
        keys = BrokerKeys.build(prefix=prefix, global_prefix=channel.global_keyprefix,
                                unacked=channel.unacked_key, index=channel.unacked_index_key)
        limits = FetchLimits(max_fetches=int(options.get("stalwart_max_fetches", 3)),
                             max_item_bytes=decode.MAX_ITEM_BYTES,
                             visibility_ms=int(float(channel.visibility_timeout) * 1000),
                             max_depth=decode.MAX_DEPTH)
        return cls(keys, limits, Keys(prefix), float(options.get("stalwart_wait_grace", 5.0)))


def _readable(sock: socket.socket) -> bool:
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


class QoS(RestoringQoS):
    """kombu's Redis ack emulation on Stalwart's scripts (see :mod:`stalwart.broker.restore`)."""


class Channel(RestoringChannel):
    """A kombu Redis channel that fetches with one script and waits with BLMOVE."""

    QoS = QoS
    brpop_timeout = 1  # kombu >= 5.6 sets it on each channel (its polling_interval); 5.5 always waited 1 s

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Delivery tags whose unacked record the fetch script wrote (QoS.append skips its own
        # write), and quarantine tags → their stream entry.
        self._stalwart_recorded: set[str] = set()
        self._stalwart_quarantined: dict[str, str] = {}
        self._stalwart_receiving: set[str] = set()  # tags whose receipt began (RestoringChannel)
        self._stalwart_phase = FETCH
        self._stalwart_sent_at: float | None = None
        self._stalwart_paused_until = 0.0
        self._stalwart_sent_lists: dict[str, str] = {}
        self._stalwart_waiting_on: str | None = None
        self._stalwart_unwaitable: dict[str, float] = {}  # list key → monotonic time to try it again
        super().__init__(*args, **kwargs)
        self.stalwart = ChannelConfig.of(self)
        registry = getattr(self.connection, "stalwart_channels", None)
        if registry is not None:
            registry.add(self)

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        """kombu's redis-py connection parameters, with redis-py's own retries bounded.

        A command on a dead or frozen connection blocks the worker's event loop for a socket
        timeout per attempt, and redis-py 6+ makes four attempts with backoff: one retry (on a
        fresh connection) for the pooled clients; none for the consumer's own connection, whose
        errors kombu and Celery handle by reconnecting it (a socket replaced behind kombu's poller
        would never be polled).
        """
        params: dict[str, Any] = super()._connparams(asynchronous=asynchronous)  # type: ignore[misc] # kombu's
        params["retry"] = Retry(NoBackoff(), 0 if asynchronous else 1)
        return params

    # -- consuming ---------------------------------------------------------------------------

    @property
    def stalwart_wait_timeout(self) -> float:
        """kombu's BRPOP timeout (the channel's since kombu 5.6, the transport's before): the wait's."""
        return float(getattr(self, "brpop_timeout", None) or getattr(self.connection, "brpop_timeout", 1) or 1)

    def stalwart_lists(self, queues: list[str]) -> list[tuple[str, str]]:
        """(full list key, queue) to fetch from, in order: priority step first, then the queues."""
        prefix = self.global_keyprefix
        # kombu's list name for a (queue, priority step), as its own BRPOP and _put use it
        return [(prefix + self._q_for_pri(queue, pri), queue) for pri in self.priority_steps for queue in queues]

    def _brpop_start(self, timeout: float | None = None) -> None:
        """Send the next fetch, or the BLMOVE wait when the last fetch found nothing.

        kombu's poller calls this (it sent BRPOP here) when the channel may take a message and no
        command is outstanding (``_in_poll``); the reply is read by :meth:`_brpop_read`.
        """
        queues = self._queue_cycle.consume(len(self.active_queues))  # kombu's round robin over the queues
        if not queues or time.monotonic() < self._stalwart_paused_until:
            return
        lists = self.stalwart_lists(queues)
        self.connection.stalwart_lists = tuple(name for name, _ in lists)
        connection = self.client.connection  # the consumer's own connection, pinned by kombu's poller
        if self._stalwart_phase == WAIT:
            wait = (timeout if timeout else self.stalwart_wait_timeout) or 1
            target = self._stalwart_wait_list(lists)
            if target is None:  # every list is another type of key: poll with the fetch instead
                self._stalwart_phase = FETCH
                self._stalwart_paused_until = time.monotonic() + wait
                return
            connection.send_command(*broker_store.wait_command(target, wait))
            self._stalwart_waiting_on = target
        else:
            connection.send_command(*broker_store.fetch_command(self.stalwart.keys, lists, self.stalwart.limits))
        self._stalwart_sent_lists = dict(lists)
        self._in_poll = connection  # kombu's marker of an outstanding command on that connection
        # kombu 5.7's own stale-connection check reads _brpop_sent_at; ours reads _stalwart_sent_at.
        self._brpop_sent_at = self._stalwart_sent_at = time.monotonic()

    def _brpop_read(self, **options: Any) -> bool:
        try:
            if self._stalwart_phase == WAIT:
                self._stalwart_phase = FETCH  # woken (or timed out): fetch from every list
                try:
                    self._response(broker_store.WAIT_COMMAND, **options)
                except self.ResponseError as exc:
                    self._stalwart_wait_failed(exc)
                raise Empty()
            return self._fetched(**options)
        finally:
            self._in_poll = None
            self._stalwart_sent_at = None
            flush = getattr(self, "_flush_brpop_reauth", None)  # kombu 5.7: flush a pending re-auth
            if flush is not None:
                flush()

    def _stalwart_wait_list(self, lists: list[tuple[str, str]]) -> str | None:
        """The first list to wait on that did not answer the wait with an error lately."""
        now = time.monotonic()
        for name, _ in lists:
            if self._stalwart_unwaitable.get(name, 0.0) <= now:
                return name
        return None

    def _stalwart_wait_failed(self, exc: Exception) -> None:
        """The wait's list answered with an error (WRONGTYPE: someone made the queue's key a hash,
        say). The fetch script skips such a key; the wait skips it for a while (logged once)."""
        name = self._stalwart_waiting_on
        if name is None:
            raise exc
        if name not in self._stalwart_unwaitable:
            log.error("cannot wait on the queue list %r (%s); its other lists are still consumed", name, exc)
        self._stalwart_unwaitable[name] = time.monotonic() + UNWAITABLE_SECONDS

    def _response(self, command: str, **options: Any) -> Any:
        """The reply to the command sent by _brpop_start; on a connection error, reconnect next time."""
        try:
            return self.client.parse_response(self.client.connection, command, **options)
        except self.connection_errors:
            self.client.connection.disconnect()
            raise

    def _fetched(self, **options: Any) -> bool:
        try:
            reply = self._response("EVALSHA", **options)
        except self.ResponseError as exc:
            self._script_failed(exc)
            raise Empty() from None
        found = broker_store.parse_fetch(reply)
        if found is None:
            self._stalwart_phase = WAIT
            raise Empty()
        taken = self.stalwart_take(found, self.client)
        if taken is None:
            raise Empty()
        message, queue = taken
        if queue in self._queue_cycle.items:  # kombu's fair rotation: the queue served goes last
            self._queue_cycle.rotate(queue)
        tag = message["properties"]["delivery_tag"]
        self.connection._deliver(message, queue)  # kombu's virtual transport hands it to the consumer
        self._settle_unacked_mode(tag)
        return True

    def _settle_unacked_mode(self, tag: str) -> None:
        """A consumer with ``no_ack`` never acknowledges: forget what the fetch recorded for it."""
        if tag in self._stalwart_recorded:  # QoS.append (acknowledging consumers) removes it
            self._stalwart_recorded.discard(tag)
            self.stalwart_settle(tag)

    def basic_get(self, queue: str, no_ack: bool = False, **kwargs: Any) -> Any:
        message = super().basic_get(queue, no_ack=no_ack, **kwargs)
        if message is not None and no_ack:
            self._settle_unacked_mode(str(message.delivery_tag))
        return message

    def _script_failed(self, exc: Exception) -> None:
        if isinstance(exc, NoScriptError):  # Redis restarted or flushed its scripts
            broker_store.load_fetch(self.client)
            return
        log.error("the fetch script failed (%s: %s); trying again in 1s", type(exc).__name__, exc)
        self._stalwart_paused_until = time.monotonic() + 1.0

    def stalwart_queue(self, list_key: str) -> str:
        """The queue a list belongs to."""
        queue = self._stalwart_sent_lists.get(list_key)
        if queue is not None:
            return queue
        name = list_key[len(self.global_keyprefix):] if list_key.startswith(self.global_keyprefix) else list_key
        return name.rsplit(self.sep, 1)[0]

    def stalwart_take(self, found: broker_store.Fetched, client: Any) -> tuple[dict[str, Any], str] | None:
        """What to deliver for a fetched item, and to which queue; None when it was scheduled."""
        self.connection.stalwart_last_take = time.monotonic()
        queue = self.stalwart_queue(found.list_key)
        if isinstance(found, Quarantined):
            tag = QUARANTINE_TAG + uuid.uuid4().hex
            self._stalwart_quarantined[tag] = found.entry_id
            self._stalwart_recorded.add(tag)
            message = decode.quarantine(found.item, queue, found.detail, tag, reason=found.reason,
                                        source=found.source, context=decode.item_context(found.item))
            return message, queue if queue in self.active_queues else next(iter(self.active_queues))
        verdict = decode.inspect(found.item, tag=found.tag, queue=queue, now_ms=found.now_ms)
        if verdict.due_ms is not None:
            delayed_key, registry_key, member, listed = fair_lanes.reschedule_target(
                self.stalwart.stalwart_keys, found.list_key, verdict.envelope)
            broker_store.reschedule(client, self.stalwart.keys, delayed_key=delayed_key, registry_key=registry_key,
                                    list_key=listed, tag=found.tag, due_ms=verdict.due_ms, payload=member)
            log.info("a message due at %d (its eta) waits in the delayed set of %s", verdict.due_ms, queue)
            return None
        if verdict.changed:
            broker_store.replace(client, self.stalwart.keys, tag=found.tag,
                                 record=json.dumps([verdict.envelope, "", queue]))
        self._stalwart_recorded.add(found.tag)
        return verdict.envelope, queue

    def _get(self, queue: str, timeout: float | None = None) -> dict[str, Any]:
        """kombu's basic_get: the same fetch script and boundary, without waiting."""
        update = getattr(self, "_maybe_update_queues_expire", None)  # kombu 5.7: x-expires queues
        with self.conn_or_acquire() as client:
            lists = self.stalwart_lists([queue])
            self._stalwart_sent_lists = dict(lists)
            for _ in range(1000):  # items scheduled into the delayed set are not returned
                found = broker_store.fetch(client, self.stalwart.keys, lists, self.stalwart.limits)
                taken = None if found is None else self.stalwart_take(found, client)
                if found is None or taken is not None:
                    break
            if update is not None:
                update(client, queue)
            if found is None or taken is None:
                raise Empty()
            return taken[0]

    def stalwart_check_wait(self, now: float) -> None:
        """Shut the socket of a command that got no reply in time (a half-open connection).

        kombu then reads the socket, gets a connection error and Celery reconnects: the same
        path as a connection the server closed, so every supported kombu recovers the same way.
        """
        connection, sent = self._in_poll, self._stalwart_sent_at
        if not connection or sent is None:
            return
        waited = now - sent
        if waited <= self.stalwart.wait_grace + (self.stalwart_wait_timeout if self._stalwart_phase == WAIT else 0):
            return
        sock = getattr(connection, "_sock", None)  # redis-py's socket (kombu's own check reads it too)
        if sock is None or _readable(sock):
            return
        log.warning("no reply from the broker for %.1fs (%s): dropping the connection", waited, self._stalwart_phase)
        self._stalwart_sent_at = None
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            connection.disconnect()

    # -- publishing --------------------------------------------------------------------------

    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        message, delay = self._outgoing(message)
        # kombu's own choice of list for the message's priority, as its _put makes it
        list_key = self.global_keyprefix + self._q_for_pri(queue, self._get_message_priority(message, reverse=False))
        keys = self.stalwart.stalwart_keys
        if message["headers"].get(PARK_HEADER):  # a paused task's job: parked until resumed (store.switches)
            with self.conn_or_acquire() as client:
                ParkedStore(broker_store.unprefixed(client), keys).park(list_key, message)
            return
        fair = fair_lanes.fair_of(message)
        if delay <= 0 and fair is None:
            super()._put(queue, message, **kwargs)
            return
        batch = kwargs.pop("_publish_batch", None)
        # bulk: in the producer's pipeline (kombu would prefix keys)
        with self.conn_or_acquire() as client:
            fair_lanes.publish(client, keys, list_key, json.dumps(message), fair, delay_ms=delay,
                               batch=None if self.global_keyprefix else batch)

    def _outgoing(self, message: dict[str, Any]) -> tuple[dict[str, Any], int]:
        """A copy of ``message`` to publish, and its delay: the caller's dicts are never changed, so
        kombu's retry of a failed publish sends the same message again, delay included."""
        headers = dict(message["headers"]) if isinstance(message.get("headers"), dict) else {}
        raw_delay = headers.pop(DELAY_HEADER, None)
        try:
            delay = int(raw_delay or 0)
        except (TypeError, ValueError):
            delay = 0
        meta = headers.get(HEADER)
        if isinstance(meta, dict) and meta.get(decode.CLOCK_FIELD) == decode.LOCAL_CLOCK:
            headers[HEADER] = self._on_redis_clock(meta)
        return {**message, "headers": headers}, delay

    def _on_redis_clock(self, meta: dict[str, Any]) -> dict[str, Any]:
        """A header stamped by this process's clock, moved onto the Redis clock."""
        with self.conn_or_acquire() as client:
            offset = self.connection.clock_offset_ms(client)
        moved = {k: v for k, v in meta.items() if k != decode.CLOCK_FIELD}
        for field in ("sent", "deadline"):
            if isinstance(moved.get(field), int):
                moved[field] += offset
        return moved


class Transport(kombu_redis.Transport):
    """Use with Celery's ``broker_transport = "stalwart.broker.transport:Transport"``."""

    Channel = Channel

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stalwart_channels: WeakSet[Channel] = WeakSet()
        self.stalwart_last_take: float | None = None  # monotonic time of the last fetch that took
        self.stalwart_lists: tuple[str, ...] = ()  # the lists the consumer fetches from
        self._stalwart_timers: list[Any] = []
        self._stalwart_clock: tuple[float, int] | None = None

    def register_with_event_loop(self, connection: Any, loop: Any) -> None:
        super().register_with_event_loop(connection, loop)
        for timer in self._stalwart_timers:
            timer.cancel()
        self._stalwart_timers = [loop.call_repeatedly(1.0, self.check_waits)]
        if not hasattr(kombu_redis.Channel, "unacked_restore_interval"):
            # kombu < 5.7 sweeps the unacked index every 10 s whatever the visibility timeout is.
            interval = float(connection.client.transport_options.get("unacked_restore_interval", 10))
            if self.cycle is not None:  # kombu's poller, whose sweep calls QoS.restore_visible
                self._stalwart_timers.append(loop.call_repeatedly(interval, self.cycle.maybe_restore_messages))

    def check_waits(self) -> None:
        now = time.monotonic()
        for channel in list(self.stalwart_channels):
            channel.stalwart_check_wait(now)

    def clock_offset_ms(self, client: Any) -> int:
        """Redis time minus this process's ``time.time()``, measured at most every 30 s."""
        now = time.monotonic()
        if self._stalwart_clock is None or now - self._stalwart_clock[0] > CLOCK_REFRESH_SECONDS:
            local = time.time()
            server = broker_store.server_time_ms(client)
            local = (local + time.time()) / 2
            self._stalwart_clock = (now, server - int(local * 1000))
        return self._stalwart_clock[1]
