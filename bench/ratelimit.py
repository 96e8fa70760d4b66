"""A shared 20/s limit on 3 workers: Stalwart's RateLimit vs Celery's native ``rate_limit``, same run.

One fresh embedded redis-server (flushed between phases); every worker is prefork ``-c 2``,
prefetch 1, late acks, JSON. Phases:
  1. unlimited jobs alone on the Stalwart workers: their throughput;
  2. a backlog of limited jobs alone: Stalwart's aggregate rate (grants ÷ first-to-last time);
  3. the backlog again; once it waits in the delayed set, unlimited jobs: their throughput;
  4. the same backlog on a plain Celery app with ``rate_limit="20/s"`` (per worker in Celery).

Last line: ``accuracy <stalwart rate ÷ limit>``.
"""

from __future__ import annotations

import argparse
import time

import redis

from stalwart.app import Stalwart
from stalwart.dev.embedded import RedisServer
from stalwart.settings import Settings
from stalwart.testing import WorkerProcess, wait_until

LIMIT = 20.0
WORKERS = 3


def start(env: dict[str, str], app: str = "workers.app") -> list[WorkerProcess]:
    procs = [WorkerProcess(env, app=app, concurrency=2) for _ in range(WORKERS)]
    for p in procs:
        p.start(wait=False)
    for p in procs:
        p.wait_ready(90)
    return procs


def stop(procs: list[WorkerProcess]) -> None:
    for p in procs:
        p.stop(10)


def rate(stamps: list[float]) -> float:
    return (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else 0.0


def stamps(r: redis.Redis, key: str) -> list[float]:
    return sorted(float(x) for x in r.lrange(key, 0, -1))


def drain(r: redis.Redis, key: str, n: int, timeout: float) -> list[float]:
    wait_until(lambda: r.llen(key) >= n, timeout, 0.2, f"{key}: {n} jobs did not finish in {timeout}s")
    return stamps(r, key)


def queued(r: redis.Redis) -> int:
    return int(r.llen("celery")) + int(r.hlen("unacked"))


def stalwart_phases(app: Stalwart, r: redis.Redis, backlog: int, unlimited: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for _ in range(100):  # warm up the pool children
        app.send_task("bench.unlimited")
    drain(r, "ran:unlimited", 100, 60)
    r.delete("ran:unlimited")
    for _ in range(unlimited):
        app.send_task("bench.unlimited")
    out["alone"] = rate(drain(r, "ran:unlimited", unlimited, 120))
    r.delete("ran:unlimited")
    for _ in range(backlog):
        app.send_task("bench.limited")
    out["limited"] = rate(drain(r, "ran:limited", backlog, backlog / LIMIT * 2 + 60))
    r.flushall()
    for _ in range(backlog):
        app.send_task("bench.limited")
    # the backlog has been seen once and now waits in the delayed set for its slots
    wait_until(lambda: queued(r) == 0 and r.zcard("stalwart:{limit:bench}:reserved") > backlog * 0.8, 60, 0.05)
    for _ in range(unlimited):
        app.send_task("bench.unlimited")
    out["beside"] = rate(drain(r, "ran:unlimited", unlimited, 120))
    out["limited_beside"] = rate(stamps(r, "ran:limited"))
    return out


def celery_phase(r: redis.Redis, env: dict[str, str], backlog: int, cap: float) -> tuple[float, int, float]:
    from bench.plain_app import app as plain  # noqa: PLC0415 - needs the env set first

    procs = start(env, app="bench.plain_app")
    try:
        for _ in range(backlog):
            plain.send_task("bench.plain.limited")
        wait_until(lambda: r.llen("ran:plain") > 0, 60, 0.2)
        deadline = time.monotonic() + cap
        while time.monotonic() < deadline and r.llen("ran:plain") < backlog:
            time.sleep(0.5)
        ran = stamps(r, "ran:plain")
        return rate(ran), len(ran), ran[-1] - ran[0]
    finally:
        stop(procs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backlog", type=int, default=600)
    parser.add_argument("--unlimited", type=int, default=1500)
    opts = parser.parse_args()
    with RedisServer() as server:
        import os  # noqa: PLC0415

        os.environ["STALWART_REDIS_URL"] = server.url
        env = {"STALWART_REDIS_URL": server.url, "STALWART_TASK_MODULES": "bench.limits_jobs"}
        r = redis.Redis.from_url(server.url)
        app = Stalwart("bench", settings=Settings.from_env(env), include=["bench.limits_jobs"])
        app.loader.import_default_modules()
        procs = start(env)
        try:
            got = stalwart_phases(app, r, opts.backlog, opts.unlimited)
        finally:
            stop(procs)
        r.flushall()
        native, ran, seconds = celery_phase(r, env, opts.backlog, opts.backlog / LIMIT + 10)
    print(f"limit                          {LIMIT:8.1f} jobs/s  ({WORKERS} workers x -c 2, backlog {opts.backlog})")
    print(f"stalwart RateLimit('20/s')     {got['limited']:8.2f} jobs/s  aggregate, all {opts.backlog} jobs")
    print(f"celery rate_limit='20/s'       {native:8.2f} jobs/s  aggregate, {ran} jobs in {seconds:.1f} s")
    print(f"unlimited alone                {got['alone']:8.1f} jobs/s  ({opts.unlimited} no-op jobs)")
    print(f"unlimited beside the backlog   {got['beside']:8.1f} jobs/s  ratio {got['beside'] / got['alone']:.2f}"
          f"  (limited meanwhile {got['limited_beside']:.1f}/s)")
    print(f"accuracy {got['limited'] / LIMIT:.3f}")


if __name__ == "__main__":
    main()
