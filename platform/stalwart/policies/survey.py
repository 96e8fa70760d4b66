"""What operators see of limits and breakers (CLI and console): fixed names as they are, a
per-key template as its settings and its busiest keys, and any one rendered key's live state.

A rendered key (``tenant:acme``) is found through the registered template it matches
(``tenant:{tenant_id}``): the registry never lists rendered keys, and a rendered key has no
settings of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stalwart.errors import ConfigurationError
from stalwart.policies.keyed import is_family, matches
from stalwart.policies.shared import check_name
from stalwart.store.breakers import AdminOp, BreakerStore
from stalwart.store.keys import Keys
from stalwart.store.limits import LimitStore

TOP_KEYS = 10  # busiest keys shown per template unless asked otherwise
MAX_TOP = 1000


def family_of(client: Any, keys: Keys, kind: str, name: str) -> str | None:
    """The registered template (or key callable's family) that renders ``name``, if any."""
    found = [f for f in LimitStore(client, keys).names(kind) if is_family(f) and matches(f, name)]
    return found[0] if found else None


def _total(rows: list[dict[str, Any]], what: str) -> int:
    return sum(int(row.get(what) or 0) for row in rows)


def _settings(config: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in config.items() if k != "key"}


# -- limits ---------------------------------------------------------------------------------------


def limit_family(client: Any, keys: Keys, family: str, top: int = TOP_KEYS) -> dict[str, Any]:
    """A template: its settings, how many keys it tracks, and its ``top`` busiest keys' state."""
    store = LimitStore(client, keys)
    config = store.template_config("limits", family)
    rows = []
    for key, activity in store.busiest("limits", family, min(top, MAX_TOP)):
        status = store.status(key, _settings(config) or {"type": "?"}) or {"name": key}
        rows.append({**status, "activity": activity})
    return {
        "name": family, "template": True, **config, "tracked_keys": store.tracked("limits", family),
        **{what: _total(rows, what) for what in ("granted", "denied", "holders", "waiting")},
        "keys": rows,
    }


def limit_status(client: Any, keys: Keys, name: str, top: int = TOP_KEYS) -> dict[str, Any] | None:
    """One fixed limit, one template (with its busiest keys) or one rendered key; None when unknown."""
    store = LimitStore(client, keys)
    if is_family(name):
        return limit_family(client, keys, name, top) if name in store.names("limits") else None
    status = store.status(name)
    if status is not None:
        return status
    family = family_of(client, keys, "limits", name)
    config = _settings(store.template_config("limits", family)) if family else {}
    if not family or not config:
        return None
    return {**(store.status(name, config) or {}), "template": family}


def _overview(client: Any, keys: Keys, kind: str, top: int,
              status: Callable[[Any, Keys, str, int], dict[str, Any] | None]) -> list[dict[str, Any]]:
    """The status of every name in one registry (``limits`` or ``breakers``) that still has one."""
    rows = (status(client, keys, name, top) for name in LimitStore(client, keys).names(kind))
    return [row for row in rows if row is not None]


def limits_overview(client: Any, keys: Keys, top: int = TOP_KEYS) -> list[dict[str, Any]]:
    """Every fixed limit and template in use (templates with their busiest keys)."""
    return _overview(client, keys, "limits", top, limit_status)


# -- breakers -------------------------------------------------------------------------------------


def breaker_family(client: Any, keys: Keys, family: str, top: int = TOP_KEYS) -> dict[str, Any]:
    """A breaker template: settings, tracked keys, its busiest keys' state, and totals over them."""
    limits, breakers = LimitStore(client, keys), BreakerStore(client, keys)
    config = limits.template_config("breakers", family)
    rows = [{**breakers.status(key, _settings(config)), "activity": activity}
            for key, activity in limits.busiest("breakers", family, min(top, MAX_TOP))]
    calls, failures = _total(rows, "calls"), _total(rows, "failures")
    open_keys = sum(1 for row in rows if row["state"] != "closed")
    return {
        "name": family, "template": True, "state": f"{open_keys} of {len(rows)} busiest not closed",
        "open_keys": open_keys, "tracked_keys": limits.tracked("breakers", family), "calls": calls,
        "failures": failures, "failure_rate": round(failures / calls, 4) if calls else 0.0,
        "probes_in_flight": _total(rows, "probes_in_flight"), "half_open_in": None,
        "config": config, "keys": rows,
    }


def breaker_status(client: Any, keys: Keys, name: str, top: int = TOP_KEYS) -> dict[str, Any] | None:
    """One fixed breaker, one template (with its busiest keys) or one rendered key; None when unknown."""
    names = LimitStore(client, keys).names("breakers")
    if name in names:
        return breaker_family(client, keys, name, top) if is_family(name) else BreakerStore(client, keys).status(name)
    family = family_of(client, keys, "breakers", name) if not is_family(name) else None
    if family is None:
        return None
    config = _settings(LimitStore(client, keys).template_config("breakers", family))
    return {**BreakerStore(client, keys).status(name, config), "template": family}


def breakers_overview(client: Any, keys: Keys, top: int = TOP_KEYS) -> list[dict[str, Any]]:
    """Every fixed breaker and template in use (templates with their busiest keys)."""
    return _overview(client, keys, "breakers", top, breaker_status)


def breaker_admin(client: Any, keys: Keys, name: str, op: AdminOp) -> str:
    """Force open, close or reset a fixed breaker or one rendered key of a template (never a
    whole template: act on its keys one by one)."""
    if is_family(name):
        raise ConfigurationError(f"{name!r} is a per-key template: name one of its keys, like its busiest ones")
    check_name("Breaker", name)
    fixed = name in LimitStore(client, keys).names("breakers")
    family = None if fixed else family_of(client, keys, "breakers", name)
    return BreakerStore(client, keys).admin(name, op, family=family)
