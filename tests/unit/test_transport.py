"""The transport on a real redis-server, without a worker: fetch, boundary, restore, publish."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from kombu import Connection

from stalwart.broker import decode
from stalwart.job.header import DELAY_HEADER, HEADER
from stalwart.store.broker import BrokerKeys
from stalwart.store.keys import Keys

OPTIONS = {"stalwart_prefix": "stalwart", "priority_steps": [0, 3, 6, 9], "visibility_timeout": 2}


def envelope(task_id: str | None = None, **overrides: Any) -> dict[str, Any]:
    """A kombu envelope as kombu's Redis transport writes a Celery task message."""
    task_id = task_id or str(uuid.uuid4())
    message: dict[str, Any] = {
        "body": base64.b64encode(b"[[1], {}, {}]").decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {"task": "tests.integration.jobs.record", "id": task_id, "lang": "py", "retries": 0,
                    "eta": None, "expires": None, HEADER: {"msg": "m1", "gen": 0, "trace": "t", "sent": 1}},
        "properties": {
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
            "delivery_info": {"exchange": "", "routing_key": "celery"},
            "priority": 0,
        },
    }
    message.update(overrides)
    return message


@pytest.fixture
def connection(redis_url: str) -> Iterator[Any]:
    with Connection(redis_url, transport="stalwart.broker.transport:Transport",
                    transport_options=dict(OPTIONS)) as conn:
        yield conn


def keys() -> BrokerKeys:
    return BrokerKeys.build(prefix="stalwart", global_prefix="", unacked="unacked", index="unacked_index")


# -- publishing ------------------------------------------------------------------------------------


def test_a_delayed_message_goes_to_the_delayed_set_and_the_callers_headers_are_untouched(
    connection: Any, r: redis.Redis
) -> None:
    headers = {DELAY_HEADER: 60_000, "x": 1}
    with connection.Producer() as producer:
        producer.publish({"n": 1}, routing_key="q1", headers=headers, declare=[connection.SimpleQueue("q1").queue])
    assert headers == {DELAY_HEADER: 60_000, "x": 1}  # a retried publish sends the same delay again
    assert r.llen("q1") == 0
    [(payload, due)] = r.zrange(Keys("stalwart").delayed("q1"), 0, -1, withscores=True)
    assert json.loads(payload)["headers"] == {"x": 1}
    seconds, micros = r.time()
    assert 55_000 < due - (seconds * 1000 + micros // 1000) <= 60_000
    assert r.smembers(Keys("stalwart").registry("delayed")) == {b"q1"}


@pytest.mark.parametrize("delay", [0, -5, None, "soon"])
def test_a_message_without_a_positive_delay_goes_straight_to_the_list(
    connection: Any, r: redis.Redis, delay: object
) -> None:
    headers = {} if delay is None else {DELAY_HEADER: delay}
    with connection.Producer() as producer:
        producer.publish({"n": 1}, routing_key="q2", headers=headers, declare=[connection.SimpleQueue("q2").queue])
    assert r.llen("q2") == 1
    assert r.zcard(Keys("stalwart").delayed("q2")) == 0


def test_a_header_on_the_local_clock_is_moved_onto_the_redis_clock(connection: Any, r: redis.Redis) -> None:
    local = int(time.time() * 1000) - 3_600_000  # this process's clock runs an hour behind Redis's
    offset_ms = connection.transport.clock_offset_ms(r)
    meta = {"msg": "m", "gen": 0, "trace": "t", "sent": local, "deadline": local + 20_000,
            decode.CLOCK_FIELD: decode.LOCAL_CLOCK}
    with connection.Producer() as producer:
        producer.publish({"n": 1}, routing_key="q3", headers={HEADER: meta},
                         declare=[connection.SimpleQueue("q3").queue])
    sent = json.loads(r.lpop("q3"))["headers"][HEADER]
    assert decode.CLOCK_FIELD not in sent
    assert sent["deadline"] - sent["sent"] == 20_000
    assert abs(sent["sent"] - (local + offset_ms)) < 5


# -- fetching through the channel --------------------------------------------------------------------


def test_garbage_at_the_head_of_the_queue_is_quarantined_with_its_raw_bytes(connection: Any, r: redis.Redis) -> None:
    queue = connection.SimpleQueue("q4")
    for junk in (b"", b"\x00 not json", b"[" * 500 + b"]" * 500):
        r.lpush("q4", junk)
    queue.put({"n": 2})
    for junk in (b"", b"\x00 not json", b"[" * 500 + b"]" * 500):
        first = queue.get(timeout=5)
        assert first.content_type == decode.MALFORMED_CONTENT_TYPE
        assert first.body == junk
        assert first.headers[decode.REASON_HEADER] == "malformed"
        assert r.xlen(keys().quarantine) >= 1
        first.ack()
    assert r.xlen(keys().quarantine) == 0  # acknowledging the DLQ write settles the stream entry
    second = queue.get(timeout=5)
    assert second.payload == {"n": 2}
    assert r.hlen("unacked") == 1  # recorded by the fetch script, under its delivery tag
    second.ack()
    assert r.hlen("unacked") == 0
    assert r.hlen(keys().fetches) == 0
    queue.close()


def test_a_plain_celery_eta_is_scheduled_not_delivered(connection: Any, r: redis.Redis) -> None:
    message = envelope()
    del message["headers"][HEADER]
    message["headers"]["eta"] = "2999-01-01T00:00:00+00:00"
    r.lpush("celery", json.dumps(message))
    queue = connection.SimpleQueue("celery")
    with pytest.raises(queue.Empty):
        queue.get(timeout=0.2)
    [(payload, due)] = r.zrange(Keys("stalwart").delayed("celery"), 0, -1, withscores=True)
    scheduled = json.loads(payload)
    assert scheduled["headers"]["eta"] is None
    assert scheduled["headers"][HEADER]["msg"] == f"celery:{message['properties']['delivery_tag']}"
    assert due == decode.parse_time_ms("2999-01-01T00:00:00+00:00")
    assert r.hlen("unacked") == 0
    assert r.hlen(keys().fetches) == 0
    queue.close()


def test_a_plain_celery_message_gets_a_header_recorded_for_its_redeliveries(connection: Any, r: redis.Redis) -> None:
    message = envelope()
    del message["headers"][HEADER]
    message["headers"]["expires"] = "2999-01-01T00:00:00Z"
    r.lpush("celery", json.dumps(message))
    got = connection.SimpleQueue("celery").get(timeout=5)
    header = got.headers[HEADER]
    assert header["deadline"] == decode.parse_time_ms("2999-01-01T00:00:00Z")
    assert got.headers["expires"] is None  # Celery never silently revokes it
    record, _, queue = json.loads(r.hget("unacked", got.delivery_tag))
    assert (record["headers"][HEADER], queue) == (header, "celery")


def test_priorities_are_taken_first_and_queues_in_rotation(redis_url: str, r: redis.Redis) -> None:
    with Connection(redis_url, transport="stalwart.broker.transport:Transport",
                    transport_options=dict(OPTIONS)) as conn:
        channel = conn.default_channel
        assert channel.stalwart_lists(["a", "b"]) == [
            ("a", "a"), ("b", "b"), ("a\x06\x163", "a"), ("b\x06\x163", "b"),
            ("a\x06\x166", "a"), ("b\x06\x166", "b"), ("a\x06\x169", "a"), ("b\x06\x169", "b")]
        with conn.Producer() as producer:
            for priority in (9, 0, 5):
                producer.publish({"p": priority}, routing_key="a", priority=priority,
                                 declare=[conn.SimpleQueue("a").queue])
        taken = [conn.SimpleQueue("a").get(timeout=5) for _ in range(3)]
        assert [m.payload["p"] for m in taken] == [0, 5, 9]


def test_restore_uses_the_redis_clock_and_puts_the_exact_bytes_back(connection: Any, r: redis.Redis) -> None:
    item = json.dumps(envelope()).encode()
    r.lpush("celery", item)
    queue = connection.SimpleQueue("celery")
    got = queue.get(timeout=5)
    channel = got.channel
    assert channel.stalwart_restore_due(100) == 0  # 2 s visibility timeout on the Redis clock
    r.zadd("unacked_index", {got.delivery_tag: 1.0})  # stamped long ago
    assert channel.stalwart_restore_due(100) == 1
    assert r.lrange("celery", 0, -1) == [item]
    assert r.hlen("unacked") == 0
    assert r.hget(keys().fetches, got.delivery_tag) == b"1"  # a crash counts towards the guard
    again = queue.get(timeout=5)
    assert again.delivery_tag == got.delivery_tag
    again.reject(requeue=True)  # an orderly requeue does not count
    assert r.hget(keys().fetches, got.delivery_tag) is None
    assert r.lrange("celery", 0, -1) == [item]


def test_the_fourth_fetch_without_an_ack_quarantines_the_message_as_poison(connection: Any, r: redis.Redis) -> None:
    item = json.dumps(envelope()).encode()
    r.lpush("celery", item)
    queue = connection.SimpleQueue("celery")
    for _ in range(3):
        got = queue.get(timeout=5)
        r.zadd("unacked_index", {got.delivery_tag: 1.0})
        assert got.channel.stalwart_restore_due(100) == 1  # its consumer "died"
    poison = queue.get(timeout=5)
    assert poison.headers[decode.REASON_HEADER] == "poison"
    assert poison.body == item
    assert poison.headers[decode.CONTEXT_HEADERS["task"]] == "tests.integration.jobs.record"
    assert r.hlen("unacked") == 0
    poison.ack()
    assert r.xlen(keys().quarantine) == 0
