"""Fair lanes on a real redis-server: push, fetch, move, restore, as the scripts do them."""

from __future__ import annotations

import base64
import json
import uuid
from collections import Counter
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stalwart.broker import decode
from stalwart.broker.fair import fair_of
from stalwart.job.header import FAIR_HEADER
from stalwart.store import broker as broker_store
from stalwart.store import delayed as delayed_store
from stalwart.store import fair
from stalwart.store.broker import BrokerKeys, FetchLimits, Quarantined, Taken
from stalwart.store.fair import FairJob, LaneKeys
from stalwart.store.keys import Keys

LIST = "celery"
KEYS = Keys("stalwart")
BKEYS = BrokerKeys.build(prefix="stalwart", global_prefix="", unacked="unacked", index="unacked_index")
LIMITS = FetchLimits(max_fetches=3, max_item_bytes=decode.MAX_ITEM_BYTES, visibility_ms=60_000,
                     max_depth=decode.MAX_DEPTH)
LANE = LaneKeys.of("stalwart", LIST)
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def message(key: str, n: int, weight: float = 1.0) -> str:
    """A kombu envelope of a fair job: key and sequence number in its id, a unique tag."""
    return json.dumps({
        "body": base64.b64encode(b"[[], {}, {}]").decode(), "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {"task": "t", "id": f"{key}/{n}", FAIR_HEADER: [key, weight]},
        "properties": {"body_encoding": "base64", "delivery_tag": uuid.uuid4().hex,
                       "delivery_info": {"exchange": "", "routing_key": LIST}, "priority": 0},
    })


def plain(n: int) -> str:
    return message("plain", n).replace(f', "{FAIR_HEADER}": ["plain", 1.0]', "")


def push(r: redis.Redis, key: str, n: int, weight: float = 1.0) -> float:
    return fair.push(broker_store.unprefixed(r), KEYS, LIST, FairJob(key, weight), message(key, n, weight))


def fetch(r: redis.Redis) -> Taken | Quarantined | None:
    return broker_store.fetch(r, BKEYS, [(LIST, LIST)], LIMITS)


def take_id(r: redis.Redis) -> str | None:
    """Fetch, acknowledge, and return the job's id (key/n); None when nothing is queued."""
    found = fetch(r)
    if found is None:
        return None
    assert isinstance(found, Taken), found
    broker_store.ack(r, BKEYS, found.tag)
    return str(json.loads(found.item)["headers"]["id"])


def check_state(r: redis.Redis, queued: Counter[str]) -> None:
    """The lane's bookkeeping is bounded: no tail at or below v; an empty lane keeps no state."""
    state = fair.state(r, KEYS, LIST)
    if not state["lane"]:
        assert state["tails"] == {}
        assert state["clock"] == {}
        return
    v = state["clock"].get("v", 0.0)
    assert all(tail > v for tail in state["tails"].values()), state
    assert {k for k, n in queued.items() if n} <= set(state["tails"]), "a key with queued jobs lost its tail"
    assert all(score >= v for _, score in state["lane"])


ops = st.lists(st.one_of(st.tuples(st.just("push"), st.integers(0, 4)), st.just(("fetch", 0))), max_size=60)


@FAST
@given(ops=ops, weights=st.lists(st.sampled_from([0.5, 1.0, 2.0, 3.0, 10.0]), min_size=5, max_size=5))
def test_every_job_is_fetched_once_in_its_keys_order_and_the_state_stays_bounded(
    r: redis.Redis, ops: list[tuple[str, int]], weights: list[float]
) -> None:
    r.flushall()
    pushed: list[str] = []
    fetched: list[str] = []
    queued: Counter[str] = Counter()
    next_n: Counter[str] = Counter()
    for op, k in ops + [("fetch", 0)] * (len(ops) + 1):
        if op == "push":
            key = f"k{k}"
            push(r, key, next_n[key], weights[k])
            pushed.append(f"{key}/{next_n[key]}")
            next_n[key] += 1
            queued[key] += 1
        else:
            got = take_id(r)
            if got is not None:
                fetched.append(got)
                queued[got.split("/")[0]] -= 1
        check_state(r, queued)
    assert sorted(fetched) == sorted(pushed)  # every job exactly once
    for key in next_n:
        order = [int(j.split("/")[1]) for j in fetched if j.split("/")[0] == key]
        assert order == sorted(order), f"{key} out of order: {order}"
    assert r.llen(LIST) == 0
    assert fetch(r) is None


@FAST
@given(wa=st.sampled_from([0.5, 1.0, 2.0, 3.0, 7.0]), wb=st.sampled_from([0.5, 1.0, 2.0, 3.0, 7.0]),
       served=st.integers(1, 60), head=st.integers(0, 5))
def test_two_backlogged_keys_are_served_within_the_sfq_bound(
    r: redis.Redis, wa: float, wb: float, served: int, head: int
) -> None:
    """While both keys stay backlogged, served counts over weight differ by at most one turn."""
    r.flushall()
    for n in range(head):  # a third key was served before: v is not 0
        push(r, "early", n)
    for _ in range(head):
        take_id(r)
    for n in range(80):
        push(r, "a", n, wa)
        push(r, "b", n, wb)
    got = Counter(str(take_id(r)).split("/")[0] for _ in range(served))
    assert abs(got["a"] / wa - got["b"] / wb) <= max(1 / wa, 1 / wb) + 1e-9, got


@FAST
@given(wa=st.sampled_from([0.5, 1.0, 3.0]), wb=st.sampled_from([0.5, 1.0, 3.0]), steps=st.integers(5, 60))
def test_keys_pushing_while_served_stay_within_the_sfq_bound(r: redis.Redis, wa: float, wb: float,
                                                               steps: int) -> None:
    """Keys that keep one or two jobs queued (pushing as they are served) cannot jump the rotation."""
    r.flushall()
    n: Counter[str] = Counter()
    for key, w in (("a", wa), ("b", wb)):
        push(r, key, n[key], w)
        n[key] += 1
    got: Counter[str] = Counter()
    for _ in range(steps):
        key = str(take_id(r)).split("/")[0]
        got[key] += 1
        push(r, key, n[key], wa if key == "a" else wb)  # the served key enqueues its next job at once
        n[key] += 1
    assert abs(got["a"] / wa - got["b"] / wb) <= 1 / wa + 1 / wb + 1e-9, got


def test_a_key_of_weight_three_gets_three_turns_for_each_turn_of_weight_one(r: redis.Redis) -> None:
    for n in range(30):
        push(r, "heavy", n, 3.0)
        push(r, "light", n, 1.0)
    order = [str(take_id(r)).split("/")[0] for _ in range(40)]
    assert Counter(order) == {"heavy": 30, "light": 10}
    for i in range(0, 40, 4):  # each round: three heavy turns and one light
        assert Counter(order[i:i + 4]) == {"heavy": 3, "light": 1}, order


def test_a_new_key_is_served_before_a_big_backlog_drains(r: redis.Redis) -> None:
    for n in range(500):
        push(r, "A", n)
    for _ in range(100):
        take_id(r)
    push(r, "B", 0)
    push(r, "C", 0)
    nxt = [take_id(r) for _ in range(3)]
    assert "B/0" in nxt
    assert "C/0" in nxt


def test_plain_messages_and_the_lane_share_the_queue_as_two_keys(r: redis.Redis) -> None:
    for n in range(50):
        r.lpush(LIST, plain(n))
    for n in range(50):
        push(r, "A", n)
    order = [str(take_id(r)).split("/")[0] for _ in range(40)]
    assert Counter(order) == {"plain": 20, "A": 20}
    assert all(order[i] != order[i + 1] for i in range(0, 40, 2)), order
    plain_ids = [j for j in (take_id(r) for _ in range(60)) if j and j.startswith("plain")]
    assert plain_ids == [f"plain/{n}" for n in range(20, 50)]  # plain FIFO kept


def test_an_empty_lane_wakes_an_idle_wait_and_the_fetch_drops_the_token(r: redis.Redis) -> None:
    push(r, "A", 0)
    assert r.lrange(LIST, 0, -1) == [fair.WAKE]  # the BLMOVE on the list returns at once
    assert r.blmove(LIST, LIST, 1, "RIGHT", "RIGHT") == fair.WAKE
    push(r, "A", 1)
    assert r.llen(LIST) == 1  # a lane that has jobs wakes nobody again
    assert broker_store.list_lengths(r, [LIST]) == [3]
    assert [take_id(r), take_id(r), take_id(r)] == ["A/0", "A/1", None]
    assert r.llen(LIST) == 0
    assert fair.state(r, KEYS, LIST)["clock"] == {}
    r.lpush(LIST, plain(0))
    push(r, "A", 2)
    assert r.llen(LIST) == 1  # a list with items needs no token


@FAST
@given(garbage=st.binary(max_size=60), prefixed=st.booleans())
def test_a_malformed_lane_member_is_quarantined_and_the_next_job_still_runs(
    r: redis.Redis, garbage: bytes, prefixed: bool
) -> None:
    r.flushall()
    push(r, "A", 0)
    member = (b"%016x" % 999 + garbage) if prefixed else garbage
    if not member:
        member = b"x"
    r.zadd(LANE.lane, {member: -1.0})
    found = fetch(r)
    assert isinstance(found, Quarantined)
    assert found.reason == "malformed"
    assert r.xlen(BKEYS.quarantine) == 1
    assert take_id(r) == "A/0"


def test_lane_keys_of_another_type_are_skipped_and_the_plain_list_still_served(r: redis.Redis) -> None:
    r.lpush(LIST, plain(0))
    r.set(LANE.lane, "not a zset")
    assert take_id(r) == "plain/0"
    r.delete(LANE.lane)
    push(r, "A", 0)
    r.delete(LANE.clock)
    r.set(LANE.clock, "garbage")
    r.lpush(LIST, plain(1))
    assert take_id(r) == "plain/1"  # the lane is skipped, not fatal
    assert r.zcard(LANE.lane) == 1


def test_delayed_fair_jobs_come_back_into_their_lane_and_bad_members_to_the_plain_list(r: redis.Redis) -> None:
    for n in range(3):
        delayed_store.schedule(broker_store.unprefixed(r), KEYS, LIST, delay_ms=0, payload=message("D", n),
                               job=FairJob("D", 2.0))
    r.zadd(LANE.delayed, {"no weight here": 0})
    assert r.zcard(KEYS.delayed(LIST)) == 0
    moved, wait = fair.move_due(broker_store.unprefixed(r), KEYS, LIST)
    assert (moved, wait) == (4, -1)
    assert r.zcard(LANE.lane) == 3
    assert r.lrange(LIST, 0, -1) == [b"no weight here"]
    assert fair.state(r, KEYS, LIST)["tails"] == {"D": 1.5}
    found = [fetch(r) for _ in range(5)]
    assert [type(f).__name__ for f in found] == ["Taken", "Quarantined", "Taken", "Taken", "NoneType"]
    assert [json.loads(f.item)["headers"]["id"] for f in found if isinstance(f, Taken)] == ["D/0", "D/1", "D/2"]


def test_a_restored_fair_job_goes_back_into_its_lane(r: redis.Redis) -> None:
    push(r, "A", 0)
    push(r, "A", 1)
    found = fetch(r)
    assert isinstance(found, Taken)
    record = broker_store.record_of(r, BKEYS, found.tag)
    assert record is not None
    item = decode.restore_target(record)
    assert item is not None
    assert item[0] == found.item
    assert broker_store.restore(r, BKEYS, tag=found.tag, record=record, list_key=LIST, item=found.item,
                                leftmost=False, orderly=False, job=FairJob("A", 1.0))
    assert r.hlen("unacked") == 0
    assert r.zcard(LANE.lane) == 2
    assert not broker_store.restore(r, BKEYS, tag=found.tag, record=record, list_key=LIST, item=found.item,
                                    leftmost=False, orderly=False, job=FairJob("A", 1.0))  # once only
    assert [take_id(r), take_id(r), take_id(r)] == ["A/1", "A/0", None]


def test_queue_depths_and_delayed_counts_include_lanes(r: redis.Redis) -> None:
    for n in range(4):
        push(r, "A", n)
    delayed_store.schedule(broker_store.unprefixed(r), KEYS, LIST, delay_ms=60_000, payload=message("A", 9),
                           job=FairJob("A", 1.0))
    assert broker_store.list_lengths(r, [LIST]) == [5]  # 4 jobs and the wake token
    assert delayed_store.DelayedStore(r, KEYS).depth() == {LIST: 1}
    assert fair.counts(r, KEYS, [LIST]) == [(4, 1)]


@pytest.mark.parametrize("header", [None, "A", ["A"], ["", 1], ["A", 0], ["A", -1], ["A", True],
                                    ["A", float("nan")], ["x" * 201, 1], [1, 1]])
def test_a_header_that_is_not_key_and_weight_queues_plainly(header: Any) -> None:
    assert fair_of({"headers": {FAIR_HEADER: header}}) is None
    assert fair_of({"headers": {FAIR_HEADER: ["A", 2]}}) == FairJob("A", 2.0)


def test_a_drained_lane_leaves_the_registry_and_comes_back_with_its_next_job(r: redis.Redis) -> None:
    """Issue 10 red team (growth): queue names that come and go must not pile up in the registry
    the movers scan on every tick; a lane with nothing queued and nothing delayed leaves it."""
    member = fair.registry_member(LIST).encode()
    push(r, "a", 1)
    assert member in r.smembers(fair.registry(KEYS))
    fair.move_due(r, KEYS, LIST)  # the job is still queued: the lane stays listed
    assert member in r.smembers(fair.registry(KEYS))
    assert take_id(r) == "a/1"
    fair.move_due(r, KEYS, LIST)
    assert member not in r.smembers(fair.registry(KEYS))
    push(r, "a", 2)
    assert member in r.smembers(fair.registry(KEYS))
    assert take_id(r) == "a/2"
