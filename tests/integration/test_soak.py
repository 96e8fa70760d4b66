"""A soak: minutes of mixed traffic, then every key Stalwart left in Redis is accounted for.

Two workers (prefork, children recycled every 10 jobs, ops port on so Prometheus files are
written) take successes, retries, dead jobs, deferrals on limits and breakers with names made at
run time, and a task paused then resumed, while one worker at a time is SIGKILLed and started
again. State TTLs are short (20 s, still longer than a killed worker's jobs take to come back) and
the DLQ is capped at 40 entries, so the steady state comes within the test. Then:

* a ``SCAN`` of every key: each has a TTL, or matches a structure whose cap is documented in the
  store layer (listed below, with where);
* the key count (but the test's own ``effect:*`` records) and ``used_memory``, sampled after the
  warm-up, stop growing;
* each live worker's Prometheus directory holds a bounded number of files;
* every successful job's effect happened exactly once.
"""

from __future__ import annotations

import base64
import itertools
import json
import random
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from stalwart.app import Stalwart
from stalwart.policies import switches
from stalwart.settings import Settings
from stalwart.testing import WorkerProcess, wait_until

from .reliability import counts

pytestmark = [pytest.mark.integration, pytest.mark.chaos]
MODULES = "tests.integration.jobs_soak"
TASKS = "tests.integration.jobs_soak."
SOAK_ENV = {
    "STALWART_TASK_MODULES": MODULES,
    # longer than a killed worker's jobs take to come back (recovery 6 s), or a done job would run again
    "STALWART_DONE_TTL": "20",
    "STALWART_IDEMPOTENCY_TTL": "20",
    "STALWART_DLQ_MAX_ENTRIES": "40",
    "STALWART_OPS_PORT": "0",
}
TRAFFIC_SECONDS = 80
WARM_UP_SECONDS = 35
MAX_METRICS_FILES = 8  # live children (2) and the main process, two per type, plus the two archives

# Keys without a TTL, and the documented cap that bounds each (no other key may lack a TTL).
CAPPED = [
    (r"celery", "the queue itself (kombu)"),
    (r"_kombu\.binding.*", "kombu's routing tables: one per exchange or queue"),
    (r"unacked(_index)?", "kombu's in-flight records: one per unacknowledged delivery"),
    (r"stalwart:\{broker\}:(fetches|quarantine)", "store/broker.py: FETCH_COUNTS_CAP, QUARANTINE_CAP"),
    (r"stalwart:\{delayed:.*\}", "store/delayed.py: jobs not yet due, drained by the movers"),
    (r"stalwart:\{registry\}:delayed", "store/delayed.py: one name per queue list"),
    (r"stalwart:\{dlq\}:.*", "store/dlq.py: STALWART_DLQ_MAX_ENTRIES / MAX_AGE, the 360-slot ring"),
    (r"stalwart:\{switches\}(:at)?", "store/switches.py: one field per operator switch"),
    (r"stalwart:\{parked\}:.*", "store/switches.py: the parked jobs of paused tasks, released on resume"),
]


def key_without_cap(key: str) -> bool:
    return not any(re.fullmatch(pattern, key) for pattern, _ in CAPPED)


def scan_untimed(r: redis.Redis) -> list[str]:
    """Every key with no TTL that no documented cap accounts for."""
    found = []
    for raw in r.scan_iter(count=1000):
        key = raw.decode(errors="replace")
        if r.pttl(raw) == -1 and key_without_cap(key) and not key.startswith(("effect:", "soak:")):
            found.append(key)
    return found


def metrics_files(worker: WorkerProcess) -> int:
    """The Prometheus multiprocess files of a live worker (its main process's directory)."""
    assert worker.process is not None
    dirs = list(Path(tempfile.gettempdir()).glob(f"stalwart-metrics-{worker.process.pid}-*"))
    return sum(len(list(d.glob("*.db"))) for d in dirs)


def census(r: redis.Redis) -> list[tuple[str, int]]:
    """Key counts by shape (digits and hex runs folded), largest first: what a failure shows."""
    shapes: dict[str, int] = {}
    for raw in r.scan_iter(count=1000):
        shape = re.sub(r"[0-9a-f]{6,}|\d+", "#", raw.decode(errors="replace"))
        shapes[shape] = shapes.get(shape, 0) + 1
    return sorted(shapes.items(), key=lambda kv: -kv[1])[:12]


def sample(r: redis.Redis) -> tuple[int, int]:
    """Keys (but the test's own effect:* records, one per job) and used_memory."""
    ours = sum(1 for _ in r.scan_iter(match="effect:*", count=1000))
    return int(r.dbsize()) - ours, int(r.info("memory")["used_memory"])


def test_soak_mixed_traffic_leaves_only_bounded_state(
    r: redis.Redis, worker_env: dict[str, str], make_worker: Callable[..., WorkerProcess]
) -> None:
    env = {**worker_env, **SOAK_ENV}
    app = Stalwart("soak", settings=Settings.from_env(env), include=[MODULES])
    app.loader.import_default_modules()
    workers = [make_worker(env=SOAK_ENV, extra_args=["--max-tasks-per-child=10"], start=False) for _ in range(2)]
    for w in workers:
        w.start(wait=False)
    for w in workers:
        w.wait_ready()
    rng, serial, ok_keys = random.Random(10), itertools.count(), []
    samples: list[tuple[float, int, int]] = []
    started = time.monotonic()
    next_kill = started + 12
    while (elapsed := time.monotonic() - started) < TRAFFIC_SECONDS:
        ok_keys += traffic(app, rng, serial)
        if 20 <= elapsed < 21 and not switches.read(r, app.stalwart.keys):
            switches.set_switch(r, app.stalwart.keys, TASKS + "doomed", "paused")
        if 40 <= elapsed < 41 and switches.read(r, app.stalwart.keys):
            switches.clear(r, app.stalwart.keys, TASKS + "doomed")
        if time.monotonic() >= next_kill:
            victim = rng.choice(workers)
            victim.kill()
            victim.start(wait=False)
            next_kill += 15
        if elapsed >= WARM_UP_SECONDS:
            samples.append((elapsed, *sample(r)))
        time.sleep(max(0.0, 1.0 - (time.monotonic() - started - elapsed)))
    for w in workers:
        if not w.alive:
            w.start()
    try:
        wait_until(lambda: set(counts(r, "effect", ok_keys).values()) == {1}, 120, 0.5)
    except TimeoutError:
        pytest.fail(diagnose(app, r, ok_keys, workers))
    drained(app, r)
    assert_bounded(r, workers, samples)


def traffic(app: Any, rng: random.Random, serial: Any) -> list[str]:
    """One second's worth: ~25 jobs of every kind; the keys of those that must succeed."""
    ok_keys = []
    jobs: list[tuple[str, list[Any]]] = []
    for _ in range(12):
        key = f"ok{next(serial)}"
        ok_keys.append(key)
        jobs.append(("ok", [key]))
    for _ in range(4):
        key = f"flaky{next(serial)}"
        ok_keys.append(key)
        jobs.append(("flaky", [key]))
    for _ in range(6):
        key = f"tenant{next(serial)}"
        ok_keys.append(key)
        jobs.append(("tenant_call", [key, rng.randrange(12)]))
    jobs += [("doomed", [f"doomed{next(serial)}"]) for _ in range(3)]
    for name, args in jobs:
        app.send_task(TASKS + name, args=args)
    return ok_keys


def diagnose(app: Any, r: redis.Redis, ok_keys: list[str], workers: list[WorkerProcess]) -> str:
    wrong = {k: n for k, n in counts(r, "effect", ok_keys).items() if n != 1}
    states = {}
    for key in list(wrong)[:10]:
        task = "ok" if key.startswith("ok") else "flaky" if key.startswith("flaky") else "tenant_call"
        states[key] = r.hgetall(app.stalwart.keys.job(f"k:{TASKS}{task}:{key}"))
    in_flight = []
    for tag, raw in r.hgetall("unacked").items():
        try:
            message = json.loads(raw)[0]
            task_id = message["headers"]["id"]
            body = json.loads(base64.b64decode(message["body"]))
        except (ValueError, KeyError, TypeError):
            in_flight.append((tag, "unreadable"))
            continue
        lines = [ln[:400] for w in workers for ln in w.log().splitlines() if task_id in ln]
        in_flight.append((tag, body[0], r.zscore("unacked_index", tag), r.time(), lines[-8:]))
    return (f"{len(wrong)} of {len(ok_keys)} successful jobs not run exactly once: {dict(list(wrong.items())[:10])}; "
            f"in flight {in_flight}; "
            f"states {states}; queued {r.llen('celery')}, unacked {r.hlen('unacked')}, "
            f"delayed {r.zcard(app.stalwart.keys.delayed('celery'))}, dlq {app.stalwart.dlq.stats()['by_reason']}, "
            f"workers alive {[w.alive for w in workers]}")


def drained(app: Any, r: redis.Redis) -> None:
    """Nothing queued, delayed, parked or in flight any more."""
    def empty() -> bool:
        delayed = app.stalwart.keys.delayed("celery")
        return (r.llen("celery") == 0 and r.zcard(delayed) == 0 and r.hlen("unacked") == 0
                and not switches.parked_counts(r, app.stalwart.keys))
    wait_until(empty, 60, 0.5, message="the queues did not drain")


def assert_bounded(r: redis.Redis, workers: list[WorkerProcess], samples: list[tuple[float, int, int]]) -> None:
    untimed = scan_untimed(r)
    assert not untimed, f"keys with neither a TTL nor a documented cap: {untimed[:20]}"
    half = len(samples) // 2
    early, late = samples[:half], samples[half:]
    keys_early, keys_late = max(s[1] for s in early), max(s[1] for s in late)
    mem_early, mem_late = max(s[2] for s in early), max(s[2] for s in late)
    print(f"soak: keys {keys_early} -> {keys_late}, used_memory {mem_early} -> {mem_late}, "
          f"metrics files {[metrics_files(w) for w in workers]}")
    assert keys_late <= keys_early * 1.25, f"key count kept growing: {keys_early} -> {keys_late}: {census(r)}"
    assert mem_late <= mem_early * 1.25, f"used_memory kept growing: {mem_early} -> {mem_late}"
    for w in workers:
        assert metrics_files(w) <= MAX_METRICS_FILES, f"{w.name}: {metrics_files(w)} metrics files"
