"""Drain N no-op jobs through plain Celery and through the Stalwart envelope, side by side.

Both run in the same process tree on one fresh embedded redis-server (flushed between runs),
with the same worker settings (prefork, -c 2, prefetch 1, late acks, JSON, task events on, no
result backend). For each run all N jobs are enqueued first; a worker is then started and the
drain is timed from the first job leaving the queue to the queues and the ``unacked`` hash being
empty, polled the same way for both. Each round runs plain, Stalwart on one queue and Stalwart
consuming three queues (``-Q q1,q2,q3``, the jobs spread over them), in an order that turns
round by round; the ratios are the medians of the rounds' ratios. Round trips per job are
counted in a separate, untimed run of each side under MONITOR (``INFO commandstats`` would also
count the commands a Lua script runs inside one EVALSHA), minus the idle background rate
(heartbeats, fetch waits, the delayed-set mover), with a MULTI/EXEC block counted once. What an
idle worker costs Redis is counted the same way, over ten seconds, for a worker on three queues
(and on one, for reference).

Last lines: ``multi_queue_ratio <3 queues ÷ 1 queue>``, ``idle_redis_cmds_per_s <3 queues>``,
``ratio <envelope ÷ plain>``.
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
IDLE_SECONDS = 10.0
MULTI = ("q1", "q2", "q3")
SIDES = {
    "plain": ("bench.plain_app", "bench.plain.noop"),
    "stalwart": ("workers.app", "tasks.examples.noop"),
}
KINDS = {"plain": ("plain", (QUEUE,)), "stalwart": ("stalwart", (QUEUE,)), "stalwart-3q": ("stalwart", MULTI)}


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


def enqueuer(kind: str, url: str) -> Callable[[int], None]:
    """A function that publishes n no-op jobs the way an app of that side would, spread over the
    kind's queues."""
    side, queues = KINDS[kind]
    if side == "plain":
        os.environ["STALWART_REDIS_URL"] = url
        sys.path.insert(0, str(REPO_ROOT))
        plain = importlib.import_module("bench.plain_app").app
        return lambda n: [plain.send_task(SIDES[side][1]) for _ in range(n)] and None
    app = Stalwart("bench", settings=Settings.from_env({"STALWART_REDIS_URL": url}))
    return lambda n: [app.send_task(SIDES[side][1], queue=queues[i % len(queues)]) for i in range(n)] and None


def backlog(client: redis.Redis, queues: tuple[str, ...] = (QUEUE,)) -> int:
    """Jobs not yet finished: waiting in the queues plus delivered but unacked."""
    return sum(int(client.llen(q)) for q in queues) + int(client.hlen("unacked"))


def start_worker(kind: str, server: RedisServer, level: str = "WARNING") -> WorkerProcess:
    side, queues = KINDS[kind]
    worker = WorkerProcess(
        {"STALWART_REDIS_URL": server.url}, app=SIDES[side][0], concurrency=2,
        name=f"bench-{kind}", queues=",".join(queues), extra_args=["-l", level],
    )
    return worker.start(wait=False)


def drain(kind: str, n: int, server: RedisServer, enqueue: Callable[[int], None],
          count: bool = False) -> Run:
    """Enqueue n jobs, start a worker, time the drain (or count its commands), stop the worker."""
    queues = KINDS[kind][1]
    client = redis.Redis.from_url(server.url, single_connection_client=True)
    client.flushall()
    enqueue(n)
    wait_until(lambda: backlog(client, queues) == n, 30, 0.05, f"{kind}: {n} jobs not enqueued")
    tally = Tally(server.url, str(client.client_info()["addr"])).start() if count else None
    worker = start_worker(kind, server)
    try:
        while backlog(client, queues) == n and client.hlen("unacked") == 0:
            time.sleep(0.002)
        client.echo("begin:jobs")
        start = time.perf_counter()
        pids = (server.process.pid if server.process else 0, worker.process.pid if worker.process else 0)
        cpu_before = cpu_snapshot(*pids)
        while backlog(client, queues):
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
    return Run(kind, n, seconds, per_job, cpu_ms)


def idle_rate(kind: str, server: RedisServer, seconds: float = 10.0) -> tuple[float, Counter[str]]:
    """Commands per second an idle worker of ``kind`` sends Redis (Lua's own calls not counted)."""
    client = redis.Redis.from_url(server.url, single_connection_client=True)
    client.flushall()
    worker = start_worker(kind, server, level="INFO")  # INFO: its "ready." line tells when it has started
    try:
        worker.wait_ready()
        time.sleep(3)  # past start-up: connections made, first ticks done
        tally = Tally(server.url, str(client.client_info()["addr"])).start()
        client.echo("begin:idle")
        time.sleep(seconds)
        client.echo("end")
        client.echo("quit")
        tally.join()
    finally:
        worker.stop(timeout=30)
    commands = tally.windows.get("idle", Counter())
    return sum(commands.values()) / seconds, commands


def round_ratios(runs: list[Run], top: str, bottom: str) -> list[float]:
    """``top`` ÷ ``bottom`` rate in each round (runs alternate, one of each kind per round)."""
    tops, bottoms = [r.rate for r in runs if r.side == top], [r.rate for r in runs if r.side == bottom]
    return [t / b for t, b in zip(tops, bottoms, strict=True)]


def report(runs: list[Run], counted: dict[str, Run], idle: dict[str, tuple[float, Counter[str]]]) -> float:
    """Print each kind's rates, round trips per job, idle cost and the ratios; returns the ratio."""
    best = {s: max((r for r in runs if r.side == s), key=lambda r: r.rate) for s in KINDS}
    for side in KINDS:
        rates = [r.rate for r in runs if r.side == side]
        cpu = ", ".join(f"{k}={v:.2f}" for k, v in best[side].cpu_ms.items())
        print(f"{side:11s} best {best[side].rate:6.0f} jobs/s  median {statistics.median(rates):6.0f}"
              f"  runs {', '.join(f'{x:.0f}' for x in rates)}  cpu ms/job: {cpu}")
    for side, run in counted.items():
        calls = ", ".join(f"{k}={v:.2f}" for k, v in sorted(run.per_job.items()))
        print(f"{side:9s} round trips/job by command: {calls}")
    env, plain = counted["stalwart"], counted["plain"]
    extra = env.roundtrips - plain.roundtrips
    evalsha = sum(v for k, v in env.per_job.items() if k.startswith("evalsha"))
    print(f"roundtrips_per_job stalwart={env.roundtrips:.2f} plain={plain.roundtrips:.2f} "
          f"extra={extra:.2f} (evalsha/job={evalsha:.2f})")
    for kind, (rate, commands) in idle.items():
        calls = ", ".join(f"{k}={v / IDLE_SECONDS:.2f}" for k, v in sorted(commands.items()))
        print(f"idle {kind:11s} {rate:.2f} commands/s: {calls}")
    ratios, multi = round_ratios(runs, "stalwart", "plain"), round_ratios(runs, "stalwart-3q", "stalwart")
    print(f"rounds ratio {', '.join(f'{x:.2f}' for x in ratios)}; 3 queues ÷ 1 {', '.join(f'{x:.2f}' for x in multi)}")
    print(f"multi_queue_ratio {statistics.median(multi):.2f}")
    print(f"idle_redis_cmds_per_s {idle['stalwart-3q'][0]:.2f}")
    ratio = statistics.median(ratios)
    print(f"ratio {ratio:.2f}")
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=3000, help="jobs per timed run (3000)")
    parser.add_argument("--rounds", type=int, default=3, help="timed runs of each kind, alternated (3)")
    parser.add_argument("--count-n", type=int, default=300,
                        help="jobs in the untimed run that counts round trips under MONITOR (300)")
    args = parser.parse_args()
    runs: list[Run] = []
    with RedisServer() as server:
        enqueue = {kind: enqueuer(kind, server.url) for kind in KINDS}
        kinds = list(KINDS)
        for i in range(args.rounds):
            for kind in kinds[i % len(kinds):] + kinds[:i % len(kinds)]:  # each kind takes each slot in turn
                run = drain(kind, args.n, server, enqueue[kind])
                runs.append(run)
                print(f"round {i + 1} {kind:11s} {run.rate:6.0f} jobs/s ({run.seconds:.2f} s)", flush=True)
        counted = {side: drain(side, args.count_n, server, enqueue[side], count=True) for side in SIDES}
        idle = {kind: idle_rate(kind, server, IDLE_SECONDS) for kind in ("stalwart", "stalwart-3q")}
        report(runs, counted, idle)


if __name__ == "__main__":
    main()
