"""Debounce across a restart of the state store (issue 12 red team, brought in).

Guarantee: a debounced burst survives a state-store restart (kill redis-server, restart empty on
the same port): its trigger carries the burst's call as last known when it was sent, and runs it
under the burst's task id when the burst is gone. A stale copy of a trigger whose burst already
ran publishes nothing, or a duplicate the envelope does not run again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import redis

from stalwart.app import Stalwart
from stalwart.dev.embedded import RedisServer
from stalwart.enqueue import debounce
from stalwart.testing import WorkerProcess, wait_until
from tests.integration.jobs_flow_adversarial import ENV, JOBS, make_app, runs

pytestmark = pytest.mark.integration


@pytest.fixture
def state_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.cleanup()


@pytest.fixture
def flow_app(worker_env: dict[str, str]) -> Stalwart:
    return make_app(worker_env)


def test_a_state_store_restart_before_the_burst_is_due_runs_the_call_its_trigger_carried(
    state_server: RedisServer, redis_url: str, worker_env: dict[str, str],
    make_worker: Callable[..., WorkerProcess], r: redis.Redis,
) -> None:
    env = {**worker_env, **ENV, "STALWART_REDIS_URL": state_server.url, "CELERY_BROKER_URL": redis_url,
           "FLOW_RECORD_URL": redis_url}  # effects are recorded on the broker redis (not restarted)
    app = make_app(env)
    make_worker(env=env, concurrency=1)
    first = app.send_task(f"{JOBS}.bounce", args=["rs", 1])
    second = app.send_task(f"{JOBS}.bounce", args=["rs", 2])
    assert first.id == second.id
    # The burst is due 1 s after the last enqueue; restart the state store well before that.
    port = state_server.port
    state_server.stop(kill=True)
    state_server.process = RedisServer(port=port, directory=state_server.directory).start().process
    wait_until(lambda: runs(r, "rs"), 20, 0.1, message="the burst's call was lost with the state store")
    # The trigger was sent by the burst's opening enqueue: it carries that call (n=1); the later
    # one (n=2) was only in the lost store.
    assert [(x["id"], x["n"]) for x in runs(r, "rs")] == [(first.id, 1)]
    after = app.send_task(f"{JOBS}.bounce", args=["rs", 3])  # the key works on the fresh store
    assert after.id != first.id
    wait_until(lambda: len(runs(r, "rs")) == 2, 20, 0.1, message="a burst on the fresh store did not run")
    assert [(x["id"], x["n"]) for x in runs(r, "rs")] == [(first.id, 1), (after.id, 3)]


def test_a_stale_trigger_of_a_burst_that_ran_does_not_run_it_again(
    flow_app: Stalwart, make_worker: Callable[..., WorkerProcess], r: redis.Redis
) -> None:
    worker = make_worker(env=ENV, concurrency=1)
    older = flow_app.send_task(f"{JOBS}.bounce", args=["stale", 1]).id
    wait_until(lambda: len(runs(r, "stale")) == 1, 20, 0.1, message="the first burst did not run")
    last = flow_app.send_task(f"{JOBS}.bounce", args=["stale", 2]).id
    wait_until(lambda: len(runs(r, "stale")) == 2, 20, 0.1, message="the second burst did not run")
    # Late copies of both triggers (a redelivery, a re-armed one), each carrying its burst's call:
    # each finds no trace of its burst and publishes its call again under the burst's id (a
    # duplicate, like after a state-store loss): the envelope finds that job done and skips it.
    for burst, n in ((last, 2), (older, 1)):
        call = debounce.encode_call(("stale", n), {}, {})
        flow_app.send_task(debounce.TRIGGER_TASK, args=[f"{JOBS}.bounce", "stale", burst,
                                                        debounce.carried(call, None)])
    wait_until(lambda: r.llen("celery") == 0 and r.hlen("unacked") == 0
               and not any(r.zcard(k) for k in r.scan_iter("stalwart:{delayed:*") if r.type(k) == b"zset"),
               20, 0.1, message="the stale triggers were not consumed")
    log = worker.log()
    for burst in (older, last):
        assert log.count(f"burst {burst} not in the state store") == 1
        assert log.count(f"bounce[{burst}] received") == 2  # published again, delivered, not run again
    assert [(x["id"], x["n"]) for x in runs(r, "stale")] == [(older, 1), (last, 2)]
