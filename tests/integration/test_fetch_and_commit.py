"""fetch.lua keeps kombu's unacked record byte for byte; commit() applies nothing without the claim."""

from __future__ import annotations

import json

import pytest
import redis

from stalwart.job.commit import Claim, ClaimLost, commit, holding
from stalwart.store.jobs import JobStore
from stalwart.store.keys import Keys
from stalwart.store.scripts import script

pytestmark = pytest.mark.integration


def test_fetch_records_the_message_unacked_in_kombus_format(r: redis.Redis) -> None:
    payload = '{"body":"W1tdLHt9LHt9XQ==","headers":{"a":[]},"content-type":"application/json",' \
        '"properties":{"delivery_tag":"t1","delivery_info":{"exchange":"","routing_key":"q"}}}'
    r.lpush("q", payload)
    item, recorded = script("fetch")(r, ["q", "unacked", "unacked_index"], [])
    assert (item, recorded) == (payload.encode(), 1)
    message, exchange, routing_key = json.loads(r.hget("unacked", "t1"))
    assert (json.dumps(message, separators=(",", ":")), exchange, routing_key) == (payload, "", "q")
    assert r.zscore("unacked_index", "t1") is not None
    assert r.llen("q") == 0


def test_fetch_passes_garbage_through_for_the_malformed_guard(r: redis.Redis) -> None:
    r.lpush("q", b"\xff not json")
    assert script("fetch")(r, ["q", "unacked", "unacked_index"], []) == [b"\xff not json", 0]
    assert r.hlen("unacked") == 0
    assert script("fetch")(r, ["q", "unacked", "unacked_index"], []) is None


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
