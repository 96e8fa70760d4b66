"""The operator console with a full DLQ: page times over 100,000 dead letters, and a bulk replay
of 10,000 that reports its progress.

One fresh embedded redis-server and one ``stalwart flower`` process. 100,000 entries (20 tasks, 5
queues, 3 reasons, about 40 causes, arguments and a traceback each) are seeded through the public
API (``DeadLetterQueue.add_many``). Each page's data is then fetched over HTTP, as the page's
script fetches it (with Flower's basic auth), ``--rounds`` times: the dead-letters page (its
frame and its newest 50 entries), a page filtered by one field and by two, a search, and the
by-cause page. Flower's own ``/api/workers``, answered by the same process, is timed alongside as
the reference (the ``ratio`` column).

Then 10,000 more entries of one task are replayed through the console's API (dry run, confirm)
with no worker running: the messages are published to the broker's list, where the bench counts
them. Progress is printed as the console reports it. Plain Celery publishing the same 10,000
messages (``send_task`` in a loop, the floor any replay has to pay) is timed in the same run.

Last lines: ``page_ms_max <slowest median page, ms>`` (the target is < 300) and
``bulk_replay_ratio <replay time ÷ plain send_task time>``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import redis

from stalwart.app import Stalwart
from stalwart.dev.embedded import RedisServer, free_port
from stalwart.dlq.entry import DeadLetter
from stalwart.settings import Settings
from stalwart.testing import REPO_ROOT, wait_until

AUTH = "bench:bench-console"
TASKS = [f"bench.tasks.t{i:02d}" for i in range(20)]
QUEUES = ["celery", "orders", "emails", "reports", "billing"]
REASONS = ["exhausted", "permanent", "poison"]
TRACEBACK = "Traceback (most recent call last):\n" + "".join(
    f'  File "/app/tasks/module_{i}.py", line {10 * i}, in step_{i}\n    result = call_{i}(payload)\n' for i in range(8)
)


def entry(i: int) -> DeadLetter:
    task = TASKS[i % len(TASKS)]
    return DeadLetter(
        reason=REASONS[i % 3], task=task, task_id=f"bench-{i}", queue=QUEUES[i % 5], source=f"bench-{i}",
        args=[i, f"customer-{i % 997}"], kwargs={"amount": i % 500, "currency": "EUR"},
        headers={"msg": f"m-{i}", "gen": 0, "trace": f"tr-{i}"}, options={},
        exc_type=("TimeoutError", "ConnectionError")[i % 2],
        exc_message=f"order {i} failed after {i % 30}s: upstream {i % 2} unavailable",
        traceback=TRACEBACK, attempts=[{"attempt": n, "at": 1_700_000_000_000 + n} for n in (1, 2, 3)],
    )


def replayable(i: int) -> DeadLetter:
    return DeadLetter(reason="exhausted", task="bench.replayed", task_id=f"replay-{i}", queue="replays",
                      source=f"replay-{i}", args=[i], headers={"msg": f"r-{i}", "gen": 0}, options={},
                      exc_type="TimeoutError", exc_message=f"call {i} timed out")


class Http:
    def __init__(self, base: str) -> None:
        self.base = base
        self.auth = "Basic " + base64.b64encode(AUTH.encode()).decode()
        self.cookie = ""

    def call(self, path: str, body: Any = None, token: str | None = None) -> Any:
        request = urllib.request.Request(self.base + path, data=None if body is None else json.dumps(body).encode(),
                                         method="GET" if body is None else "POST")
        request.add_header("Authorization", self.auth)
        if self.cookie:
            request.add_header("Cookie", self.cookie)
        if token:
            request.add_header("X-XSRFToken", token)
        with urllib.request.urlopen(request, timeout=60) as response:
            cookie = response.headers.get("Set-Cookie")
            if cookie:
                self.cookie = cookie.split(";", 1)[0]
            payload = response.read()
        is_json = response.headers.get("Content-Type", "").startswith("application/json")
        return json.loads(payload) if is_json else payload

    def timed(self, path: str, rounds: int) -> list[float]:
        out = []
        for _ in range(rounds):
            start = time.perf_counter()
            self.call(path)
            out.append((time.perf_counter() - start) * 1000)
        return out


def start_console(redis_url: str, log: Path) -> tuple[subprocess.Popen[bytes], Http]:
    port = free_port()
    env = {**os.environ, "STALWART_REDIS_URL": redis_url, "FLOWER_BASIC_AUTH": AUTH,
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "stalwart.cli.main", "flower", f"--port={port}", "--address=127.0.0.1",
             "--persistent=False"], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    http = Http(f"http://127.0.0.1:{port}")

    def up() -> bool:
        if process.poll() is not None:
            raise RuntimeError(log.read_text()[-2000:])
        try:
            return bool(http.call("/api/stalwart/csrf"))
        except OSError:
            return False

    wait_until(up, 60, 0.2, "stalwart flower did not start")
    return process, http


def seed(app: Stalwart, count: int, make: Any, batch: int = 2000) -> float:
    start = time.perf_counter()
    for i in range(0, count, batch):
        app.stalwart.dlq.add_many([make(n) for n in range(i, min(count, i + batch))])
    return time.perf_counter() - start


def pages(http: Http, rounds: int) -> float:
    """Print each page's median and p95; return the slowest median."""
    checks = [
        ("dead-letters page frame", "/stalwart/dead-letters"),
        ("dead-letters page data (newest 50)", "/api/stalwart/dead-letters?limit=50"),
        ("filtered by task", f"/api/stalwart/dead-letters?task={TASKS[3]}&limit=50"),
        ("filtered by task and reason", f"/api/stalwart/dead-letters?task={TASKS[3]}&reason=poison&limit=50"),
        ("filtered by queue, reason, time",
         "/api/stalwart/dead-letters?queue=orders&reason=exhausted&since=1h&limit=50"),
        ("by-cause page data", "/api/stalwart/causes?order=count&limit=50"),
        ("search (info: scans the index)", "/api/stalwart/dead-letters?q=customer-123&limit=50"),
    ]
    reference = statistics.median(http.timed("/api/workers", rounds))
    print(f"{'page':40} {'median ms':>10} {'p95 ms':>8} {'ratio':>7}")
    print(f"{'Flower /api/workers (reference)':40} {reference:10.1f}")
    slowest = 0.0
    for label, path in checks:
        times = sorted(http.timed(path, rounds))
        median, p95 = statistics.median(times), times[int(0.95 * (len(times) - 1))]
        if not label.startswith("search"):
            slowest = max(slowest, median)
        print(f"{label:40} {median:10.1f} {p95:8.1f} {median / reference:7.1f}")
    return slowest


def bulk_replay(app: Stalwart, http: Http, r: redis.Redis, count: int) -> float:
    token = http.call("/api/stalwart/csrf")["token"]
    started = time.perf_counter()
    plan = http.call("/api/stalwart/dead-letters/dry-run", {"action": "replay", "filter": {"task": "bench.replayed"}},
                     token)["job"]
    plan = wait_until(lambda: (p := http.call(f"/api/stalwart/jobs/{plan['id']}"))["state"] != "running" and p,
                      300, 0.2)
    print(f"dry run: {plan['result']} in {time.perf_counter() - started:.1f}s")
    started = time.perf_counter()
    job = http.call("/api/stalwart/dead-letters/confirm", {"plan": plan["id"], "name": "bench replay"}, token)["job"]
    last = -1
    while True:
        job = http.call(f"/api/stalwart/jobs/{job['id']}")
        if job["done"] != last:
            print(f"  progress: {job['done']:>6}/{job['total']} replayed {job['replayed']} ({job['state']})")
            last = job["done"]
        if job["state"] != "running":
            break
        time.sleep(1.0)
    took = time.perf_counter() - started
    published = r.llen("replays")
    print(f"bulk replay: {job['state']}, {job['replayed']} replayed, {published} published in {took:.1f}s "
          f"({job['replayed'] / took:.0f}/s)")
    if job["replayed"] != count or published != count:
        raise SystemExit(f"bulk replay incomplete: {job}")
    return took


def plain_publish(app: Stalwart, r: redis.Redis, count: int) -> float:
    r.delete("plain")
    start = time.perf_counter()
    for i in range(count):
        app.send_task("bench.replayed", (i,), queue="plain")
    took = time.perf_counter() - start
    assert r.llen("plain") == count
    print(f"plain Celery send_task x{count}: {took:.1f}s ({count / took:.0f}/s)")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--replay", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="stalwart-bench-console-"))
    server = RedisServer().start()
    process = None
    try:
        r = redis.Redis.from_url(server.url)
        app = Stalwart("bench", settings=Settings(redis_url=server.url, broker_url=server.url,
                                                  dlq_max_entries=args.entries + args.replay + 1))
        print(f"seeded {args.entries} entries in {seed(app, args.entries, entry):.1f}s "
              f"(redis used_memory {r.info('memory')['used_memory_human']})")
        process, http = start_console(server.url, workdir / "flower.log")
        slowest = pages(http, args.rounds)
        print(f"seeded {args.replay} replayable entries in {seed(app, args.replay, replayable):.1f}s")
        replay_s = bulk_replay(app, http, r, args.replay)
        plain_s = plain_publish(app, r, args.replay)
        print(f"page_ms_max {slowest:.1f}")
        print(f"bulk_replay_ratio {replay_s / plain_s:.2f}")
    finally:
        if process is not None:
            process.terminate()
            process.wait(10)
        server.cleanup()


if __name__ == "__main__":
    main()
