"""The fetch script: one step to take and record, quarantine, crash-loop guard; commit() needs the claim."""

from __future__ import annotations

import json

import pytest
import redis

from stalwart.job.commit import Claim, ClaimLost, commit, holding
from stalwart.store import broker as broker_store
from stalwart.store.broker import BrokerKeys, FetchLimits, Quarantined, Taken
from stalwart.store.jobs import JobStore
from stalwart.store.keys import Keys

pytestmark = pytest.mark.integration


KEYS = BrokerKeys.build(prefix="t", global_prefix="", unacked="unacked", index="unacked_index")
LIMITS = FetchLimits(max_fetches=3, max_item_bytes=1024, visibility_ms=2000, max_depth=100)
PAYLOAD = ('{"body":"W1tdLHt9LHt9XQ==","headers":{"a":[]},"content-type":"application/json",'
           '"properties":{"delivery_tag":"t1","delivery_info":{"exchange":"","routing_key":"q"}}}')


def fetch(r: redis.Redis, *lists: str) -> Taken | Quarantined | None:
    return broker_store.fetch(r, KEYS, [(name, name.split("\x06")[0]) for name in lists], LIMITS)


def test_fetch_records_the_message_unacked_in_kombus_format(r: redis.Redis) -> None:
    r.lpush("q", PAYLOAD)
    found = fetch(r, "q")
    assert isinstance(found, Taken)
    assert (found.item, found.tag, found.list_key, found.fetches) == (PAYLOAD.encode(), "t1", "q", 1)
    message, exchange, routing_key = json.loads(r.hget("unacked", "t1"))
    assert (json.dumps(message, separators=(",", ":")), exchange, routing_key) == (PAYLOAD, "", "q")
    seconds, micros = r.time()
    assert abs(r.zscore("unacked_index", "t1") - (seconds + micros / 1e6)) < 5  # the Redis clock, in s
    assert r.llen("q") == 0


def test_one_fetch_takes_from_the_first_list_that_has_a_message(r: redis.Redis) -> None:
    r.lpush("b", PAYLOAD.replace("t1", "from-b"))
    r.lpush("a\x06\x169", PAYLOAD.replace("t1", "low-a"))
    found = fetch(r, "a", "b", "a\x06\x169")
    assert isinstance(found, Taken)
    assert (found.tag, found.list_key) == ("from-b", "b")
    assert fetch(r, "a", "b", "a\x06\x169").tag == "low-a"  # type: ignore[union-attr]
    assert fetch(r, "a", "b", "a\x06\x169") is None


def test_what_cannot_be_recorded_goes_to_the_quarantine_stream_raw(r: redis.Redis) -> None:
    r.set("wrongtype", "x")  # a key of another type among the lists is skipped
    for item in (b"\xff not json", b"", b"[1,2]", b'{"properties":{}}', b"x" * 2000):
        r.lpush("q", item)
        found = fetch(r, "wrongtype", "q")
        assert isinstance(found, Quarantined)
        assert (found.item, found.reason, found.list_key) == (item, "malformed", "q")
        [(entry_id, fields)] = r.xrange(KEYS.quarantine)
        assert fields[b"item"] == item
        assert found.source == entry_id.decode()
        broker_store.quarantine_done(r, KEYS, found.entry_id)
    assert r.hlen("unacked") == 0


def test_another_message_with_a_tag_in_flight_is_quarantined(r: redis.Redis) -> None:
    other = PAYLOAD.replace('"a":[]', '"a":[1]')  # same delivery tag, other bytes: a conflict
    r.lpush("q", PAYLOAD, other)
    assert isinstance(fetch(r, "q"), Taken)
    duplicate = fetch(r, "q")
    assert isinstance(duplicate, Quarantined)
    assert "in flight" in duplicate.detail


def test_a_byte_identical_copy_of_a_message_in_flight_is_dropped(r: redis.Redis) -> None:
    """Issue 10 red team: a publish retried after its reply was lost queues the same bytes twice;
    the copy was dead-lettered as malformed. The one in flight is recorded, so the copy is dropped
    and the fetch goes on to the next message."""
    nxt = PAYLOAD.replace('"t1"', '"t2"')
    r.lpush("q", PAYLOAD, *[PAYLOAD] * 3, nxt)
    first = fetch(r, "q")
    assert isinstance(first, Taken)
    assert first.tag == "t1"
    second = fetch(r, "q")
    assert isinstance(second, Taken)
    assert second.tag == "t2"
    assert fetch(r, "q") is None
    assert r.xlen(KEYS.quarantine) == 0
    assert sorted(r.hkeys("unacked")) == [b"t1", b"t2"]


def test_a_quarantined_item_left_by_a_dead_worker_is_taken_again(r: redis.Redis) -> None:
    r.xadd(KEYS.quarantine, {"reason": "malformed", "detail": "d", "list": "q", "item": b"old", "source": ""},
           id="1-1")  # written long ago by a worker that died before dead-lettering it
    again = fetch(r, "q")
    assert isinstance(again, Quarantined)
    assert (again.item, again.source) == (b"old", "1-1")  # its identity kept, for the DLQ's dedup
    r.lpush("q", b"junk")
    fresh = fetch(r, "q")
    assert isinstance(fresh, Quarantined)
    assert fresh.item == b"junk"
    assert fetch(r, "q") is None  # a fresh entry waits: its worker may still be writing the DLQ entry
    assert r.xlen(KEYS.quarantine) == 2


def test_the_fourth_fetch_without_an_ack_is_poison(r: redis.Redis) -> None:
    for fetches in (1, 2, 3):
        r.lpush("q", PAYLOAD)
        found = fetch(r, "q")
        assert isinstance(found, Taken)
        assert found.fetches == fetches
        r.hdel("unacked", "t1")  # its consumer died; the record was restored
    r.lpush("q", PAYLOAD)
    poison = fetch(r, "q")
    assert isinstance(poison, Quarantined)
    assert (poison.reason, poison.source, poison.item) == ("poison", "t1", PAYLOAD.encode())
    assert r.hget(KEYS.fetches, "t1") is None


def test_commit_applies_effect_and_done_together_only_while_claimed(r: redis.Redis) -> None:
    jobs = JobStore(r, Keys("test"))
    job = jobs.hash_key("t:1")
    r.hset(job, mapping={"state": "running", "owner": "me", "lease": 1})
    with holding(Claim(jobs, "t:1", "me", 60_000)):
        assert commit(lambda pipe: pipe.incr("effect"), result="ok") == [1]
        with pytest.raises(ClaimLost):
            commit(lambda pipe: pipe.incr("effect"))
    assert r.get("effect") == b"1"
    assert r.hget(job, "state") == b"done"
    assert json.loads(r.hget(job, "result")) == {"v": "ok"}
    r.hset(job, mapping={"state": "running", "owner": "someone-else"})
    with holding(Claim(jobs, "t:1", "me", 60_000)), pytest.raises(ClaimLost):
        commit(lambda pipe: pipe.incr("effect"))
    assert r.get("effect") == b"1"
