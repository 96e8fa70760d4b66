"""Rate limits (GCRA state + reservations), concurrency limits (leased slots), and the registries.

Keys per limit name, under the ``{limit:<name>}`` hash tag, and what bounds each. The name is a
fixed name or one rendered key of a per-key template (``{limit:tenant:acme}``: each rendered key
is its own budget under its own hash tag):

- ``gcra`` (TAT and counters) and ``reserved`` (deferred jobs' reserved slots → slot ms): TTLs
  reaching just past the last slot handed out (plus a minute); reservations whose job never came
  back are dropped on every acquire.
- ``holders`` (lease id → expiry ms): bounded by the limit; expired leases dropped on every
  acquire; a TTL of two leases.
- ``stats`` (granted, denied, reclaimed, average hold): :data:`IDLE_TTL_MS` for a fixed name,
  :data:`KEY_IDLE_MS` for a rendered key, renewed on use.
- ``config``, here and for breakers (``{breaker:<name>}:config``): :data:`IDLE_TTL_MS`, renewed
  while a process uses the policy (:meth:`LimitStore.register`, at most hourly per process).
  Written for fixed names only: a rendered key has no config of its own.

Per template (family), under ``{limit:<family tag>}`` / ``{breaker:<family tag>}`` where the tag
is the template with ``{}`` written ``<>`` (``{limit:tenant:<tenant_id>}``; a rendered key never
holds ``<``):

- ``template`` hash: the template's settings, :data:`IDLE_TTL_MS`, renewed like ``config``.
- ``keys`` zset (rendered key → log of its activity decayed over :data:`ACTIVITY_DECAY_S`): the
  busiest keys operators see, at most :data:`BUSIEST_CAP` members (the least active dropped
  first), expiring :data:`BUSIEST_TTL_MS` after the template's last use.

Registries ``{registry}:limit_names`` and ``{registry}:breaker_names`` (zsets: name → last
registered ms) list the fixed names and templates in use (never a rendered key) for the CLI and
metrics: names unused for :data:`IDLE_TTL_MS` are dropped, and at most :data:`REGISTRY_CAP` (the
most recent) are kept, so dynamic names (``Concurrency(f"tenant-{id}", 3)``) cannot grow them
without bound.
"""

from __future__ import annotations

import math
from typing import Any

from stalwart.store.keys import Keys
from stalwart.store.scripts import as_int, guarded, script, text, text_map

IDLE_TTL_MS = 7 * 86_400_000  # the state and settings of a limit or breaker unused this long expire
KEY_IDLE_MS = 600_000  # the stats and breaker state of one rendered key unused this long expire
REGISTRY_CAP = 10_000  # names each registry keeps (the most recently used)
BUSIEST_CAP = 1000  # rendered keys a template's busiest-keys set keeps
BUSIEST_TTL_MS = 86_400_000  # a template's busiest-keys set expires this long after its last use
ACTIVITY_DECAY_S = 300.0  # a key's activity (grants + denials) decays by e every this many seconds
REGISTRIES = {"limits": "limit_names", "breakers": "breaker_names"}


def family_tag(family: str) -> str:
    """A template as it appears inside a hash tag: ``tenant:{tenant_id}`` → ``tenant:<tenant_id>``."""
    return family.replace("{", "<").replace("}", ">")


def server_now_ms(client: Any) -> float:
    sec, usec = client.time()
    return int(sec) * 1000 + int(usec) / 1000


class LimitStore:
    """Every read and write of limit state. ``client`` may be a Redis or RedisCluster client."""

    def __init__(self, client: Any, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    def _concurrency(self, name: str) -> list[str]:
        return [self.keys.limit(name, "holders"), self.keys.limit(name, "stats")]

    def registry_key(self, kind: str) -> str:
        return self.keys.registry(REGISTRIES[kind])

    def family_key(self, kind: str, family: str, part: str) -> str:
        """A template's own keys (``template`` settings, ``keys`` busiest keys)."""
        tag = family_tag(family)
        return self.keys.breaker(tag, part) if kind == "breakers" else self.keys.limit(tag, part)

    @guarded
    def register(self, kind: str, name: str, config: dict[str, str], *, template: bool = False) -> None:
        """Record a policy's name (a fixed name or a template, never a rendered key) and settings so
        operators can list it (limits or breakers)."""
        if template:
            config_key = self.family_key(kind, name, "template")
        else:
            config_key = self.keys.breaker(name, "config") if kind == "breakers" else self.keys.limit(name, "config")
        self.touch(kind, name)
        with self.client.pipeline(transaction=False) as pipe:
            pipe.hset(config_key, mapping=config)
            pipe.pexpire(config_key, IDLE_TTL_MS)
            pipe.execute()

    @guarded
    def touch(self, kind: str, name: str) -> int:
        """Mark ``name`` in use in its registry, dropping names unused too long; names kept."""
        return int(script("registry_touch")(
            self.client, [self.registry_key(kind)], [name, IDLE_TTL_MS, REGISTRY_CAP]
        ))

    @guarded
    def note_key(self, kind: str, family: str, rendered: str) -> None:
        """One acquire of ``rendered``: raise its activity in the template's capped busiest-keys set."""
        script("keyed_touch")(
            self.client, [self.family_key(kind, family, "keys")],
            [rendered, f"{ACTIVITY_DECAY_S:g}", BUSIEST_CAP, BUSIEST_TTL_MS],
        )

    @guarded
    def busiest(self, kind: str, family: str, n: int) -> list[tuple[str, float]]:
        """The ``n`` most active rendered keys of a template: (key, grants + denials decayed over
        :data:`ACTIVITY_DECAY_S`, as of now)."""
        now_s = server_now_ms(self.client) / 1000
        found = self.client.zrevrange(self.family_key(kind, family, "keys"), 0, max(0, n - 1), withscores=True)
        return [(text(k), round(math.exp(min(50.0, float(s) - now_s / ACTIVITY_DECAY_S)), 3)) for k, s in found]

    @guarded
    def tracked(self, kind: str, family: str) -> int:
        """How many rendered keys of a template the busiest-keys set holds (at most BUSIEST_CAP)."""
        return int(self.client.zcard(self.family_key(kind, family, "keys")))

    @guarded
    def template_config(self, kind: str, family: str) -> dict[str, str]:
        return text_map(self.client.hgetall(self.family_key(kind, family, "template")))

    @guarded
    def names(self, kind: str) -> list[str]:
        """The names of one registry (``limits`` or ``breakers``)."""
        return sorted(text(n) for n in self.client.zrange(self.registry_key(kind), 0, -1))

    @guarded
    def rate_acquire(self, name: str, *, interval_ms: float, burst: int, member: str,
                     late_ms: float, slack: int, hand_on_ms: int) -> tuple[bool, float]:
        """One GCRA decision: (granted, ms to wait when denied)."""
        granted, wait_ms, _how = script("rate_acquire")(
            self.client,
            [self.keys.limit(name, "gcra"), self.keys.limit(name, "reserved")],
            [f"{interval_ms:.6f}", burst, member, f"{late_ms:.0f}", slack, hand_on_ms],
        )
        return bool(int(granted)), float(text(wait_ms))

    @guarded
    def concurrency_acquire(self, name: str, *, limit: int, lease_ms: int, lease_id: str,
                            idle_ms: int = IDLE_TTL_MS) -> tuple[bool, int]:
        """Take a leased slot: (granted, ms until a slot may free up when denied); the stats hash
        is kept ``idle_ms`` after its last use."""
        granted, wait_ms, _holders = script("concurrency_acquire")(
            self.client, self._concurrency(name), [limit, lease_ms, lease_id, idle_ms]
        )
        return bool(int(granted)), int(wait_ms)

    @guarded
    def concurrency_release(self, name: str, *, lease_id: str, held_ms: int) -> None:
        script("concurrency_release")(self.client, self._concurrency(name), [lease_id, held_ms])

    @guarded
    def concurrency_renew(self, name: str, *, lease_id: str, lease_ms: int) -> bool:
        """Extend a held lease; False when it had already expired and been reclaimed."""
        return bool(script("concurrency_renew")(self.client, self._concurrency(name)[:1], [lease_id, lease_ms]))

    @guarded
    def status(self, name: str, config: dict[str, str] | None = None) -> dict[str, Any] | None:
        """Config and live state of one limit, as the CLI shows it; None when unknown. A rendered
        key has no config of its own: pass its template's."""
        config = config if config is not None else text_map(self.client.hgetall(self.keys.limit(name, "config")))
        if not config:
            return None
        now_ms = server_now_ms(self.client)
        out: dict[str, Any] = {"name": name, **config}
        if config.get("type") == "rate":
            state = text_map(self.client.hgetall(self.keys.limit(name, "gcra")))
            tat = float(state.get("tat", 0) or 0)
            out.update(
                granted=as_int(state.get("granted")), denied=as_int(state.get("denied")),
                reserved_total=as_int(state.get("reserved")),
                waiting=int(self.client.zcard(self.keys.limit(name, "reserved"))),
                backlog_seconds=round(max(0.0, tat - now_ms) / 1000, 3),
            )
        else:
            stats = text_map(self.client.hgetall(self.keys.limit(name, "stats")))
            out.update(
                holders=int(self.client.zcount(self.keys.limit(name, "holders"), f"({now_ms:.0f}", "+inf")),
                granted=as_int(stats.get("granted")), denied=as_int(stats.get("denied")),
                reclaimed=as_int(stats.get("reclaimed")), avg_hold_ms=as_int(stats.get("avg_ms")),
            )
        return out

    @guarded
    def config(self, name: str) -> dict[str, str]:
        """The settings of a fixed limit, or of a template (a name with ``{``) from its ``template`` hash."""
        if "{" in name:
            return self.template_config("limits", name)
        return text_map(self.client.hgetall(self.keys.limit(name, "config")))
