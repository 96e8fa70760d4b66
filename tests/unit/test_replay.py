"""Replay: which entries may be replayed, what a replayed message carries (arguments, custom
headers, canvas, generation), the job_revive script, and a dry run — against a real redis-server
that is also the broker, so the published message itself is read back."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import redis
from celery import Celery
from celery.app.task import Context
from hypothesis import given, settings
from hypothesis import strategies as st

from stalwart.app import Stalwart
from stalwart.dlq import message
from stalwart.dlq.entry import DeadLetter, Filter
from stalwart.dlq.replay import Replayer, entry_meta, job_key, replay, successor_meta, unreplayable_reason
from stalwart.errors import DLQError
from stalwart.settings import Settings
from stalwart.store.jobs import JobStore
from stalwart.store.keys import Keys

ENVELOPE_HEADERS = {"msg": "m1", "gen": 4, "key": "order-7", "trace": "tr", "sent": 1000,
                    "deadline": 2000, "first_seen": 900, "history": [{"attempt": 1}]}
CANVAS = {
    "link": [{"task": "jobs.after", "args": [1], "kwargs": {}, "options": {}, "subtask_type": None,
              "immutable": False}],
    "link_error": [{"task": "jobs.on_error", "args": [], "kwargs": {}, "options": {}, "subtask_type": None,
                    "immutable": True}],
    "chain": [{"task": "jobs.third", "args": [], "kwargs": {}, "options": {}, "subtask_type": None,
               "immutable": False}],
    "root_id": "root-1", "parent_id": "parent-1", "group_id": "g-1", "group_index": 0,
    "headers": {"tenant": "acme"},
}


def entry(**fields: Any) -> DeadLetter:
    base: dict[str, Any] = {"id": "e1", "reason": "exhausted", "task": "t.x", "task_id": "tid",
                            "headers": dict(ENVELOPE_HEADERS), "options": {}}
    return DeadLetter(**{**base, **fields})


# -- pure parts ---------------------------------------------------------------------------------


def test_successor_keeps_key_trace_history_drops_deadline_and_takes_the_given_gen() -> None:
    meta = successor_meta(entry(), gen=9)
    assert (meta.key, meta.trace, meta.history, meta.first_seen) == ("order-7", "tr", [{"attempt": 1}], 900)
    assert (meta.gen, meta.deadline) == (9, None)
    assert meta.msg != "m1"
    assert meta.sent > 1000


def test_consumer_entries_carry_the_whole_celery_header_set() -> None:
    celery_headers = {"task": "t.x", "id": "tid", "stalwart": {"msg": "m9", "key": "k9", "trace": "t9"}}
    e = entry(reason="unregistered", headers=celery_headers)
    assert entry_meta(e).key == "k9"
    assert job_key(e) == "k:k9"
    assert unreplayable_reason(e) is None


def test_job_key_falls_back_to_the_task_id() -> None:
    assert job_key(entry(headers={"msg": "m1"})) == "t:tid"
    assert job_key(entry(headers={})) == "t:tid"


@pytest.mark.parametrize(("fields", "needle"), [
    ({"reason": "malformed", "task": None, "task_id": None}, "malformed"),
    ({"reason": "refused_content"}, "refused_content"),
    ({"reason": "unregistered", "task_id": None}, "no task name or task id"),
    # a pickled (or otherwise undecodable) message for an unregistered task: no arguments to resend
    ({"reason": "unregistered", "raw": "base64:gASV", "args": []}, "never decoded into arguments"),
    ({"options": None}, "canvas and headers were not recorded"),
])
def test_unreplayable_entries_say_why(fields: dict[str, Any], needle: str) -> None:
    why = unreplayable_reason(entry(**fields))
    assert why is not None
    assert needle in why
    assert not entry(**fields).replayable


def test_replay_needs_a_selection() -> None:
    with pytest.raises(DLQError, match="say which entries"):
        replay(object())  # type: ignore[arg-type]


def test_options_from_a_request_keep_the_canvas_and_custom_headers() -> None:
    request = Context(
        id="tid", callbacks=CANVAS["link"], errbacks=CANVAS["link_error"], chain=CANVAS["chain"],
        chord=None, group="g-1", group_index=0, root_id="root-1", parent_id="parent-1", timelimit=[30, 20],
        delivery_info={"priority": 5}, tenant="acme", stalwart={"msg": "m"}, stalwart_delay_ms=5,
        argsrepr="()", retries=3, eta="2020-01-01",
    )
    options = message.from_request(request)
    assert options == {**CANVAS, "priority": 5, "time_limit": 30,
                       "soft_time_limit": 20}


def test_options_from_a_raw_message_keep_the_embed_and_custom_headers() -> None:
    headers = {"task": "t.x", "id": "tid", "root_id": "root-1", "parent_id": "parent-1", "group": "g-1",
               "group_index": 0, "timelimit": [None, None], "retries": 2, "tenant": "acme", "stalwart": {}}
    embed = {"callbacks": CANVAS["link"], "errbacks": CANVAS["link_error"], "chain": CANVAS["chain"], "chord": None}
    assert message.from_message(headers, embed, {"priority": None}) == CANVAS


def test_replay_options_pass_only_what_send_task_takes() -> None:
    kwargs, headers = message.replay_options({**CANVAS, "queue": "evil", "task_id": "other",
                                              "stamped_headers": ["s1"], "s1": "v", "s2": "no"})
    assert headers == {"tenant": "acme"}
    assert "queue" not in kwargs
    assert "task_id" not in kwargs
    assert kwargs["s1"] == "v"
    assert "s2" not in kwargs


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                    max_leaves=10)


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_split_body_accepts_only_args_kwargs_embed(decoded: Any) -> None:
    found = message.split_body(decoded)
    if found is not None:
        args, kwargs, embed = found
        assert isinstance(args, list)
        assert isinstance(kwargs, dict)
        assert isinstance(embed, dict)
        assert isinstance(decoded, list)
        assert len(decoded) == 3


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=12), st.integers(), max_size=8))
def test_custom_headers_never_carry_celerys_or_stalwarts_own(headers: dict[str, int]) -> None:
    kept = message.custom_headers({**headers, "stalwart": 1, "stalwart_park": 1, "task": 1, "x-death": 1})
    assert not set(kept) & (message.CELERY_HEADERS | message.DROPPED_HEADERS)
    assert not any(k.startswith("stalwart") for k in kept)
    assert all(kept[k] == headers[k] for k in kept)


# -- job_revive on a real redis-server ------------------------------------------------------------


def test_revive_raises_the_generation_so_stale_copies_are_dropped(r: redis.Redis) -> None:
    jobs = JobStore(r, Keys())
    jobs.begin("t:j", owner="h:1:m:x", lease_ms=1, max_deliveries=3, deadline_ms=None, gen=2, ttl_ms=60_000)
    jobs.end("t:j", owner="h:1:m:x", outcome="dead", ttl_ms=60_000, gen=2)
    code, gen = jobs.revive("t:j", dead_gen=2, ttl_ms=60_000)
    assert (code, gen) == ("ok", 3)
    for old_gen in (0, 1, 2):  # leftover copies of the dead job
        stale = jobs.begin("t:j", owner="h:1:old:x", lease_ms=5000, max_deliveries=3, deadline_ms=None,
                           gen=old_gen, ttl_ms=60_000)
        assert stale.code == "stale"
    fresh = jobs.begin("t:j", owner="h:1:new:x", lease_ms=5000, max_deliveries=3, deadline_ms=None, gen=gen,
                       ttl_ms=60_000)
    assert fresh.code == "run"


def test_revive_of_a_forgotten_job_still_beats_the_dead_messages_gen(r: redis.Redis) -> None:
    assert JobStore(r, Keys()).revive("t:gone", dead_gen=5, ttl_ms=60_000) == ("ok", 6)
    assert 0 < r.pttl(Keys().job("t:gone")) <= 60_000


def test_revive_refuses_done_waiting_and_running_jobs(r: redis.Redis) -> None:
    jobs = JobStore(r, Keys())
    r.hset(Keys().job("t:done"), mapping={"state": "done"})
    r.hset(Keys().job("t:wait"), mapping={"state": "waiting"})
    jobs.begin("t:run", owner="h:1:m:x", lease_ms=60_000, max_deliveries=3, deadline_ms=None, gen=0, ttl_ms=60_000)
    assert jobs.revive("t:done", dead_gen=0, ttl_ms=1000) == ("done", 0)
    assert jobs.revive("t:wait", dead_gen=0, ttl_ms=1000) == ("waiting", 0)
    code, left = jobs.revive("t:run", dead_gen=0, ttl_ms=1000)
    assert code == "busy"
    assert 0 < left <= 60_000


# -- Replayer: the published message, read back from the broker list ------------------------------


@pytest.fixture
def sender(redis_url: str) -> Celery:
    return Stalwart("replay-test", settings=Settings.from_env({"STALWART_REDIS_URL": redis_url}))


def published(r: redis.Redis) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in r.lrange("celery", 0, -1)]


def test_replay_republishes_arguments_headers_canvas_and_a_higher_generation(
    sender: Stalwart, r: redis.Redis
) -> None:
    dlq = sender.stalwart.dlq
    dead = entry(args=[1, "a"], kwargs={"k": "v"}, options=dict(CANVAS), queue="celery")
    dlq.add(dead)
    report = Replayer(sender).replay_ids([dead.id])
    assert report.replayed == [dead.id]
    [sent] = published(r)
    headers = sent["headers"]
    assert (headers["task"], headers["id"], headers["root_id"], headers["parent_id"]) == (
        "t.x", "tid", "root-1", "parent-1")
    assert (headers["group"], headers["group_index"], headers["retries"]) == ("g-1", 0, 0)
    assert headers["tenant"] == "acme"
    assert headers["stalwart"]["gen"] == 5  # above the dead message's gen 4
    assert headers["stalwart"]["key"] == "order-7"
    assert "deadline" not in headers["stalwart"]
    body = json.loads(base64.b64decode(sent["body"]))
    assert body[0] == [1, "a"]
    assert body[1] == {"k": "v"}
    assert body[2]["callbacks"] == CANVAS["link"]
    assert body[2]["errbacks"] == CANVAS["link_error"]
    assert body[2]["chain"] == CANVAS["chain"]
    assert dlq.stats()["total"] == 0


def test_replay_skips_with_reasons_and_a_dry_run_counts_them(sender: Stalwart, r: redis.Redis) -> None:
    dlq = sender.stalwart.dlq
    good = entry(id="good", task_id="t-good")
    pickled = entry(id="pickled", task_id="t-pickled", reason="unregistered", raw="base64:gASV", args=[])
    done = entry(id="done", task_id="t-done", headers={"msg": "m3", "gen": 0})
    for e in (good, pickled, done):
        dlq.add(e)
    r.hset(Keys().job("t:t-done"), mapping={"state": "done"})
    plan = Replayer(sender).plan(["good", "pickled", "done", "missing"]).to_dict()
    assert (plan["replay"], plan["skip"]) == (1, 3)
    assert any("never decoded" in why for why in plan["why"])
    assert published(r) == []  # a dry run sends nothing
    report = Replayer(sender).replay_ids(["good", "pickled", "done"])
    assert report.replayed == ["good"]
    assert "never decoded into arguments" in report.skipped["pickled"]
    assert "already done" in report.skipped["done"]
    assert len(published(r)) == 1
    assert sorted(e.id for e in dlq.iter(Filter())) == ["done", "pickled"]


def test_revive_refuses_a_key_a_fresh_enqueue_took_over(r: redis.Redis) -> None:
    jobs = JobStore(r, Keys())
    r.hset(Keys().job("k:order-9"), mapping={"task": "fresh-task-id", "gen": 0})
    assert jobs.revive("k:order-9", dead_gen=3, ttl_ms=60_000, task_id="dead-task-id") == ("taken", 0)
    assert r.hgetall(Keys().job("k:order-9")) == {b"task": b"fresh-task-id", b"gen": b"0"}  # untouched
    assert jobs.revive("k:order-9", dead_gen=3, ttl_ms=60_000, task_id="fresh-task-id") == ("ok", 4)
    assert r.hget(Keys().job("k:order-9"), "task") == b"fresh-task-id"


def test_a_dry_run_and_a_replay_both_see_a_taken_key(sender: Stalwart, r: redis.Redis) -> None:
    dead = entry(id="taken", task_id="dead-task-id")
    sender.stalwart.dlq.add(dead)
    r.hset(Keys().job("k:order-7"), mapping={"task": "fresh-task-id", "state": "running", "lease": 0})
    plan = Replayer(sender).plan(["taken"]).to_dict()
    assert (plan["replay"], plan["skip"]) == (0, 1)
    report = Replayer(sender).replay_ids(["taken"])
    assert "same idempotency key" in report.skipped["taken"]
    assert published(r) == []
