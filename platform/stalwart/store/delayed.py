"""The delayed sets: one sorted set per queue list, scored by due time on the Redis clock.

They live on the broker Redis beside the queues, under ``<prefix>:{delayed:<list>}`` where
``<list>`` is the list's full name (kombu's ``global_keyprefix`` included), plus a registry set of
the lists that have one (what movers scan). Both are drained by the movers: a delayed set holds
only jobs not yet due, and the registry one name per queue list with something delayed (or a
fair lane with jobs): a move that empties a set takes its name out, and the next schedule puts
it back, so queue names used once (per-pod queues, say) do not pile up. A fair job (``stalwart_fair``)
waits in its lane's delayed set instead and comes back into its lane (:mod:`stalwart.store.fair`).
"""

from __future__ import annotations

from typing import Any

from stalwart.store import fair
from stalwart.store.fair import FairJob
from stalwart.store.keys import Keys
from stalwart.store.scripts import guarded, script


def target(keys: Keys, list_key: str, payload: str, job: FairJob | None) -> tuple[str, str, str, str]:
    """(delayed set, registry, member, registry member) where ``payload`` bound for ``list_key`` waits."""
    if job is None:
        return keys.delayed(list_key), keys.registry("delayed"), payload, list_key
    return (fair.LaneKeys.of(keys.prefix, list_key).delayed, fair.registry(keys), fair.delayed_member(job, payload),
            fair.registry_member(list_key))


def _schedule_args(keys: Keys, list_key: str, delay_ms: int, payload: str,
                   job: FairJob | None) -> tuple[list[str], list[Any]]:
    delayed, registry, member, listed = target(keys, list_key, payload, job)
    return [delayed, registry], [delay_ms, member, listed]


def schedule(client: Any, keys: Keys, list_key: str, *, delay_ms: int, payload: str,
             job: FairJob | None = None) -> int:
    """Put ``payload`` in the delayed set of ``list_key`` (its lane's for a fair ``job``), due
    ``delay_ms`` from now; the due time.

    Not wrapped: kombu's publish path calls it, and kombu retries a publish on Redis's own
    connection errors (a wrapped error would end the publish instead).
    """
    return int(script("delayed_schedule")(client, *_schedule_args(keys, list_key, delay_ms, payload, job)))


class DelayedStore:
    """Schedule, move and count delayed messages on ``client`` (the broker's Redis)."""

    def __init__(self, client: Any, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    @guarded
    def schedule(self, list_key: str, *, delay_ms: int, payload: str) -> None:
        """Put ``payload`` in the delayed set of ``list_key``, due ``delay_ms`` from now."""
        schedule(self.client, self.keys, list_key, delay_ms=delay_ms, payload=payload)

    def schedule_command(self, list_key: str, *, delay_ms: int, payload: str,
                         job: FairJob | None = None) -> tuple[Any, ...]:
        """The same as a raw command for a kombu pipeline; call :meth:`ensure_loaded` first."""
        return script("delayed_schedule").command(*_schedule_args(self.keys, list_key, delay_ms, payload, job))

    @guarded
    def ensure_loaded(self) -> None:
        script("delayed_schedule").ensure_loaded(self.client)

    @guarded
    def move_due(self, list_key: str, batch: int) -> tuple[int, int]:
        """Move due messages of one list; (moved, ms until the next is due or -1)."""
        moved, wait = script("delayed_move")(
            self.client, [self.keys.delayed(list_key), list_key, self.keys.registry("delayed")], [batch, list_key])
        return int(moved), int(wait)

    @guarded
    def move_fair_due(self, list_key: str, batch: int) -> tuple[int, int]:
        """Move due fair jobs of one list into its lane; (moved, ms until the next is due or -1)."""
        return fair.move_due(self.client, self.keys, list_key, batch)

    @guarded
    def registered(self) -> tuple[list[str], list[str]]:
        """The lists with a delayed set and those with a fair lane: one SMEMBERS (a mover's tick)."""
        return fair.split_registry(self.client.smembers(self.keys.registry("delayed")))

    @guarded
    def fair_lists(self) -> list[str]:
        """Every queue list that has a fair lane (or a fair delayed set)."""
        return fair.lists(self.client, self.keys)

    @guarded
    def lists(self) -> list[str]:
        """Every queue list that has a delayed set."""
        return self.registered()[0]

    @guarded
    def depth(self) -> dict[str, int]:
        """How many messages wait in each list's delayed sets (its own and its lane's)."""
        lists = self.lists()
        with self.client.pipeline(transaction=False) as pipe:
            for name in lists:
                pipe.zcard(self.keys.delayed(name))
            counts = pipe.execute()
        out = {name: int(n) for name, n in zip(lists, counts, strict=True)}
        lanes = fair.lists(self.client, self.keys)
        for name, (_, late) in zip(lanes, fair.counts(self.client, self.keys, lanes), strict=True):
            if late or name not in out:
                out[name] = out.get(name, 0) + late
        return out
