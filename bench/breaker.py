"""Calls that reach a failing dependency: one breaker shared by all workers vs one per process.

4 Stalwart workers (prefork ``-c 2``: 8 processes), one fresh embedded redis-server. The
dependency is down for ``--down`` seconds while a backlog of jobs keeps calling it (each job
retries until it succeeds), then recovers. Both sides use the same thresholds (failure rate 0.5
over 10 s, min 5 calls, open 2 s, 1 half-open probe); the per-process side keeps its breaker in
memory, like pybreaker and friends without shared state.

Last line: ``calls_ratio <shared ÷ per-process>`` (calls reaching the dependency while down).
"""

from __future__ import annotations

import argparse
import os
import time

import redis

from stalwart.app import Stalwart
from stalwart.dev.embedded import RedisServer
from stalwart.settings import Settings
from stalwart.testing import WorkerProcess, wait_until

WORKERS = 4


def run_side(app: Stalwart, r: redis.Redis, env: dict[str, str], task: str, jobs: int, down: float) -> int:
    procs = [WorkerProcess(env, concurrency=2) for _ in range(WORKERS)]
    for p in procs:
        p.start(wait=False)
    try:
        for p in procs:
            p.wait_ready(90)
        r.set("down", 1)
        for _ in range(jobs):
            app.send_task(task)
        time.sleep(down)
        calls = int(r.get("calls_while_down") or 0)
        r.delete("down")
        wait_until(lambda: int(r.get("done") or 0) >= jobs, 120, 0.2, f"{task}: jobs did not recover")
        return calls
    finally:
        for p in procs:
            p.stop(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--down", type=float, default=10.0)
    opts = parser.parse_args()
    with RedisServer() as server:
        os.environ["STALWART_REDIS_URL"] = server.url
        env = {"STALWART_REDIS_URL": server.url, "STALWART_TASK_MODULES": "bench.limits_jobs"}
        r = redis.Redis.from_url(server.url)
        app = Stalwart("bench", settings=Settings.from_env(env), include=["bench.limits_jobs"])
        shared = run_side(app, r, env, "bench.shared_breaker", opts.jobs, opts.down)
        r.flushall()
        local = run_side(app, r, env, "bench.local_breaker", opts.jobs, opts.down)
    print(f"dependency down {opts.down:.0f} s, {opts.jobs} jobs, {WORKERS} workers x -c 2")
    print(f"shared breaker (Stalwart)      {shared:5d} calls reached the failing dependency")
    print(f"per-process breaker (memory)   {local:5d} calls reached the failing dependency")
    print(f"calls_ratio {shared / max(local, 1):.3f}")


if __name__ == "__main__":
    main()
