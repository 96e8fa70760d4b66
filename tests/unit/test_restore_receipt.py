"""The shutdown restore and the crash-loop guard, on a real redis-server without a worker: a
message whose receipt began and never finished keeps its fetch count; the others are cleared."""

from __future__ import annotations

import json

import redis
from kombu import Connection

from tests.unit.test_transport import OPTIONS, envelope, keys


def _shutdown_restore(redis_url: str, r: redis.Redis, *, receiving: bool) -> bytes | None:
    item = json.dumps(envelope()).encode()
    r.lpush("celery", item)
    with Connection(redis_url, transport="stalwart.broker.transport:Transport",
                    transport_options=dict(OPTIONS)) as conn:
        got = conn.SimpleQueue("celery").get(timeout=5)
        tag = got.delivery_tag
        if receiving:  # what the consumer marks before Celery's strategy runs; SystemExit skips the clear
            got.channel.stalwart_receiving(tag)
    # the connection closed: kombu's restore_unacked handed the message back
    assert r.lrange("celery", 0, -1) == [item]
    assert r.hlen("unacked") == 0
    return r.hget(keys().fetches, tag)


def test_a_message_whose_receipt_ended_the_worker_keeps_its_fetch_count(redis_url: str, r: redis.Redis) -> None:
    assert _shutdown_restore(redis_url, r, receiving=True) == b"1"


def test_a_prefetched_message_the_worker_never_began_to_receive_is_requeued_in_order(
    redis_url: str, r: redis.Redis
) -> None:
    assert _shutdown_restore(redis_url, r, receiving=False) is None


def test_a_received_message_requeued_by_the_live_consumer_is_cleared(redis_url: str, r: redis.Redis) -> None:
    r.lpush("celery", json.dumps(envelope()).encode())
    with Connection(redis_url, transport="stalwart.broker.transport:Transport",
                    transport_options=dict(OPTIONS)) as conn:
        got = conn.SimpleQueue("celery").get(timeout=5)
        got.channel.stalwart_receiving(got.delivery_tag)
        got.reject(requeue=True)  # deliberate: not a crash, whatever the mark says
        assert r.hget(keys().fetches, got.delivery_tag) is None
