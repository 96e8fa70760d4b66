"""The broker's keys that Stalwart's transport reads and writes, beside kombu's queue lists.

kombu's own: the queue lists, the ``unacked`` hash (tag → ``[payload, exchange, routing_key]``)
and the ``unacked_index`` zset (tag → seconds, on the Redis clock here). Stalwart's:

* ``<prefix>:{broker}:fetches``, a hash tag → how many times the message was fetched without being
  acknowledged (the crash-loop guard). An entry goes when its message is acknowledged, rejected,
  requeued by a live worker, scheduled or quarantined; the hash is capped (``FETCH_COUNTS_CAP``
  entries: past it the counts are forgotten at once, which can only give a crash loop a few more
  rounds).
* ``<prefix>:{broker}:quarantine``, a stream of items that could not be recorded (not a kombu
  envelope, a duplicate tag, too large) or were fetched too often: each waits there, raw, until a
  worker has written its DLQ entry, then is deleted. Capped at ``QUARANTINE_CAP`` entries.
* each list's fair lane (:mod:`stalwart.store.fair`), which the fetch serves with the list.

All names are full names: kombu's ``global_keyprefix`` is already part of them. Calls go through
:func:`unprefixed` so that kombu's prefixing client does not prefix them again. Connection errors
are left to kombu's own handling (the callers are kombu's channel and QoS), so nothing here is
``@guarded``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

from stalwart.store import fair
from stalwart.store.keys import Keys
from stalwart.store.scripts import script, text

FETCH_COUNTS_CAP = 100_000
QUARANTINE_CAP = 100_000
WAIT_COMMAND = "BLMOVE"


@dataclass(frozen=True)
class BrokerKeys:
    """Full names of the keys one channel uses."""

    unacked: str
    index: str
    fetches: str
    quarantine: str
    prefix: str = "stalwart"  # Stalwart's own prefix, which names the lists' fair lanes

    @classmethod
    def build(cls, *, prefix: str, global_prefix: str, unacked: str, index: str) -> BrokerKeys:
        """kombu's keys and Stalwart's, with kombu's ``global_keyprefix`` in front of each."""
        return cls(
            unacked=global_prefix + unacked,
            index=global_prefix + index,
            fetches=f"{global_prefix}{prefix}:{{broker}}:fetches",
            quarantine=f"{global_prefix}{prefix}:{{broker}}:quarantine",
            prefix=prefix,
        )


@dataclass(frozen=True)
class FetchLimits:
    """What the fetch script enforces."""

    max_fetches: int
    max_item_bytes: int
    visibility_ms: int
    max_depth: int


@dataclass(frozen=True)
class Taken:
    """A message taken from ``list_key`` and recorded unacked under ``tag``."""

    list_key: str
    item: bytes
    tag: str
    fetches: int
    now_ms: int


@dataclass(frozen=True)
class Quarantined:
    """An item moved to the quarantine stream as ``entry_id``; ``source`` is its stable identity."""

    list_key: str
    item: bytes
    reason: str
    detail: str
    entry_id: str
    source: str
    now_ms: int


Fetched = Taken | Quarantined


class Unprefixed:
    """A view of a Redis client that sends key names as given.

    kombu's client for a ``global_keyprefix`` prefixes the first key of EVALSHA and the keys of a
    list of commands; Stalwart passes full names to everything, so it calls the plain client's
    ``execute_command`` (which kombu's subclass overrides to add the prefix).
    """

    def __init__(self, client: Any) -> None:
        self.client = client

    def execute(self, *args: Any) -> Any:
        return redis.Redis.execute_command(self.client, *args)  # type: ignore[no-untyped-call]

    def evalsha(self, *args: Any) -> Any:
        return self.execute("EVALSHA", *args)

    def script_load(self, source: str) -> Any:
        return self.execute("SCRIPT LOAD", source)


def unprefixed(client: Any) -> Unprefixed:
    return client if isinstance(client, Unprefixed) else Unprefixed(client)


def _fetch_args(keys: BrokerKeys, lists: list[tuple[str, str]], limits: FetchLimits) -> tuple[list[str], list[Any]]:
    names = [keys.unacked, keys.index, keys.fetches, keys.quarantine]
    for name, _ in lists:
        lane = fair.LaneKeys.of(keys.prefix, name)
        names += [name, lane.lane, lane.tails, lane.clock]
    args: list[Any] = [limits.max_fetches, limits.max_item_bytes, limits.visibility_ms, FETCH_COUNTS_CAP,
                       QUARANTINE_CAP, limits.max_depth, *(queue for _, queue in lists)]
    return names, args


def fetch_command(keys: BrokerKeys, lists: list[tuple[str, str]], limits: FetchLimits) -> tuple[Any, ...]:
    """The fetch as a raw command, to send on the consumer's connection and read when it answers.

    ``lists`` holds (full list key, queue name) pairs in the order to try; each list's fair lane
    is served with it.
    """
    return ("EVALSHA", *script("fetch").command(*_fetch_args(keys, lists, limits))[1:])


def fetch(client: Any, keys: BrokerKeys, lists: list[tuple[str, str]], limits: FetchLimits) -> Fetched | None:
    """Take the next message of ``lists`` now (kombu's basic_get path)."""
    return parse_fetch(script("fetch")(unprefixed(client), *_fetch_args(keys, lists, limits)))


def load_fetch(client: Any) -> None:
    """Load the fetch script (after NOSCRIPT on the raw command: a restart or SCRIPT FLUSH)."""
    unprefixed(client).script_load(script("fetch").source)


def parse_fetch(reply: Any) -> Fetched | None:
    """The fetch script's reply, decoded."""
    if not reply:
        return None
    kind = text(reply[0])
    if kind == "run":
        return Taken(text(reply[1]), bytes(reply[2]), text(reply[3]), int(reply[4]), int(reply[5]))
    return Quarantined(text(reply[1]), bytes(reply[2]), text(reply[3]), text(reply[4]), text(reply[5]),
                       text(reply[6]), int(reply[7]))


def wait_command(list_key: str, timeout: float) -> tuple[Any, ...]:
    """Block until ``list_key`` has an item, without taking it (it moves onto itself)."""
    return (WAIT_COMMAND, list_key, list_key, "RIGHT", "RIGHT", timeout)


def ack(client: Any, keys: BrokerKeys, tag: str) -> None:
    """Forget an acknowledged (or dropped) message: its record, index entry and fetch count."""
    script("unacked_ack")(unprefixed(client), [keys.unacked, keys.index, keys.fetches], [tag])


def due(client: Any, keys: BrokerKeys, *, visibility_ms: int, limit: int) -> list[tuple[str, bytes]]:
    """(tag, record) of each unacked message past its visibility timeout, on the Redis clock."""
    flat = script("unacked_due")(unprefixed(client), [keys.unacked, keys.index], [visibility_ms, limit])
    return [(text(flat[i]), bytes(flat[i + 1])) for i in range(0, len(flat), 2)]


def record_of(client: Any, keys: BrokerKeys, tag: str) -> bytes | None:
    """The unacked record of ``tag``, if it is still unacked."""
    raw = unprefixed(client).execute("HGET", keys.unacked, tag)
    return None if raw is None else bytes(raw)


def restore(client: Any, keys: BrokerKeys, *, tag: str, record: bytes, list_key: str, item: bytes,
            leftmost: bool, orderly: bool, job: fair.FairJob | None = None) -> bool:
    """Push ``item`` back on ``list_key`` if ``tag``'s record is still ``record``; True if it did.

    A fair job (``job``) goes back into the list's lane instead, as its key's next job.
    """
    if job is not None:
        lane = fair.LaneKeys.of(keys.prefix, list_key)
        return bool(script("unacked_restore_fair")(
            unprefixed(client),
            [keys.unacked, keys.index, keys.fetches, list_key, lane.lane, lane.tails, lane.clock,
             fair.registry(Keys(keys.prefix))],
            [tag, record, item, int(orderly), job.key, repr(job.weight)],
        ))
    done = script("unacked_restore")(
        unprefixed(client), [keys.unacked, keys.index, keys.fetches, list_key],
        [tag, record, item, int(leftmost), int(orderly)],
    )
    return bool(done)


def forget_fetches(client: Any, keys: BrokerKeys, tags: list[str]) -> None:
    """Clear fetch counts: these messages went back to their queue in order, not by a crash."""
    if tags:
        unprefixed(client).execute("HDEL", keys.fetches, *tags)


def replace(client: Any, keys: BrokerKeys, *, tag: str, record: str) -> bool:
    """Replace ``tag``'s unacked record while it is still unacked."""
    return bool(script("unacked_replace")(unprefixed(client), [keys.unacked], [tag, record]))


def reschedule(client: Any, keys: BrokerKeys, *, delayed_key: str, registry_key: str, list_key: str,
               tag: str, due_ms: int, payload: str) -> None:
    """Move a fetched message into a delayed set, due at ``due_ms`` (Redis clock); ``list_key`` is its
    member in the registry (a lane's list is marked, see :mod:`stalwart.store.fair`)."""
    script("delayed_reschedule")(
        unprefixed(client), [delayed_key, registry_key, keys.unacked, keys.index, keys.fetches],
        [due_ms, payload, list_key, tag],
    )


def quarantine_done(client: Any, keys: BrokerKeys, entry_id: str) -> None:
    """Delete a quarantined item once its DLQ entry is written."""
    unprefixed(client).execute("XDEL", keys.quarantine, entry_id)


def quarantine_size(client: Any, keys: BrokerKeys) -> int:
    return int(unprefixed(client).execute("XLEN", keys.quarantine))


def restamp(client: Any, index_key: str, tags: list[str]) -> int:
    """Re-stamp the unacked index entries of ``tags`` (only those still there) with Redis time."""
    if not tags:
        return 0
    return int(script("unacked_restamp")(unprefixed(client), [index_key], list(tags)))


def server_time_ms(client: Any) -> int:
    """The Redis server's clock, in epoch milliseconds."""
    seconds, micros = unprefixed(client).execute("TIME")
    return int(seconds) * 1000 + int(micros) // 1000


def list_lengths(client: Any, lists: list[str], prefix: str = "stalwart") -> list[int]:
    """Jobs ready in each queue list: its length plus its fair lane's, in one pipeline.

    A fair lane's wake token (at most one per list, until the next fetch) counts as a job.
    """
    with client.pipeline(transaction=False) as pipe:
        for name in lists:
            pipe.llen(name)
            pipe.zcard(fair.LaneKeys.of(prefix, name).lane)
        flat = [int(n) for n in pipe.execute()]
    return [flat[i] + flat[i + 1] for i in range(0, len(flat), 2)]


def unacked_count(client: Any, unacked_key: str = "unacked") -> int:
    """Messages a worker holds unacknowledged (kombu's ``unacked`` hash)."""
    return int(client.hlen(unacked_key))
