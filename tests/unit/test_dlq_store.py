"""The DLQ store and its Lua scripts (dlq_add, dlq_remove) on a real redis-server."""

from __future__ import annotations

import json

import pytest
import redis

from stalwart.dlq.entry import DeadLetter, Filter
from stalwart.dlq.queue import DeadLetterQueue
from stalwart.errors import DLQError, EntryNotFound
from stalwart.settings import Settings
from stalwart.store.keys import Keys


def make_dlq(r: redis.Redis, max_entries: int = 100, max_age_seconds: float = 3600.0) -> DeadLetterQueue:
    settings = Settings(dlq_max_entries=max_entries, dlq_max_age_seconds=max_age_seconds)
    return DeadLetterQueue(r, Keys("stalwart"), settings)


def entry(i: int, reason: str = "exhausted", task: str = "jobs.a", queue: str = "celery") -> DeadLetter:
    return DeadLetter(
        id=f"e{i:03d}", reason=reason, task=task, task_id=f"tid-{i}", queue=queue,
        args=[i], kwargs={"k": i}, headers={"stalwart": {"trace": f"tr-{i}"}},
        exc_type="TimeoutError", exc_message="slow", traceback="Traceback ...",
        attempts=[{"attempt": n} for n in (1, 2, 3)], first_seen=1000 + i, options={},
    )


def set_dead_at(r: redis.Redis, dlq: DeadLetterQueue, scores: dict[str, int]) -> None:
    """Pin dead-at times so time filters and ordering do not depend on the clock: rewrite every
    index of each entry as dlq_add would have written it at that time."""
    keys = Keys("stalwart")
    for entry_id, at in scores.items():
        meta = json.loads(r.hget(keys.dlq("meta"), entry_id))
        values = {"a": "", "q": meta[0], "t": meta[1], "r": meta[2], "c": meta[3]}
        seq = f"{99999999999999 - meta[5]:014d}"
        for dim, value in values.items():
            r.zrem(keys.dlq("lex"), f"{dim}\0{value}\0{99999999999999 - meta[4]:014d}\0{seq}\0{entry_id}")
            r.zadd(keys.dlq("lex"), {f"{dim}\0{value}\0{99999999999999 - at:014d}\0{seq}\0{entry_id}": 0})
        meta[4] = at
        r.hset(keys.dlq("meta"), entry_id, json.dumps(meta))
        r.zadd(dlq.store.index_key, {entry_id: at}, xx=True)


def ids(entries: list[DeadLetter]) -> list[str]:
    return [e.id for e in entries]


def test_entry_round_trips_through_json() -> None:
    original = entry(1)
    assert DeadLetter.from_json(original.to_json()) == original
    assert DeadLetter.from_json(original.to_json().replace('"raw"', '"new_field":1,"raw"')) == original


def test_replayable_needs_a_task_and_a_decodable_message() -> None:
    assert entry(1).replayable
    assert not entry(1, reason="malformed").replayable
    assert not entry(1, reason="refused_content").replayable
    assert not DeadLetter(id="x", reason="unregistered").replayable


def test_add_then_get(r: redis.Redis) -> None:
    dlq = make_dlq(r)
    dead = entry(1)
    assert dlq.add(dead) is True
    assert dlq.get("e001") == dead
    with pytest.raises(EntryNotFound):
        dlq.get("nope")


def test_a_taken_id_is_never_overwritten(r: redis.Redis) -> None:
    dlq = make_dlq(r)
    assert dlq.add(entry(1)) is True
    second = entry(1, reason="poison")
    assert dlq.add(second) is True  # the generated id was taken: the entry gets a fresh one
    assert second.id != "e001"
    assert dlq.get("e001").reason == "exhausted"
    assert dlq.get(second.id).reason == "poison"
    stats = dlq.stats()
    assert (stats["total"], stats["added"], stats["by_reason"]) == (2, 2, {"exhausted": 1, "poison": 1})


def test_list_is_newest_first_and_paginated(r: redis.Redis) -> None:
    dlq = make_dlq(r)
    for i in range(7):
        dlq.add(entry(i))
    set_dead_at(r, dlq, {f"e{i:03d}": 10_000 + i for i in range(7)})
    assert ids(dlq.list()) == [f"e{i:03d}" for i in (6, 5, 4, 3, 2, 1, 0)]
    assert ids(dlq.list(limit=3)) == ["e006", "e005", "e004"]
    assert ids(dlq.list(offset=3, limit=3)) == ["e003", "e002", "e001"]
    assert ids(dlq.list(offset=6, limit=3)) == ["e000"]
    assert dlq.list(offset=7) == []


def test_pagination_crosses_store_pages(r: redis.Redis) -> None:
    dlq = make_dlq(r, max_entries=1000)
    for i in range(450):
        dlq.add(entry(i))
    set_dead_at(r, dlq, {f"e{i:03d}": 10_000 + i for i in range(450)})
    page = dlq.list(offset=190, limit=30)  # spans the 200-entry read page
    assert ids(page) == [f"e{i:03d}" for i in range(259, 229, -1)]
    assert len(list(dlq.iter())) == 450


@pytest.mark.parametrize(("offset", "limit"), [(-1, 10), (0, 0)])
def test_bad_page_is_refused(r: redis.Redis, offset: int, limit: int) -> None:
    with pytest.raises(DLQError):
        make_dlq(r).list(offset=offset, limit=limit)


def test_filters_by_queue_task_reason_and_time(r: redis.Redis) -> None:
    dlq = make_dlq(r)
    dlq.add(entry(1, reason="permanent", task="jobs.a", queue="celery"))
    dlq.add(entry(2, reason="poison", task="jobs.b", queue="celery"))
    dlq.add(entry(3, reason="permanent", task="jobs.b", queue="orders"))
    dlq.add(entry(4, reason="expired", task="jobs.a", queue="orders"))
    set_dead_at(r, dlq, {"e001": 1000, "e002": 2000, "e003": 3000, "e004": 4000})
    assert ids(dlq.list(Filter(reason="permanent"))) == ["e003", "e001"]
    assert ids(dlq.list(Filter(task="jobs.b"))) == ["e003", "e002"]
    assert ids(dlq.list(Filter(queue="orders"))) == ["e004", "e003"]
    assert ids(dlq.list(Filter(queue="orders", reason="permanent"))) == ["e003"]
    assert ids(dlq.list(Filter(since_ms=2000))) == ["e004", "e003", "e002"]
    assert ids(dlq.list(Filter(until_ms=2000))) == ["e002", "e001"]
    assert ids(dlq.list(Filter(since_ms=1500, until_ms=3500, task="jobs.b"))) == ["e003", "e002"]
    assert ids(dlq.list(Filter(reason="permanent"), offset=1)) == ["e001"]


def test_unknown_reason_in_a_filter_names_the_known_ones() -> None:
    with pytest.raises(DLQError, match="exhausted"):
        Filter(reason="tired")


def test_retention_by_count_evicts_the_oldest_and_counts_it(r: redis.Redis) -> None:
    dlq = make_dlq(r, max_entries=3)
    for i in range(3):
        dlq.add(entry(i, reason="poison" if i == 0 else "exhausted"))
    seconds, _ = r.time()
    set_dead_at(r, dlq, {"e000": seconds * 1000 - 3, "e001": seconds * 1000 - 2, "e002": seconds * 1000 - 1})
    dlq.add(entry(3))
    dlq.add(entry(4))
    assert sorted(ids(list(dlq.iter()))) == ["e002", "e003", "e004"]
    assert r.hget(dlq.store.entries_key, "e000") is None
    assert r.hget(dlq.store.entries_key, "e000:reason") is None
    stats = dlq.stats()
    assert stats["total"] == 3
    assert stats["evicted"] == 2
    assert stats["evicted_by"] == {"count": 2}
    assert stats["added"] == 5
    assert stats["by_reason"] == {"exhausted": 3}  # the evicted poison entry is no longer counted


def test_retention_by_age_evicts_old_entries_and_counts_it(r: redis.Redis) -> None:
    dlq = make_dlq(r, max_age_seconds=60)
    dlq.add(entry(1, reason="expired"))
    dlq.add(entry(2))
    seconds, _ = r.time()
    set_dead_at(r, dlq, {"e001": (seconds - 61) * 1000})  # older than the max age
    dlq.add(entry(3))
    assert sorted(ids(list(dlq.iter()))) == ["e002", "e003"]
    stats = dlq.stats()
    assert (stats["evicted"], stats["evicted_by"]) == (1, {"age": 1})
    assert stats["by_reason"] == {"exhausted": 2}


def test_remove_counts_under_the_given_stat(r: redis.Redis) -> None:
    dlq = make_dlq(r)
    for i in range(4):
        dlq.add(entry(i, reason="permanent" if i % 2 else "poison"))
    assert dlq.remove(["e000", "e001", "missing"], stat="replayed") == 2
    assert dlq.remove(["e000"], stat="replayed") == 0  # already gone: not counted twice
    assert r.hget(dlq.store.entries_key, "e001:reason") is None
    stats = dlq.stats()
    assert (stats["total"], stats["replayed"], stats["purged"]) == (2, 2, 0)
    assert stats["by_reason"] == {"permanent": 1, "poison": 1}


def test_remove_handles_many_ids_in_chunks(r: redis.Redis) -> None:
    dlq = make_dlq(r, max_entries=2000)
    for i in range(1100):
        dlq.add(DeadLetter(id=f"m{i}", reason="malformed"))
    assert dlq.remove([f"m{i}" for i in range(1100)]) == 1100
    assert dlq.stats()["total"] == 0


def test_purge_with_a_filter_and_all(r: redis.Redis) -> None:
    dlq = make_dlq(r)
    for i in range(5):
        dlq.add(entry(i, reason="malformed" if i < 2 else "exhausted"))
    assert dlq.purge(Filter(reason="malformed")) == 2
    assert dlq.stats()["by_reason"] == {"exhausted": 3}
    assert dlq.purge() == 3
    stats = dlq.stats()
    assert (stats["total"], stats["purged"], stats["by_reason"]) == (0, 5, {})
    assert r.hlen(dlq.store.entries_key) == 0


def test_stats_of_an_empty_dlq(r: redis.Redis) -> None:
    assert make_dlq(r).stats() == {
        "total": 0, "by_reason": {}, "evicted": 0, "evicted_by": {}, "added": 0,
        "replayed": 0, "purged": 0,
    }


def test_entry_ids_are_generated_and_a_source_is_written_once(r: redis.Redis) -> None:
    dlq = make_dlq(r)
    first = DeadLetter(reason="poison", task="jobs.a", source="msg-1")
    second = DeadLetter(reason="poison", task="jobs.a", source="msg-1")
    assert first.id != second.id
    assert len(first.id) == 32
    assert dlq.add(first)
    assert not dlq.add(second)
    assert second.id == first.id  # the caller learns which entry holds the message
    assert ids(dlq.list()) == [first.id]
    assert dlq.stats()["by_reason"] == {"poison": 1}
    dlq.remove([first.id])
    assert dlq.add(DeadLetter(reason="poison", source="msg-1"))  # purged: a new death is a new entry


@pytest.mark.parametrize("crafted", ["x:reason", "x", "reason:x", "added", "evicted:age"])
def test_no_entry_id_collides_with_another_structure(r: redis.Redis, crafted: str) -> None:
    dlq = make_dlq(r)
    for entry_id in ("x:reason", "x", crafted):
        dlq.add(DeadLetter(id=entry_id, reason="permanent", task="jobs.a", options={}))
    assert len(list(dlq.iter())) == 3  # nothing overwritten, nothing lost
    for listed in (dlq.list(), [dlq.get(e.id) for e in dlq.iter()]):
        assert all(e.reason == "permanent" for e in listed)
    assert dlq.purge(Filter()) == 3
    assert dlq.stats()["by_reason"] == {}
    assert r.hlen(dlq.store.entries_key) == 0


def test_a_reused_source_of_another_job_is_a_new_entry_not_a_hidden_death(r: redis.Redis) -> None:
    """A message can carry any source (its message id): only a redelivery of the same job, same
    task id, is folded into the entry that holds it; any other death gets its own entry."""
    dlq = make_dlq(r)
    first = DeadLetter(reason="exhausted", task="jobs.a", task_id="t-1", source="msg-1", options={})
    redelivered = DeadLetter(reason="poison", task="jobs.a", task_id="t-1", source="msg-1", options={})
    crafted = DeadLetter(reason="permanent", task="jobs.b", task_id="t-2", source="msg-1", options={})
    assert dlq.add(first)
    assert not dlq.add(redelivered)
    assert redelivered.id == first.id  # the caller learns where the job's death is recorded
    assert dlq.add(crafted)
    assert crafted.id != first.id
    assert sorted(e.task_id for e in dlq.iter()) == ["t-1", "t-2"]
    assert dlq.stats()["by_reason"] == {"exhausted": 1, "permanent": 1}
