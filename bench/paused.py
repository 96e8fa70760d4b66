"""An unpaused job's start latency, with a paused backlog of 2 000 jobs and with none.

One Stalwart worker (prefork ``-c 2``), one fresh embedded redis-server. Probes are sent one at a
time (each waits for the previous to start); a probe's latency is its start minus its enqueue,
both on the Redis clock. First with nothing else queued; then ``stalwart switch pause`` on
``bench.paused.*``, 2 000 of its jobs enqueued, and the same probes once every paused job has been
delivered once and parked. Paused jobs hold no worker slot and are not delivered again while
paused, so the probes should not notice them. (Before parking, paused jobs came back every ~1.1 s:
with 1 500 of them a probe's latency went from 0.04 s to 2.97 s.)

Last line: ``latency_ratio <median with the paused backlog ÷ median without>``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import redis

from stalwart.app import Stalwart
from stalwart.dev.embedded import RedisServer
from stalwart.policies import switches
from stalwart.settings import Settings
from stalwart.testing import WorkerProcess, wait_until

MODULE = "bench.paused_jobs"


def server_ms(r: redis.Redis) -> int:
    seconds, micros = r.time()
    return int(seconds) * 1000 + int(micros) // 1000


def probes(app: Stalwart, r: redis.Redis, n: int) -> list[float]:
    """Send ``n`` probes one after another; their start latencies in seconds."""
    r.delete("bench:latency")
    for i in range(n):
        app.send_task("bench.probe", args=[server_ms(r)])
        wait_until(lambda i=i: r.llen("bench:latency") > i, 60, 0.002, "a probe never started")
    return [int(v) / 1000 for v in r.lrange("bench:latency", 0, -1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backlog", type=int, default=2000)
    parser.add_argument("--probes", type=int, default=40)
    opts = parser.parse_args()
    with RedisServer() as server:
        env = {"STALWART_REDIS_URL": server.url, "STALWART_TASK_MODULES": MODULE}
        r = redis.Redis.from_url(server.url)
        app = Stalwart("bench", settings=Settings.from_env(env), include=[MODULE])
        worker = WorkerProcess(env, concurrency=2).start(timeout=90)
        try:
            probes(app, r, 5)  # warm up the pool children
            quiet = probes(app, r, opts.probes)
            switches.set_switch(r, app.stalwart.keys, "bench.paused.*", "paused")
            time.sleep(1.0)  # every worker sees a switch within a second
            app.enqueue_many("bench.paused.work", [((n,), {}) for n in range(opts.backlog)])
            wait_until(lambda: switches.parked_counts(r, app.stalwart.keys).get("bench.paused.work", 0)
                       >= opts.backlog, 300, 0.2, "the paused backlog was not parked")
            busy = probes(app, r, opts.probes)
            parked = switches.parked_counts(r, app.stalwart.keys).get("bench.paused.work", 0)
            delivered = sum(1 for line in worker.log().splitlines()
                            if "bench.paused.work[" in line and "] received" in line)
        finally:
            worker.stop(10)
    q, b = statistics.median(quiet), statistics.median(busy)
    print(f"no backlog:                {q * 1000:7.1f} ms median start latency ({opts.probes} probes)")
    print(f"{opts.backlog} paused jobs parked: {b * 1000:7.1f} ms median start latency "
          f"(parked {parked}, paused-job deliveries {delivered})")
    print(f"latency_ratio {b / q:.2f}")


if __name__ == "__main__":
    main()
