"""How long a SIGKILLed worker's in-flight jobs take to run again on another worker.

Stalwart (defaults: recovery 20 s) next to plain Celery with the same late-ack settings, each on
a fresh embedded Redis. Plain Celery waits out kombu's visibility_timeout (3600 s by default),
so it is measured up to ``--plain-cap`` seconds and reported as "> cap" when it has not recovered.
Last line: ``recovery_seconds <stalwart figure>``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import celery
import redis

from stalwart.dev.embedded import RedisServer
from stalwart.testing import WorkerProcess, wait_until

JOBS = 2
JOB_SECONDS = 8.0


def run_once(label: str, app_module: str, env: dict[str, str], url: str, cap: float,
             send: Callable[[str, float], object]) -> float | None:
    """Seconds from the SIGKILL until every in-flight job started again elsewhere (None: > cap)."""
    client = redis.Redis.from_url(url)
    victim = WorkerProcess(env, app=app_module, concurrency=JOBS, name=f"{label}-victim").start()
    keys = [f"{label}{i}" for i in range(JOBS)]
    try:
        for key in keys:
            send(key, JOB_SECONDS)
        wait_until(lambda: all(client.get(f"starts:{k}") == b"1" for k in keys), 60, 0.05)
        rescuer = WorkerProcess(env, app=app_module, concurrency=JOBS, name=f"{label}-rescuer").start()
        victim.kill()
        killed = time.monotonic()
        try:
            wait_until(lambda: all(int(client.get(f"starts:{k}") or 0) >= 2 for k in keys), cap, 0.05)
        except TimeoutError:
            return None
        finally:
            rescuer.stop(timeout=JOB_SECONDS + 5)
        return time.monotonic() - killed
    finally:
        victim.kill()


def stalwart_figure(cap: float) -> float | None:
    with RedisServer() as server:
        env = {"STALWART_REDIS_URL": server.url, "BENCH_REDIS_URL": server.url,
               "STALWART_TASK_MODULES": "bench.recovery_jobs"}
        from stalwart.app import Stalwart  # noqa: PLC0415 - after the env is known
        from stalwart.settings import Settings  # noqa: PLC0415

        app = Stalwart("bench", settings=Settings.from_env(env))
        return run_once("stalwart", "workers.app", env, server.url, cap,
                        lambda k, s: app.send_task("bench.record", (k, s)))


def plain_figure(cap: float) -> float | None:
    with RedisServer() as server:
        env = {"BENCH_REDIS_URL": server.url}
        app = celery.Celery("plain-client", broker=server.url)
        return run_once("plain", "bench.plain_recovery_app", env, server.url, cap,
                        lambda k, s: app.send_task("bench.record", (k, s)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--plain-cap", type=float, default=90.0)
    parser.add_argument("--skip-plain", action="store_true")
    opts = parser.parse_args()
    ours = stalwart_figure(cap=120)
    print(f"stalwart (recovery_seconds=20, visibility_timeout 15 s): "
          f"{'> 120' if ours is None else f'{ours:.1f}'} s until the killed jobs ran again")
    if not opts.skip_plain:
        plain = plain_figure(opts.plain_cap)
        shown = f"> {opts.plain_cap:.0f} s (visibility_timeout 3600 s)" if plain is None else f"{plain:.1f} s"
        print(f"plain celery (acks_late, reject_on_worker_lost): {shown}")
    print(f"recovery_seconds {'inf' if ours is None else f'{ours:.1f}'}")


if __name__ == "__main__":
    main()
