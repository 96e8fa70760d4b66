"""The DLQ's indexes (dlq_add, dlq_page, dlq_remove) on a real redis-server: filtered pages with
cursors, exact totals, search, the by-cause counts kept on add and remove, the additions ring."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stalwart.dlq.causes import cause_id, normalise
from stalwart.dlq.entry import DeadLetter, Filter
from stalwart.dlq.queue import DeadLetterQueue
from stalwart.errors import DLQError
from stalwart.settings import Settings
from stalwart.store.dlq import INDEX_CHARS, index_value
from stalwart.store.keys import Keys
from stalwart.store.scripts import SCRIPTS
from tests.unit.test_dlq_store import set_dead_at

LUA = Path(__file__).resolve().parents[2] / "platform" / "stalwart" / "store" / "lua"


def make_dlq(r: redis.Redis, max_entries: int = 1000) -> DeadLetterQueue:
    return DeadLetterQueue(r, Keys("stalwart"), Settings(dlq_max_entries=max_entries))


def dead(i: int, **fields: Any) -> DeadLetter:
    base: dict[str, Any] = {
        "id": f"e{i:04d}", "reason": "exhausted", "task": "jobs.a", "task_id": f"tid-{i}", "queue": "celery",
        "args": [i], "kwargs": {}, "exc_type": "TimeoutError", "exc_message": f"order {i} timed out",
        "options": {},
    }
    return DeadLetter(**{**base, **fields})


def seed(r: redis.Redis, dlq: DeadLetterQueue, entries: list[DeadLetter]) -> None:
    for e in entries:
        dlq.add(e)
    set_dead_at(r, dlq, {e.id: 10_000 + int(e.id[1:]) for e in entries})


def walk(dlq: DeadLetterQueue, flt: Filter, limit: int) -> list[str]:
    """Every page in turn, following cursors."""
    out: list[str] = []
    cursor = None
    while True:
        page = dlq.page(flt, cursor, limit)
        out.extend(e.id for e in page.entries)
        if page.cursor is None:
            return out
        cursor = page.cursor


def test_add_and_remove_share_one_definition_of_how_an_entry_is_indexed() -> None:
    shared = (LUA / "include" / "dlq_entry.lua").read_text()
    assert "local function remove_entry(id)" in shared
    for name in ("dlq_add", "dlq_remove"):
        assert (LUA / f"{name}-12.lua").read_text().count("--- @include dlq_entry\n") == 1
        assert shared in SCRIPTS[name].source  # the loader expanded it


def test_pages_follow_cursors_newest_first_with_exact_totals(r: redis.Redis) -> None:
    dlq = make_dlq(r)
    seed(r, dlq, [dead(i, queue="orders" if i % 3 == 0 else "celery",
                       reason="permanent" if i % 2 else "exhausted") for i in range(30)])
    assert walk(dlq, Filter(), 7) == [f"e{i:04d}" for i in range(29, -1, -1)]
    first = dlq.page(Filter(queue="orders"), None, 4)
    assert [e.id for e in first.entries] == ["e0027", "e0024", "e0021", "e0018"]
    assert first.total == 10
    assert walk(dlq, Filter(queue="orders"), 4) == [f"e{i:04d}" for i in range(27, -1, -3)]
    both = dlq.page(Filter(queue="orders", reason="permanent"), None, 50)
    assert [e.id for e in both.entries] == ["e0027", "e0021", "e0015", "e0009", "e0003"]
    assert both.total is None  # two filters: not counted by one range read
    assert dlq.count(Filter(queue="orders", reason="permanent")) == 5
    timed = Filter(reason="exhausted", since_ms=10_010, until_ms=10_020)
    assert walk(dlq, timed, 2) == ["e0020", "e0018", "e0016", "e0014", "e0012", "e0010"]
    assert dlq.page(timed, None, 2).total == 6
    assert dlq.page(Filter(), None, 30).cursor is None
    with pytest.raises(DLQError):  # a bad cursor is refused (the API's 400), not read as "start over"
        dlq.page(Filter(), "garbage", 1)


def test_search_finds_ids_arguments_and_errors_case_insensitively_but_not_secrets(r: redis.Redis) -> None:
    dlq = make_dlq(r)
    seed(r, dlq, [
        dead(1, exc_message="Payment DECLINED for ACME"),
        dead(2, kwargs={"customer": "globex", "password": "hunter2-secret"}),
        dead(3, task_id="needle-task-id"),
        dead(4, args=["plain"], exc_message="the password hunter2-secret was wrong",
             kwargs={"api_token": "hunter2-secret"}),
    ])
    assert [e.id for e in dlq.page(Filter(search="declined for acme")).entries] == ["e0001"]
    assert [e.id for e in dlq.page(Filter(search="GLOBEX")).entries] == ["e0002"]
    assert [e.id for e in dlq.page(Filter(search="needle-task")).entries] == ["e0003"]
    assert [e.id for e in dlq.page(Filter(search="e0004")).entries] == ["e0004"]
    assert dlq.page(Filter(search="hunter2")).entries == []  # secret values are never indexed
    assert [e.id for e in dlq.page(Filter(search="the password")).entries] == ["e0004"]


def test_causes_group_by_task_type_and_normalised_message(r: redis.Redis) -> None:
    dlq = make_dlq(r)
    seed(r, dlq, [dead(i) for i in range(5)] + [dead(5, exc_type="ValueError", exc_message="bad input 7"),
                                                  dead(6, task="jobs.b")])
    causes, total = dlq.causes(order="count")
    assert total == 3
    top = causes[0]
    assert (top["task"], top["exc_type"], top["message"], top["count"]) == (
        "jobs.a", "TimeoutError", "order <n> timed out", 5)
    assert top["id"] == cause_id("jobs.a", "TimeoutError", "order 3 timed out")
    assert [e.id for e in dlq.page(Filter(cause=top["id"])).entries] == [f"e{i:04d}" for i in range(4, -1, -1)]
    assert [c["task"] for c in dlq.causes(order="last")[0]] == ["jobs.b", "jobs.a", "jobs.a"]


def test_cause_counts_and_first_last_seen_follow_removals(r: redis.Redis) -> None:
    dlq = make_dlq(r)
    seed(r, dlq, [dead(i) for i in range(5)])
    cause = cause_id("jobs.a", "TimeoutError", "order 0 timed out")
    dlq.remove(["e0004", "e0000"])
    info = dlq.cause(cause)
    assert info is not None
    assert (info["count"], info["first"], info["last"]) == (3, 10_001, 10_003)
    dlq.purge(Filter(cause=cause))
    assert dlq.cause(cause) is None
    assert dlq.causes() == ([], 0)


def test_eviction_keeps_every_index_right(r: redis.Redis) -> None:
    dlq = make_dlq(r, max_entries=3)
    for i in range(6):
        dlq.add(dead(i, queue=f"q{i % 2}"))
    assert dlq.stats()["total"] == 3
    assert dlq.count(Filter(queue="q0")) + dlq.count(Filter(queue="q1")) == 3
    [only] = dlq.causes()[0]
    assert only["count"] == 3
    keys = Keys("stalwart")
    assert r.zcard(keys.dlq("lex")) == 3 * 5
    assert r.hlen(keys.dlq("meta")) == r.hlen(keys.dlq("search")) == 3


def test_names_with_nul_or_great_length_stay_in_their_own_range(r: redis.Redis) -> None:
    dlq = make_dlq(r)
    long_a, long_b = "t" * 500 + "a", "t" * 500 + "b"
    seed(r, dlq, [dead(1, task="a"), dead(2, task="a\0b"), dead(3, task="a\x00"), dead(4, task=long_a),
                  dead(5, task=long_b)])
    assert [e.id for e in dlq.page(Filter(task="a")).entries] == ["e0001"]
    assert [e.id for e in dlq.page(Filter(task="a\0b")).entries] == ["e0002"]
    assert [e.id for e in dlq.page(Filter(task=long_a)).entries] == ["e0004"]
    assert len(index_value(long_a)) == INDEX_CHARS
    assert dlq.purge(Filter()) == 5
    assert r.zcard(Keys("stalwart").dlq("lex")) == 0


def test_additions_per_minute_ring(r: redis.Redis) -> None:
    dlq = make_dlq(r)
    for i in range(4):
        dlq.add(dead(i))
    seconds, _ = r.time()
    assert dlq.per_minute() == {seconds // 60: 4}


def test_normalise_replaces_variable_parts() -> None:
    assert normalise("order 42 failed after 3.5s") == "order <n> failed after <n>s"
    assert normalise("job 5f0c6a1e-1b2c-4d3e-8f9a-0b1c2d3e4f5a lost") == "job <uuid> lost"
    assert normalise("connect 10.0.0.12:6379  refused\n") == "connect <ip> refused"
    assert normalise("hash deadbeef01 at 0xff") == "hash <hex> at <hex>"
    assert normalise(None) == ""


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_normalise_is_total_idempotent_and_bounded(message: str) -> None:
    once = normalise(message)
    assert len(once) <= 200
    assert normalise(once) == once
    assert cause_id("t", "E", message) == cause_id("t", "E", once)


ROWS = st.lists(st.tuples(st.sampled_from(["q1", "q2", "q\0x"]), st.sampled_from(["t1", "t2"]),
                          st.sampled_from(["exhausted", "poison"]), st.integers(0, 50)), max_size=25)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=ROWS, queue=st.sampled_from([None, "q1", "q\0x"]), task=st.sampled_from([None, "t1"]),
       reason=st.sampled_from([None, "poison"]), since=st.sampled_from([None, 10_010]),
       limit=st.integers(1, 7))
def test_pages_match_a_model_of_the_filter(r: redis.Redis, rows: list[tuple[str, str, str, int]],
                                           queue: str | None, task: str | None, reason: str | None,
                                           since: int | None, limit: int) -> None:
    r.flushall()
    dlq = make_dlq(r)
    entries = [dead(i, queue=q, task=t, reason=why) for i, (q, t, why, _) in enumerate(rows)]
    for e in entries:
        dlq.add(e)
    times = {e.id: 10_000 + at for e, (_, _, _, at) in zip(entries, rows, strict=True)}
    set_dead_at(r, dlq, times)
    flt = Filter(queue=queue, task=task, reason=reason, since_ms=since)
    expected = sorted(
        (e.id for e in entries
         if (queue is None or e.queue == queue) and (task is None or e.task == task)
         and (reason is None or e.reason == reason) and (since is None or times[e.id] >= since)),
        key=lambda i: (-times[i], -int(i[1:])),  # one millisecond: the later added first
    )
    assert walk(dlq, flt, limit) == expected
    assert dlq.count(flt) == len(expected)
