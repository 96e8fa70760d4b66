"""Where the transport publishes a delayed or fair message, and restores a fair one.

A fair job is queued in its list's lane (:mod:`stalwart.store.fair`) instead of the list, waits
in the lane's delayed set when it has a delay, and goes back into the lane when restored (a dead
worker's, an expired visibility, a warm shutdown's hand-back): as its key's next job, so its
key's turn order is kept and nothing is lost. The fetch script serves lanes with their lists.
A header that is not ``[key, weight]`` is ignored: the message is queued plainly.
"""

from __future__ import annotations

import json
from typing import Any

from stalwart.job.header import FAIR_HEADER
from stalwart.policies.fairness import job_of
from stalwart.store import broker as broker_store
from stalwart.store import delayed as delayed_store
from stalwart.store import fair as fair_store
from stalwart.store.fair import FairJob
from stalwart.store.keys import Keys


def fair_of(message: dict[str, Any]) -> FairJob | None:
    """The lane place of a kombu message about to be published."""
    headers = message.get("headers")
    return job_of(headers.get(FAIR_HEADER)) if isinstance(headers, dict) else None


def fair_of_item(item: bytes) -> FairJob | None:
    """The lane place of a raw queued item (None for anything unreadable: it restores plainly)."""
    if FAIR_HEADER.encode() not in item:
        return None
    try:
        message = json.loads(item)
    except (ValueError, RecursionError):
        return None
    return fair_of(message) if isinstance(message, dict) else None


def publish(client: Any, keys: Keys, list_key: str, payload: str, job: FairJob | None, *, delay_ms: int,
            batch: Any = None) -> None:
    """Queue a fair job in its lane; a delayed job (fair or not) in its delayed set.

    ``batch`` is kombu's publish batch (bulk enqueue): the script joins its pipeline; the caller
    passes it only without a ``global_keyprefix`` (kombu's pipeline would prefix the first key).
    """
    if batch is not None:
        if not getattr(batch, "stalwart_scripts_loaded", False):
            fair_store.ensure_loaded(client)
            delayed_store.DelayedStore(client, keys).ensure_loaded()
            batch.stalwart_scripts_loaded = True
        if delay_ms > 0 or job is None:
            batch.add(*delayed_store.DelayedStore(client, keys).schedule_command(
                list_key, delay_ms=delay_ms, payload=payload, job=job))
        else:
            batch.add(*fair_store.push_command(keys, list_key, job, payload))
        return
    raw = broker_store.unprefixed(client)
    if delay_ms > 0 or job is None:
        delayed_store.schedule(raw, keys, list_key, delay_ms=delay_ms, payload=payload, job=job)
    else:
        fair_store.push(raw, keys, list_key, job, payload)


def reschedule_target(keys: Keys, list_key: str, envelope: dict[str, Any]) -> tuple[str, str, str, str]:
    """(delayed set, registry, member, registry member) for a fetched message not due yet (its eta)."""
    payload = json.dumps(envelope)
    return delayed_store.target(keys, list_key, payload, fair_of(envelope))
