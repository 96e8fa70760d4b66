"""Tenant fairness: small tenants' latency behind a big tenant's backlog, plain Celery vs ``fair_by``.

Each side gets its own embedded redis-server (same build) and one worker (prefork ``-c 2``):
plain ``celery.Celery`` on kombu's stock Redis transport (bench/plain_app.py's settings), then
Stalwart with ``fair_by="{tenant}"``. Tenant A enqueues 5 000 jobs of 10 ms, then tenants B-E
enqueue 20 each (interleaved). Each B-E job records enqueue and completion on its server's Redis
clock; the run ends when all 5 080 jobs are done. Reported per side: p50/p95 enqueue-to-completion
of B-E's jobs, and the worker's CPU seconds (main process and pool children, user + system, from
psutil) per completed job over the run. A third run, Stalwart with the same task without
``fair_by``, separates the envelope's CPU from the lanes'.

Last line: ``fairness_p95_ratio <stalwart p95 ÷ plain p95>``.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psutil
import redis

from stalwart.app import Stalwart
from stalwart.dev.embedded import RedisServer
from stalwart.settings import Settings
from stalwart.testing import REPO_ROOT, WorkerProcess, wait_until

TASK = "bench.fair.job"
SMALL = "BCDE"


@dataclass
class Side:
    name: str
    p50: float
    p95: float
    cpu_per_job: float
    seconds: float


def server_ms(r: redis.Redis) -> int:
    seconds, micros = r.time()
    return int(seconds) * 1000 + int(micros) // 1000


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its live children."""
    main = psutil.Process(pid)
    total = 0.0
    for proc in [main, *main.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def run(name: str, env: dict[str, str], app_module: str, send: Callable[[list[tuple[str, int]]], None],
        big: int, small: int, r: redis.Redis) -> Side:
    worker = WorkerProcess(env, app=app_module, concurrency=2, name=f"fair-{name}").start(timeout=90)
    try:
        assert worker.process is not None
        pid = worker.process.pid
        time.sleep(1.0)  # the pool children settle
        before, started = cpu_seconds(pid), time.monotonic()
        send([("A", 0)] * big)
        send([(tenant, server_ms(r)) for n in range(small) for tenant in SMALL])
        total = big + small * len(SMALL)
        wait_until(lambda: int(r.get("bench:done:A") or 0) + r.llen("bench:done") >= total, 600, 0.1,
                   f"{name}: the jobs did not finish")
        cpu, elapsed = cpu_seconds(pid) - before, time.monotonic() - started
    finally:
        worker.stop(15)
    latencies = sorted((done - enq) / 1000 for enq, done in
                       (map(int, raw.split()) for raw in r.lrange("bench:done", 0, -1)))
    p95 = latencies[max(0, int(len(latencies) * 0.95) - 1)]
    return Side(name, statistics.median(latencies), p95, cpu / total, elapsed)


def plain_side(big: int, small: int) -> Side:
    with RedisServer() as server:
        env = {"STALWART_REDIS_URL": server.url}
        sys.path.insert(0, str(REPO_ROOT))  # run as a script: bench/ is importable from the repo root
        app = importlib.import_module("bench.fairness_plain_app").app
        app.conf.broker_url = server.url  # the worker reads it from its environment
        r = redis.Redis.from_url(server.url)

        def send(jobs: list[tuple[str, int]]) -> None:
            with app.producer_or_acquire() as producer:
                for tenant, enq in jobs:
                    app.send_task(TASK, [tenant, enq], producer=producer)

        return run("plain", env, "bench.fairness_plain_app", send, big, small, r)


def stalwart_side(big: int, small: int, task: str = TASK) -> Side:
    with RedisServer() as server:
        module = "bench.fairness_jobs"
        env = {"STALWART_REDIS_URL": server.url, "STALWART_TASK_MODULES": module}
        app: Any = Stalwart("bench", settings=Settings.from_env(env), include=[module])
        app.loader.import_default_modules()
        r = redis.Redis.from_url(server.url)

        lanes: list[str] = []

        def send(jobs: list[tuple[str, int]]) -> None:
            if len(jobs) > 100:
                app.enqueue_many(task, [([tenant, enq], {}) for tenant, enq in jobs])
                lanes.extend(app.stalwart.delayed.fair_lists())  # listed while jobs wait in them
                return
            for tenant, enq in jobs:
                app.send_task(task, [tenant, enq])

        side = run("stalwart" if task == TASK else "no-fair", env, "workers.app", send, big, small, r)
        if task == TASK and not lanes:
            raise RuntimeError("the fair jobs never used a lane")
        return side


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--big", type=int, default=5000, help="tenant A's jobs")
    parser.add_argument("--small", type=int, default=20, help="jobs of each of tenants B-E")
    opts = parser.parse_args()
    plain = plain_side(opts.big, opts.small)
    fair = stalwart_side(opts.big, opts.small)
    unfair = stalwart_side(opts.big, opts.small, "bench.fair.unfair")
    for side in (plain, unfair, fair):
        print(f"{side.name:9} B-E p50 {side.p50:6.2f} s  p95 {side.p95:6.2f} s   "
              f"worker CPU {side.cpu_per_job * 1000:5.2f} ms/job   run {side.seconds:5.1f} s")
    print(f"cpu_per_job_ratio {fair.cpu_per_job / plain.cpu_per_job:.2f} (Stalwart without fair_by: "
          f"{unfair.cpu_per_job / plain.cpu_per_job:.2f})")
    print(f"fairness_p95_ratio {fair.p95 / plain.p95:.3f}")


if __name__ == "__main__":
    main()
