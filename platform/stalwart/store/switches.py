"""Run-time switches: pattern → ``paused``/``disabled``, and pattern → when it was set."""

from __future__ import annotations

import redis

from stalwart.store.keys import Keys
from stalwart.store.scripts import as_int, guarded, text_map


class SwitchStore:
    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    @property
    def changed_key(self) -> str:
        return f"{self.keys.switches()}:at"

    @guarded
    def rules(self) -> dict[str, str]:
        """pattern → state."""
        return text_map(self.client.hgetall(self.keys.switches()))

    @guarded
    def read(self) -> dict[str, tuple[str, int | None]]:
        """pattern → (state, ms it was set)."""
        with self.client.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.keys.switches())
            pipe.hgetall(self.changed_key)
            states, stamps = pipe.execute()
        at = {k: as_int(v) for k, v in text_map(stamps).items()}
        return {p: (s, at.get(p)) for p, s in sorted(text_map(states).items())}

    @guarded
    def set(self, pattern: str, state: str) -> int:
        """Set a switch; returns the Redis time (ms) it took effect."""
        seconds, micros = self.client.time()
        now = int(seconds) * 1000 + int(micros) // 1000
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(self.keys.switches(), pattern, state)
            pipe.hset(self.changed_key, pattern, now)
            pipe.execute()
        return now

    @guarded
    def clear(self, pattern: str) -> bool:
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hdel(self.keys.switches(), pattern)
            pipe.hdel(self.changed_key, pattern)
            removed, _ = pipe.execute()
        return bool(removed)
