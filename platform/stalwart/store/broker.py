"""kombu's own keys that Stalwart's fetch writes: the queue lists and the unacked records.

``fetch`` takes the oldest message of a list and records it in kombu's ``unacked`` hash and
``unacked_index`` in one step, so a worker killed in between cannot lose it.
"""

from __future__ import annotations

from typing import Any

from stalwart.store.scripts import script


def fetch(client: Any, list_key: str, unacked_key: str, index_key: str) -> tuple[bytes, bool] | None:
    """(item, recorded) taken from ``list_key``, or None when it is empty.

    Connection errors are left to kombu's own handling (the caller is kombu's channel).
    """
    found = script("fetch")(client, [list_key, unacked_key, index_key], [])
    return (found[0], bool(found[1])) if found else None


def restamp(client: Any, index_key: str, tags: list[str], now: float) -> int:
    """Re-stamp the unacked index entries of ``tags`` (only those still there)."""
    if not tags:
        return 0
    return int(client.zadd(index_key, dict.fromkeys(tags, now), xx=True) or 0)


def list_lengths(client: Any, lists: list[str]) -> list[int]:
    """LLEN of each queue list, in one pipeline."""
    with client.pipeline(transaction=False) as pipe:
        for name in lists:
            pipe.llen(name)
        return [int(n) for n in pipe.execute()]


def unacked_count(client: Any, unacked_key: str = "unacked") -> int:
    """Messages a worker holds unacknowledged (kombu's ``unacked`` hash)."""
    return int(client.hlen(unacked_key))


def pop(client: Any, list_key: str) -> bytes | None:
    """Take the oldest message of a queue list without recording it (kombu's basic_get path)."""
    item: bytes | None = client.rpop(list_key)
    return item
