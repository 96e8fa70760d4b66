"""Bulk enqueue vs an apply_async loop, same run, fresh embedded Redis.

Last line: ``bulk_ratio <bulk jobs/s ÷ loop jobs/s>``.
"""

from __future__ import annotations

import argparse
import time

import redis
from celery import shared_task

from stalwart.app import Stalwart
from stalwart.dev.embedded import RedisServer
from stalwart.settings import Settings


@shared_task(name="bench.noop")
def noop(i: int) -> int:
    """The job being enqueued (never run here)."""
    return i


def measure(label: str, n: int, enqueue: object, client: redis.Redis) -> float:
    """Jobs per second of ``enqueue(n)``, checked against the queue length."""
    client.delete("celery")
    start = time.perf_counter()
    enqueue(n)  # type: ignore[operator]
    elapsed = time.perf_counter() - start
    queued = client.llen("celery")
    assert queued == n, f"{label}: {queued} queued, expected {n}"
    rate = n / elapsed
    print(f"{label:<24} {n:>6} jobs  {elapsed:6.3f} s  {rate:9.0f} jobs/s")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=5000)
    opts = parser.parse_args()
    with RedisServer() as server:
        settings = Settings.from_env({"STALWART_REDIS_URL": server.url})
        app = Stalwart("bench", settings=settings)
        client = redis.Redis.from_url(server.url)
        task = app.tasks["bench.noop"]
        task.delay(0)  # warm up: connection, scripts, routes
        loop = measure("apply_async loop", opts.n, lambda n: [task.apply_async((i,)) for i in range(n)], client)
        bulk = measure("enqueue_many", opts.n, lambda n: app.enqueue_many(task, [((i,), {}) for i in range(n)]), client)
        keyed_loop = measure(
            "keyed apply_async loop", opts.n,
            lambda n: [task.apply_async((i,), idempotency_key=f"l{i}") for i in range(n)], client,
        )
        keyed_bulk = measure(
            "keyed enqueue_many", opts.n,
            lambda n: app.enqueue_many(task, [((i,), {}, {"idempotency_key": f"b{i}"}) for i in range(n)]),
            client,
        )
        print(f"keyed_bulk_ratio {keyed_bulk / keyed_loop:.2f}")
        print(f"bulk_ratio {bulk / loop:.2f}")


if __name__ == "__main__":
    main()
