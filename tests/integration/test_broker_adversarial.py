"""Red team, issue 9: the crash-loop guard against a message that ends the worker through Celery's
shutdown, a queue key of another type under the idle wait, and a replay's ``sent`` on one clock."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from stalwart.app import Stalwart
from stalwart.dlq.entry import DeadLetter
from stalwart.dlq.replay import Replayer
from stalwart.settings import Settings
from stalwart.testing import WorkerProcess, wait_until

pytestmark = pytest.mark.integration

MODULES = "tests.integration.jobs,tests.integration.jobs_fuzz,tests.integration.jobs_broker_adversarial"
ENV = {"STALWART_TASK_MODULES": MODULES, "STALWART_RECOVERY_SECONDS": "3"}
RECORD = "tests.integration.jobs.record"
SKEW = -60.0


def _app(worker_env: dict[str, str]) -> Stalwart:
    application = Stalwart("tests", settings=Settings.from_env({**worker_env, **ENV}), include=MODULES.split(","))
    application.loader.import_default_modules()
    return application


def _supervise(make_worker: Callable[..., WorkerProcess], done: Callable[[], bool], timeout: float,
               **kw: object) -> int:
    """Run one worker, restarting it whenever it dies (a supervisor), until ``done``; the crashes."""
    worker, crashes = make_worker(env=ENV, start=False, **kw).start(wait=False), 0

    def check() -> bool:
        nonlocal worker, crashes
        if not worker.alive:
            crashes += 1
            worker = make_worker(env=ENV, start=False, **kw).start(wait=False)
        return done()

    try:
        wait_until(check, timeout, 0.2)
    except TimeoutError:
        raise TimeoutError(f"not done after {timeout}s: {crashes} crashes") from None
    return crashes


def test_a_message_that_raises_systemexit_in_the_consumer_costs_at_most_max_fetches_crashes(
    r: redis.Redis, worker_env: dict[str, str], make_worker: Callable[..., WorkerProcess]
) -> None:
    """The process ends because of the message, but through Celery's warm shutdown, which hands it
    back: its receipt began and never finished, so that restore keeps its fetch count."""
    app = _app(worker_env)
    app.send_task("tests.integration.jobs_fuzz.record_any", task_id="rt-exit-1")
    crashes = 0

    def dead_lettered() -> bool:
        return any(e.task_id == "rt-exit-1" for e in app.stalwart.dlq.iter())

    try:
        crashes = _supervise(make_worker, dead_lettered, 30, concurrency=1)
    except TimeoutError as exc:
        pytest.fail(f"the SystemExit message was never quarantined: {exc}; fetch counts: "
                    f"{r.hgetall('stalwart:{broker}:fetches')}")
    assert crashes <= 3
    [entry] = [e for e in app.stalwart.dlq.iter() if e.task_id == "rt-exit-1"]
    assert entry.reason == "poison"


def _commands(r: redis.Redis) -> int:
    """Commands Redis ran, less the mover's SMEMBERS of its registry (20/s at the harness's
    STALWART_MOVER_INTERVAL=0.05, whatever the queues: with it an idle worker is ~31/s already)."""
    return sum(int(v["calls"]) for k, v in r.info("commandstats").items() if k != "cmdstat_smembers")


def test_a_queue_key_of_another_type_neither_wedges_nor_spins_the_worker(
    app: Stalwart, make_worker: Callable[..., WorkerProcess], r: redis.Redis
) -> None:
    """The fetch script skips a queue key that is not a list; the idle wait (BLMOVE) gets WRONGTYPE
    on it. The worker stays alive, keeps consuming its other queue and does not hammer Redis."""
    worker = make_worker(queues="broken,celery")
    r.hset("broken", "x", "1")  # after start: someone uses the queue's name for a hash
    app.send_task(RECORD, args=["before"], queue="celery")
    wait_until(lambda: r.get("effect:before") == b"1", 20, message="the celery queue is not consumed")
    before, t0 = _commands(r), time.monotonic()
    time.sleep(5)  # an idle window: the command rate, not a duration, is asserted
    rate = (_commands(r) - before) / (time.monotonic() - t0)
    app.send_task(RECORD, args=["after"], queue="celery")
    wait_until(lambda: r.get("effect:after") == b"1", 20, message="the celery queue stopped being consumed")
    assert worker.alive
    assert rate <= 30, f"an idle worker with a non-list queue key sends {rate:.0f} commands/s"


def _redis_ms(r: redis.Redis) -> int:
    seconds, micros = r.time()
    return int(seconds) * 1000 + int(micros) // 1000


@pytest.fixture
def behind(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process's clock runs 60 s behind (time.time only; monotonic is untouched)."""
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + SKEW)


def test_a_replay_from_a_console_whose_clock_is_behind_stamps_sent_on_the_redis_clock(
    redis_url: str, r: redis.Redis, behind: Any
) -> None:
    """The replayed message's ``sent`` (from which max_age becomes a deadline in the worker) is on
    the Redis clock, whatever the replaying process's clock says."""
    sender = Stalwart("rt-replay", settings=Settings.from_env({"STALWART_REDIS_URL": redis_url}))
    dead = DeadLetter(reason="exhausted", task="t.x", task_id="tid-skew", queue="celery", args=[1],
                      headers={"stalwart": {"msg": "m1", "gen": 1, "trace": "tr", "sent": _redis_ms(r) - 5000}},
                      options={})
    sender.stalwart.dlq.add(dead)
    assert Replayer(sender).replay_ids([dead.id]).replayed == [dead.id]
    [raw] = r.lrange("celery", 0, -1)
    header = json.loads(raw)["headers"]["stalwart"]
    drift = header["sent"] - _redis_ms(r)
    assert abs(drift) < 5000, f"the replayed message's sent is {drift / 1000:.1f}s off the Redis clock"
    assert "clock" not in header  # the transport moved it and dropped the marker
