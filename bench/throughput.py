"""Drain N no-op jobs through plain Celery and through the Stalwart envelope, side by side.

Both run in the same process tree on one fresh embedded redis-server (flushed between runs),
with the same worker settings (prefork, -c 2, prefetch 1, late acks, JSON, task events on, no
result backend). For each run all N jobs are enqueued first; a worker is then started and the
drain is timed from the first job leaving the queue to the queue and the ``unacked`` hash being
empty, polled the same way for both. Sides alternate (plain, stalwart, plain, stalwart, ...) and
the best rate of each is compared. Round trips per job are counted in a separate, untimed
run of each side under MONITOR (``INFO commandstats`` would also count the commands a Lua
script runs inside one EVALSHA), minus the idle background rate (heartbeats, BRPOP timeouts,
the delayed-set mover), with a MULTI/EXEC block counted once.

Last line: ``ratio <envelope ÷ plain>``.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import redis

from stalwart.app import Stalwart
from stalwart.dev.embedded import RedisServer
from stalwart.settings import Settings
from stalwart.store.scripts import SCRIPTS
from stalwart.testing import REPO_ROOT, WorkerProcess, wait_until

QUEUE = "celery"
SIDES = {
    "plain": ("bench.plain_app", "bench.plain.noop"),
    "stalwart": ("workers.app", "tasks.examples.noop"),
}


@dataclass
class Run:
    """One drain: its rate and, for a counting run, the Redis round trips it cost per job."""

    side: str
    n: int
    seconds: float
    per_job: dict[str, float]
    cpu_ms: dict[str, float]  # CPU per job: redis-server, worker main process, pool children

    @property
    def rate(self) -> float:
        return self.n / self.seconds

    @property
    def roundtrips(self) -> float:
        return sum(self.per_job.values())


class Tally:
    """Counts top-level commands per name from MONITOR, between ECHO marks sent by the bench.

    Commands run inside Lua scripts (``[0 lua]``) are not round trips and are skipped, and a
    MULTI ... EXEC block counts once (as ``exec``); the bench's own polling client is skipped.
    """

    def __init__(self, url: str, own_addr: str) -> None:
        self.url = url
        self.own = own_addr
        self.windows: dict[str, Counter[str]] = {}
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._ready = threading.Event()

    def start(self) -> Tally:
        self._thread.start()
        self._ready.wait(5)
        return self

    def join(self) -> None:
        self._thread.join(30)

    def _run(self) -> None:
        current: Counter[str] | None = None
        in_tx: set[str] = set()
        with redis.Redis.from_url(self.url).monitor() as monitor:
            self._ready.set()
            for entry in monitor.listen():
                who = f"{entry['client_address']}:{entry['client_port']}"
                name, _, rest = entry["command"].partition(" ")
                name = name.lower()
                if who == self.own:
                    if name == "echo" and rest.startswith("begin:"):
                        current = self.windows.setdefault(rest[6:], Counter())
                    elif name == "echo" and rest == "end":
                        current = None
                    elif name == "echo" and rest == "quit":
                        return
                    continue
                if current is None or entry["client_type"] == "lua":
                    continue
                if name == "multi":
                    in_tx.add(who)
                elif name == "exec":
                    in_tx.discard(who)
                    current["exec"] += 1
                elif who not in in_tx:
                    current[_label(name, rest)] += 1


def _ticks(pid: int) -> int:
    """utime + stime of one live process, in clock ticks (0 when it is gone or not Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def cpu_snapshot(redis_pid: int, worker_pid: int) -> dict[str, int]:
    """CPU ticks so far of redis-server, the worker's main process and its pool children."""
    return {
        "redis": _ticks(redis_pid),
        "main": _ticks(worker_pid),
        "children": sum(_ticks(c) for c in _children(worker_pid)),
    }


def _label(name: str, rest: str) -> str:
    """A command's name; for PUBLISH also the event it carries (``publish:task.started``)."""
    if name == "evalsha":
        sha = rest.split(" ", 1)[0]
        return f"evalsha:{script_names().get(sha, sha[:8])}"
    if name != "publish":
        return name
    return f"publish:{rest.split(' ', 1)[0].rsplit('/', 1)[-1].removeprefix('0.celeryev')}"


@functools.cache
def script_names() -> dict[str, str]:
    """SHA1 → name of every Lua script Stalwart ships, to label EVALSHA calls."""
    return {s.sha: name for name, s in SCRIPTS.items()}


def enqueuer(side: str, url: str) -> Callable[[int], None]:
    """A function that publishes n no-op jobs the way an app of that side would."""
    if side == "plain":
        os.environ["STALWART_REDIS_URL"] = url
        sys.path.insert(0, str(REPO_ROOT))
        plain = importlib.import_module("bench.plain_app").app
        return lambda n: [plain.send_task(SIDES[side][1]) for _ in range(n)] and None
    app = Stalwart("bench", settings=Settings.from_env({"STALWART_REDIS_URL": url}))
    return lambda n: [app.send_task(SIDES[side][1]) for _ in range(n)] and None


def backlog(client: redis.Redis) -> int:
    """Jobs not yet finished: waiting in the queue plus delivered but unacked."""
    return int(client.llen(QUEUE)) + int(client.hlen("unacked"))


def drain(side: str, n: int, server: RedisServer, enqueue: Callable[[int], None],
          count: bool = False) -> Run:
    """Enqueue n jobs, start a worker, time the drain (or count its commands), stop the worker."""
    client = redis.Redis.from_url(server.url, single_connection_client=True)
    client.flushall()
    enqueue(n)
    wait_until(lambda: client.llen(QUEUE) == n, 30, 0.05, f"{side}: {n} jobs not enqueued")
    tally = Tally(server.url, str(client.client_info()["addr"])).start() if count else None
    worker = WorkerProcess(
        {"STALWART_REDIS_URL": server.url}, app=SIDES[side][0], concurrency=2,
        name=f"bench-{side}", extra_args=["-l", "WARNING"],
    )
    worker.start(wait=False)
    try:
        while client.llen(QUEUE) == n and client.hlen("unacked") == 0:
            time.sleep(0.002)
        client.echo("begin:jobs")
        start = time.perf_counter()
        pids = (server.process.pid if server.process else 0, worker.process.pid if worker.process else 0)
        cpu_before = cpu_snapshot(*pids)
        while backlog(client):
            time.sleep(0.002)
        seconds = time.perf_counter() - start
        cpu = cpu_snapshot(*pids)
        client.echo("end")
        if tally is not None:
            client.echo("begin:idle")
            time.sleep(1.0)
            client.echo("end")
            client.echo("quit")
            tally.join()
    finally:
        worker.stop(timeout=30)
    per_job: dict[str, float] = {}
    if tally is not None:
        jobs, idle = tally.windows.get("jobs", Counter()), tally.windows.get("idle", Counter())
        per_job = {k: max(0.0, (v - idle[k] * seconds) / n) for k, v in jobs.items()}
        per_job = {k: v for k, v in per_job.items() if v >= 0.005}
    tick_ms = 1000 / os.sysconf("SC_CLK_TCK")
    cpu_ms = {k: (cpu[k] - cpu_before[k]) * tick_ms / n for k in cpu}
    return Run(side, n, seconds, per_job, cpu_ms)


def report(runs: list[Run], counted: dict[str, Run]) -> float:
    """Print each side's rates, round trips per job and the ratio; returns the ratio."""
    best = {s: max((r for r in runs if r.side == s), key=lambda r: r.rate) for s in SIDES}
    for side in SIDES:
        rates = [r.rate for r in runs if r.side == side]
        cpu = ", ".join(f"{k}={v:.2f}" for k, v in best[side].cpu_ms.items())
        print(f"{side:9s} best {best[side].rate:6.0f} jobs/s  median {statistics.median(rates):6.0f}"
              f"  runs {', '.join(f'{x:.0f}' for x in rates)}  cpu ms/job: {cpu}")
    for side, run in counted.items():
        calls = ", ".join(f"{k}={v:.2f}" for k, v in sorted(run.per_job.items()))
        print(f"{side:9s} round trips/job by command: {calls}")
    env, plain = counted["stalwart"], counted["plain"]
    extra = env.roundtrips - plain.roundtrips
    evalsha = sum(v for k, v in env.per_job.items() if k.startswith("evalsha"))
    print(f"roundtrips_per_job stalwart={env.roundtrips:.2f} plain={plain.roundtrips:.2f} "
          f"extra={extra:.2f} (evalsha/job={evalsha:.2f})")
    ratio = best["stalwart"].rate / best["plain"].rate
    print(f"ratio {ratio:.2f}")
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=3000, help="jobs per timed run (3000)")
    parser.add_argument("--rounds", type=int, default=2, help="timed runs of each side, alternated (2)")
    parser.add_argument("--count-n", type=int, default=300,
                        help="jobs in the untimed run that counts round trips under MONITOR (300)")
    args = parser.parse_args()
    runs: list[Run] = []
    with RedisServer() as server:
        enqueue = {side: enqueuer(side, server.url) for side in SIDES}
        for i in range(args.rounds):
            for side in SIDES:
                run = drain(side, args.n, server, enqueue[side])
                runs.append(run)
                print(f"round {i + 1} {side:9s} {run.rate:6.0f} jobs/s ({run.seconds:.2f} s)", flush=True)
        counted = {side: drain(side, args.count_n, server, enqueue[side], count=True) for side in SIDES}
        report(runs, counted)


if __name__ == "__main__":
    main()
