"""The mover: publishes due jobs from the delayed sets to their queues (DESIGN §5).

Every worker runs one. Each move is one Lua script (ZRANGEBYSCORE, LPUSH, ZREM), so a mover
killed mid-move loses nothing and never publishes a job twice; many movers are harmless.
"""

from __future__ import annotations

import redis

from .keys import Keys
from .periodic import Periodic
from .redis.scripts import load_script

BATCH = 1000


def move_due(client: redis.Redis, keys: Keys, list_key: str, batch: int = BATCH) -> tuple[int, int]:
    """Move due jobs of one queue list; returns (moved, ms until the next is due or -1)."""
    moved, wait = load_script("delayed_move")(client, [keys.delayed(list_key), list_key], [batch])
    return int(moved), int(wait)


def depth(client: redis.Redis, keys: Keys) -> dict[str, int]:
    """How many jobs wait in each queue's delayed set."""
    lists = sorted(m.decode() if isinstance(m, bytes) else m for m in client.smembers(keys.registry("delayed")))
    with client.pipeline(transaction=False) as pipe:
        for name in lists:
            pipe.zcard(keys.delayed(name))
        counts = pipe.execute()
    return {name: int(n) for name, n in zip(lists, counts, strict=True)}


class Mover(Periodic):
    """A daemon thread that moves due jobs every ``interval`` seconds (sooner under load)."""

    name = "stalwart-mover"

    def __init__(self, client: redis.Redis, keys: Keys, interval: float = 0.1) -> None:
        super().__init__(interval)
        self.client = client
        self.keys = keys
        self.moved = 0

    def tick(self) -> float:
        """Move everything due now; returns how long to sleep before the next tick."""
        sleep = self.interval
        lists = self.client.smembers(self.keys.registry("delayed"))
        for raw in lists:
            name = raw.decode() if isinstance(raw, bytes) else raw
            while True:
                moved, wait = move_due(self.client, self.keys, name)
                self.moved += moved
                if moved < BATCH:
                    break
            if 0 <= wait < sleep * 1000:
                sleep = max(0.005, wait / 1000)
        return sleep
