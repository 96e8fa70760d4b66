"""Contract tests: every private kombu, Celery and redis-py name the broker seam relies on.

The seam (stalwart.broker) extends kombu's Redis channel, QoS and transport and Celery's consumer;
each private touch there carries a one-line comment and is pinned here, so a kombu or Celery
release that moves one fails this file instead of misbehaving in production. Runs on every
supported version (5.5, 5.6, 5.7).
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import redis
from celery.app.task import Context
from celery.worker.consumer import Consumer as CeleryConsumer
from kombu import Connection
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.scheduling import round_robin_cycle

from stalwart.broker import transport
from stalwart.store.broker import Unprefixed


def params(fn: Any) -> list[str]:
    return list(inspect.signature(fn).parameters)


def test_the_redis_channel_methods_stalwart_overrides_or_calls_keep_their_signatures() -> None:
    channel = kombu_redis.Channel
    assert params(channel._brpop_start)[:2] == ["self", "timeout"]
    assert params(channel._brpop_read) == ["self", "options"]
    assert params(channel._get)[:2] == ["self", "queue"]
    assert params(channel._put)[:3] == ["self", "queue", "message"]
    assert params(channel._connparams) == ["self", "asynchronous"]
    assert params(channel._q_for_pri) == ["self", "queue", "pri"]
    assert params(channel._create_client) == ["self", "asynchronous"]  # stalwart_client: one sync client
    assert params(channel.conn_or_acquire) == ["self", "client"]  # yields the client it is given
    assert params(virtual.Channel._get_message_priority) == ["self", "message", "reverse"]
    assert params(virtual.Channel._lookup)[:3] == ["self", "exchange", "routing_key"]
    assert params(virtual.Channel.basic_get)[:3] == ["self", "queue", "no_ack"]
    assert params(virtual.Transport._deliver) == ["self", "message", "queue"]
    for name in ("_in_poll", "unacked_key", "unacked_index_key", "visibility_timeout", "priority_steps", "sep",
                 "global_keyprefix", "_queue_cycle"):
        assert hasattr(channel, name) or name == "_queue_cycle", name


def test_the_consumer_poller_calls_brpop_start_and_reads_with_the_brpop_handler(redis_url: str) -> None:
    """kombu's poller sends our command through _brpop_start and reads it with handlers['BRPOP']."""
    source = inspect.getsource(kombu_redis.MultiChannelPoller._register_BRPOP)
    assert "_brpop_start()" in source
    with Connection(redis_url, transport="stalwart.broker.transport:Transport") as conn:
        channel = conn.default_channel
        assert channel.handlers["BRPOP"] == channel._brpop_read
        assert isinstance(channel._queue_cycle, round_robin_cycle)
        assert {"consume", "rotate"} <= set(dir(channel._queue_cycle))
        assert isinstance(channel._queue_cycle.items, list)
        assert isinstance(conn.transport, transport.Transport)
        assert hasattr(conn.transport.cycle, "maybe_restore_messages")


def test_the_qos_methods_stalwart_replaces_keep_their_signatures() -> None:
    qos = kombu_redis.QoS
    assert params(qos.append) == ["self", "message", "delivery_tag"]
    assert params(qos.ack) == ["self", "delivery_tag"]
    assert params(qos.reject) == ["self", "delivery_tag", "requeue"]
    assert params(qos.restore_by_tag)[:4] == ["self", "tag", "client", "leftmost"]
    assert params(qos.restore_visible)[:4] == ["self", "start", "num", "interval"]
    assert "restore_by_tag" in inspect.getsource(qos.restore_unacked)  # closing a channel requeues through it
    assert params(virtual.QoS.append) == ["self", "message", "delivery_tag"]
    assert params(virtual.QoS.ack) == ["self", "delivery_tag"]


def test_kombus_stale_connection_check_reads_brpop_sent_at_where_it_has_one() -> None:
    check = getattr(kombu_redis.MultiChannelPoller, "maybe_check_brpop_health", None)
    if check is None:  # kombu < 5.7 has none: Stalwart's own check (stalwart_check_wait) is the only one
        pytest.skip("this kombu has no stale-connection check of its own")
    assert "_brpop_sent_at" in inspect.getsource(check)


def test_the_transport_registers_timers_on_the_event_loop() -> None:
    assert params(kombu_redis.Transport.register_with_event_loop) == ["self", "connection", "loop"]


def test_kombus_prefixing_client_prefixes_only_what_stalwart_passes_through_unprefixed(redis_url: str) -> None:
    """kombu's global_keyprefix client prefixes EVALSHA's first key only (so Stalwart sends full
    names through the plain client's execute_command, which the prefixing subclass overrides)."""
    client = kombu_redis.PrefixedStrictRedis(connection_pool=redis.ConnectionPool.from_url(redis_url),
                                             global_keyprefix="gp:")
    assert client._prefix_args(["EVALSHA", "sha", 2, "k1", "k2"]) == ["EVALSHA", "sha", 2, "gp:k1", "k2"]
    assert "execute_command" in kombu_redis.GlobalKeyPrefixMixin.__dict__
    Unprefixed(client).execute("SET", "plain-key", "1")
    raw = redis.Redis.from_url(redis_url)
    assert raw.get("plain-key") == b"1"
    assert raw.get("gp:plain-key") is None


def test_a_redis_py_connection_keeps_its_socket_in_sock() -> None:
    """The stale-wait check shuts ``connection._sock`` (kombu's own check reads it too)."""
    assert "_sock" in inspect.getsource(redis.connection.AbstractConnection.disconnect)


def test_the_celery_consumer_builds_its_task_handler_with_create_task_handler() -> None:
    assert params(CeleryConsumer.create_task_handler)[:2] == ["self", "promise"]
    for hook in ("on_unknown_message", "on_unknown_task", "on_invalid_task", "on_decode_error"):
        assert hasattr(CeleryConsumer, hook), hook


def test_celery_copies_headers_into_a_request_context_whose_methods_a_header_could_shadow() -> None:
    assert callable(Context.update)
    assert callable(Context.get)
    assert "called_directly" in dir(Context)
