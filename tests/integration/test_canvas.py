"""Celery's canvas through Stalwart's envelope, on real workers and a real redis-server.

Every case counts effects: each task body commits ``effect:<tag>`` with ``stalwart.commit`` and
counts its starts apart (``tests/integration/jobs_canvas.py``). A case waits until the broker is
quiet (no queued, delayed or unacknowledged message: callbacks, chain steps, errbacks and retries
are all published before the message that caused them is acknowledged, so nothing is left that
could run), then asserts every count exactly.

Stalwart configures no result backend (Celery's ``DisabledBackend``): results flow along chains
and into ``link`` callbacks as messages, and a job's result is kept on its job hash, but
``AsyncResult.get()`` and ``GroupResult.get()`` raise at once, and a ``chord`` is refused at
enqueue with ``NotImplementedError`` before any of its jobs is published (never a silent hang).
With a Redis result backend set through Celery's ``CELERY_RESULT_BACKEND``, ``get()`` returns the
values and a chord calls back once with every result, a retried member and a duplicated one
included (Celery's Redis backend counts a chord part once per task id).

Duplicates are made as a broker would deliver them: a copy of a queued message under a new
delivery tag, or the same task id and header generation published again.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import pytest
import redis
from celery import chain, chord, group

from stalwart.app import Stalwart
from stalwart.job.header import HEADER, Meta
from stalwart.settings import Settings
from stalwart.store.jobs import job_key
from stalwart.testing import WorkerProcess, wait_until
from tests.integration.reliability import counts

pytestmark = pytest.mark.integration
MODULES = "tests.integration.jobs_canvas"
# tasks.examples (always loaded by workers.app) declares time limits the threads/solo pools cannot enforce
ENV = {"STALWART_TASK_MODULES": MODULES, "STALWART_UNENFORCED_TIME_LIMITS": "warn"}
POOLS = {"prefork": 1, "threads": 2, "solo": 1}
T = "tests.integration.jobs_canvas."
PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")  # kombu's lists per priority step


@pytest.fixture
def capp(worker_env: dict[str, str]) -> Any:
    application = Stalwart("tests", settings=Settings.from_env({**worker_env, **ENV}), include=[MODULES])
    application.loader.import_default_modules()
    return application


def task(capp: Any, name: str) -> Any:
    return capp.tasks[T + name]


def worker(make_worker: Callable[..., WorkerProcess], pool: str = "prefork", **kwargs: Any) -> WorkerProcess:
    return make_worker(env=ENV, pool=pool, concurrency=kwargs.pop("concurrency", POOLS[pool]), **kwargs)


def quiet(capp: Any, r: redis.Redis, queues: Iterable[str] = ("celery",)) -> bool:
    """No message queued (any priority), delayed or unacknowledged: nothing left that could run."""
    queues = list(queues)
    queued = sum(r.llen(q + suffix) for q in queues for suffix in PRIORITY_SUFFIXES)
    delayed = sum(r.zcard(capp.stalwart.keys.delayed(q)) for q in queues)
    return queued == 0 and delayed == 0 and r.hlen("unacked") == 0


def settle(capp: Any, r: redis.Redis, done: dict[str, int], queues: Iterable[str] = ("celery",),
           timeout: float = 90) -> None:
    """Wait until every effect in ``done`` reached its count and the broker is quiet."""
    def check() -> bool:
        reached = all(v >= n for v, n in zip(counts(r, "effect", done).values(), done.values(), strict=True))
        return reached and quiet(capp, r, queues)

    wait_until(check, timeout, 0.1, message=f"effects {counts(r, 'effect', done)} never reached {done}")


def seen(r: redis.Redis, tag: str) -> list[Any]:
    """The values the committed runs of ``tag`` received, in order."""
    return [json.loads(v) for v in r.lrange(f"seen:{tag}", 0, -1)]


def stored_result(capp: Any, task_id: str) -> Any:
    """The result Stalwart stored on a done job's hash (there is no result backend)."""
    key = capp.stalwart.jobs.hash_key(job_key(None, task_id))
    state, result = capp.stalwart.redis.hmget(key, ["state", "result"])
    assert state == b"done", f"job {task_id} is {state!r}, not done"
    return json.loads(result)["v"]


def node_name(hostname: Any) -> str:
    """``w1234@host`` (as a task saw it) -> ``w1234``."""
    return str(hostname.decode() if isinstance(hostname, bytes) else hostname).split("@")[0]


def dead_letters(capp: Any) -> list[tuple[str | None, str | None, str]]:
    return sorted((e.task, e.task_id, e.reason) for e in capp.stalwart.dlq.iter())


# -- 1. chain ---------------------------------------------------------------------------------


@pytest.mark.parametrize("pool", list(POOLS))
def test_a_chain_runs_each_step_once_and_passes_results_on(
    pool: str, capp: Any, r: redis.Redis, make_worker: Callable[..., WorkerProcess]
) -> None:
    worker(make_worker, pool)
    step = task(capp, "cv_step")
    res: Any = chain(step.s(1, tag="a"), step.s(tag="b"), step.s(tag="c")).apply_async()
    settle(capp, r, {"c": 1})
    assert counts(r, "effect", "abc") == {"a": 1, "b": 1, "c": 1}
    assert counts(r, "starts", "abc") == {"a": 1, "b": 1, "c": 1}
    assert [seen(r, t) for t in "abc"] == [[1], [2], [3]], "results did not flow along the chain"
    assert stored_result(capp, res.id) == 4
    assert stored_result(capp, res.parent.id) == 3
    assert stored_result(capp, res.parent.parent.id) == 2


@pytest.mark.parametrize("pool", list(POOLS))
def test_a_chain_step_that_retries_once_runs_twice_and_the_chain_goes_on_once(
    pool: str, capp: Any, r: redis.Redis, make_worker: Callable[..., WorkerProcess]
) -> None:
    worker(make_worker, pool)
    step, retrying = task(capp, "cv_step"), task(capp, "cv_retry_step")
    res = chain(step.s(1, tag="a"), retrying.s(tag="r"), step.s(tag="c")).apply_async()
    settle(capp, r, {"c": 1})
    assert counts(r, "starts", "arc") == {"a": 1, "r": 2, "c": 1}, "the retried step's body must run twice"
    assert counts(r, "effect", "arc") == {"a": 1, "r": 1, "c": 1}
    assert [seen(r, t) for t in "arc"] == [[1], [2], [3]]
    assert stored_result(capp, res.id) == 4
    assert dead_letters(capp) == []


# -- 2 and 3. group and chord (no result backend) ---------------------------------------------


def test_a_group_of_20_runs_each_job_once_and_its_results_cannot_be_fetched(
    capp: Any, r: redis.Redis, make_worker: Callable[..., WorkerProcess]
) -> None:
    worker(make_worker, "prefork", concurrency=2)
    step = task(capp, "cv_step")
    tags = [f"g{i}" for i in range(20)]
    gres: Any = group(step.s(i, tag=t) for i, t in enumerate(tags)).apply_async()
    settle(capp, r, dict.fromkeys(tags, 1))
    assert counts(r, "effect", tags) == dict.fromkeys(tags, 1)
    assert counts(r, "starts", tags) == dict.fromkeys(tags, 1)
    assert [stored_result(capp, child.id) for child in gres.results] == [i + 1 for i in range(20)]
    # no result backend: GroupResult.get() raises at once instead of waiting for ever
    assert capp.conf.result_backend is None
    with pytest.raises(NotImplementedError, match="No result backend is configured"):
        gres.get(timeout=30)


def test_a_chord_is_refused_at_enqueue_and_publishes_nothing(
    capp: Any, r: redis.Redis, make_worker: Callable[..., WorkerProcess]
) -> None:
    worker(make_worker, "prefork")
    step, collect = task(capp, "cv_step"), task(capp, "cv_collect")
    tags = [f"h{i}" for i in range(5)]
    with pytest.raises(NotImplementedError, match="Starting chords requires a result backend"):
        chord([step.s(i, tag=t) for i, t in enumerate(tags)], collect.s(tag="body")).apply_async()
    # a group chained into a task is a chord too
    with pytest.raises(NotImplementedError, match="Starting chords requires a result backend"):
        chain(group(step.s(i, tag=t) for i, t in enumerate(tags)), collect.s(tag="body")).apply_async()
    # a job sent after the refusals runs; by then nothing of the chords was queued or ran
    step.delay(0, tag="after")
    settle(capp, r, {"after": 1})
    assert counts(r, "starts", [*tags, "body", "after"]) == {**dict.fromkeys(tags, 0), "body": 0, "after": 1}


def test_asyncresult_get_fails_at_once_without_a_result_backend(
    capp: Any, r: redis.Redis, make_worker: Callable[..., WorkerProcess]
) -> None:
    """Celery's DisabledBackend: the chain's last result cannot be waited for (it raises, it does
    not hang); the value is on the job hash."""
    worker(make_worker, "prefork")
    step = task(capp, "cv_step")
    res = chain(step.s(1, tag="a"), step.s(tag="b")).apply_async()
    with pytest.raises((NotImplementedError, AttributeError)):
        res.get(timeout=30)
    settle(capp, r, {"b": 1})
    assert stored_result(capp, res.id) == 3


# -- 3. chord, with a result backend the deployment configures ------------------------------------
# Stalwart sets none, but leaves Celery's CELERY_RESULT_BACKEND alone: with a Redis backend the
# canvas's results can be waited for, and a chord runs its callback once with every result.


@pytest.fixture
def backend_env(redis_url: str) -> dict[str, str]:
    return {**ENV, "CELERY_RESULT_BACKEND": redis_url}


@pytest.fixture
def bapp(worker_env: dict[str, str], redis_url: str) -> Any:
    application = Stalwart(
        "tests", settings=Settings.from_env({**worker_env, **ENV}), include=[MODULES], backend=redis_url
    )
    application.loader.import_default_modules()
    return application


def chord_of_six(bapp: Any) -> Any:
    """Five plain members and one that retries once, into cv_collect (tag ``body``)."""
    step, retrying, collect = (task(bapp, n) for n in ("cv_step", "cv_retry_step", "cv_collect"))
    header = [step.s(i, tag=f"h{i}") for i in range(5)] + [retrying.s(10, tag="hr")]
    return chord(header, collect.s(tag="body"))


def test_with_a_result_backend_a_chord_calls_back_once_with_every_result(
    bapp: Any, backend_env: dict[str, str], r: redis.Redis, make_worker: Callable[..., WorkerProcess]
) -> None:
    make_worker(env=backend_env, concurrency=2)
    members = [f"h{i}" for i in range(5)] + ["hr"]
    res = chord_of_six(bapp).apply_async()
    assert res.get(timeout=90) == [1, 2, 3, 4, 5, 11]
    settle(bapp, r, {"body": 1})
    assert counts(r, "effect", [*members, "body"]) == dict.fromkeys([*members, "body"], 1)
    assert counts(r, "starts", ["hr", "body"]) == {"hr": 2, "body": 1}
    assert seen(r, "body") == [[1, 2, 3, 4, 5, 11]]
    step = task(bapp, "cv_step")
    assert chain(step.s(1, tag="a"), step.s(tag="b")).apply_async().get(timeout=90) == 3
    assert group(step.s(i, tag=f"g{i}") for i in range(4)).apply_async().get(timeout=90) == [1, 2, 3, 4]


def test_with_a_result_backend_a_duplicate_chord_member_does_not_fire_the_callback_early(
    bapp: Any, backend_env: dict[str, str], r: redis.Redis, make_worker: Callable[..., WorkerProcess]
) -> None:
    """A copy of the first member's message (a new delivery tag) is taken first, so the member is
    done when its original arrives: that delivery returns the stored result and Celery counts the
    part again; the callback must still wait for every other member."""
    chord_of_six(bapp).apply_async()
    items = r.lrange("celery", 0, -1)
    first = json.loads(items[-1])  # taken next: kombu takes from the right
    first["properties"]["delivery_tag"] = str(uuid.uuid4())
    r.rpush("celery", json.dumps(first))
    w = make_worker(env=backend_env, concurrency=1)
    settle(bapp, r, {"body": 1})
    assert w.log().count(f"[{first['headers']['id']}] succeeded") == 2, "the copy was not delivered"
    members = [f"h{i}" for i in range(5)] + ["hr"]
    assert counts(r, "effect", [*members, "body"]) == dict.fromkeys([*members, "body"], 1)
    assert seen(r, "body") == [[1, 2, 3, 4, 5, 11]]


@pytest.mark.filterwarnings("ignore:task_allow_error_cb_on_chord_header")  # Celery's note on chord errbacks
def test_with_a_result_backend_a_chord_whose_member_fails_permanently_runs_its_errback_once(
    bapp: Any, backend_env: dict[str, str], r: redis.Redis, make_worker: Callable[..., WorkerProcess]
) -> None:
    make_worker(env=backend_env, concurrency=1)
    step, collect, mark = (task(bapp, n) for n in ("cv_step", "cv_collect", "cv_mark"))
    header = [step.s(0, tag="h0"), task(bapp, "cv_permanent").s("p"), step.s(2, tag="h2")]
    flow = chord(header, collect.s(tag="body"))
    flow.link_error(mark.si("err"))
    flow.apply_async()
    settle(bapp, r, {"err": 1, "h0": 1, "h2": 1})
    assert counts(r, "starts", ["h0", "p", "h2", "body", "err"]) == {"h0": 1, "p": 1, "h2": 1, "body": 0, "err": 1}
    assert counts(r, "effect", ["body", "err"]) == {"body": 0, "err": 1}
    assert [(name, reason) for name, _, reason in dead_letters(bapp)] == [(T + "cv_permanent", "permanent")]


# -- 4. link_error --------------------------------------------------------------------------------


@pytest.mark.parametrize("pool", list(POOLS))
def test_a_permanent_failure_runs_its_errback_once_and_is_dead_lettered_once(
    pool: str, capp: Any, r: redis.Redis, make_worker: Callable[..., WorkerProcess]
) -> None:
    worker(make_worker, pool)
    mark = task(capp, "cv_mark")
    res = task(capp, "cv_permanent").apply_async(("p",), link_error=mark.si("err"), link=mark.si("ok"))
    settle(capp, r, {"err": 1})
    assert counts(r, "starts", ["p", "err", "ok"]) == {"p": 1, "err": 1, "ok": 0}
    assert counts(r, "effect", ["err", "ok"]) == {"err": 1, "ok": 0}
    assert dead_letters(capp) == [(T + "cv_permanent", res.id, "permanent")]


@pytest.mark.parametrize("pool", list(POOLS))
@pytest.mark.parametrize("name", ["cv_exhaust", "cv_flaky"])
def test_exhausted_retries_run_the_errback_once_not_once_per_attempt(
    name: str, pool: str, capp: Any, r: redis.Redis, make_worker: Callable[..., WorkerProcess]
) -> None:
    """cv_exhaust calls self.retry() each time, cv_flaky raises a transient error each time."""
    worker(make_worker, pool)
    mark = task(capp, "cv_mark")
    res = task(capp, name).apply_async(("x",), link_error=mark.si("err"), link=mark.si("ok"))
    settle(capp, r, {"err": 1})
    assert counts(r, "starts", ["x", "err", "ok"]) == {"x": 3, "err": 1, "ok": 0}
    assert counts(r, "effect", ["err", "ok"]) == {"err": 1, "ok": 0}
    assert dead_letters(capp) == [(T + name, res.id, "exhausted")]


def test_a_failing_chain_step_runs_the_chains_errback_once_and_stops_the_chain(
    capp: Any, r: redis.Redis, make_worker: Callable[..., WorkerProcess]
) -> None:
    worker(make_worker, "prefork")
    step, mark = task(capp, "cv_step"), task(capp, "cv_mark")
    flow = chain(step.s(1, tag="a"), task(capp, "cv_flaky").si("x"), step.s(tag="c"))
    flow.on_error(mark.si("err"))
    flow.apply_async()
    settle(capp, r, {"err": 1})
    assert counts(r, "starts", ["a", "x", "c", "err"]) == {"a": 1, "x": 3, "c": 0, "err": 1}
    assert counts(r, "effect", ["a", "c", "err"]) == {"a": 1, "c": 0, "err": 1}
    assert [reason for _, _, reason in dead_letters(capp)] == ["exhausted"]


# -- 5. link ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("pool", list(POOLS))
def test_a_link_callback_runs_once_even_when_the_done_message_is_delivered_again(
    pool: str, capp: Any, r: redis.Redis, make_worker: Callable[..., WorkerProcess]
) -> None:
    w = worker(make_worker, pool)
    step, mark = task(capp, "cv_step"), task(capp, "cv_mark")
    links = [step.s(tag="cb"), mark.si("cb-imm")]  # one takes the result, one is immutable
    res = step.apply_async((1,), {"tag": "a"}, link=links)
    settle(capp, r, {"cb": 1, "cb-imm": 1})
    # the same message again (same task id, header generation 0): a duplicate publish or a copy
    # restored after a connection blip
    capp.send_task(T + "cv_step", (1,), {"tag": "a"}, task_id=res.id, link=links,
                   headers={HEADER: Meta().to_header()}, stalwart_successor=True)
    wait_until(lambda: w.log().count(f"cv_step[{res.id}] succeeded") == 2, 60,
               message="the duplicate was never run through the envelope")
    settle(capp, r, {"cb": 1, "cb-imm": 1})
    assert counts(r, "starts", ["a", "cb", "cb-imm"]) == {"a": 1, "cb": 1, "cb-imm": 1}
    assert counts(r, "effect", ["a", "cb", "cb-imm"]) == {"a": 1, "cb": 1, "cb-imm": 1}
    assert seen(r, "cb") == [2], "the callback did not get the linked job's result"


@pytest.mark.parametrize("pool", list(POOLS))
def test_a_duplicate_of_a_chain_step_does_not_run_the_rest_of_the_chain_again(
    pool: str, capp: Any, r: redis.Redis, make_worker: Callable[..., WorkerProcess]
) -> None:
    """A copy of the first step's message (a new delivery tag) is taken first; the original then
    finds the step done."""
    step = task(capp, "cv_step")
    res: Any = chain(step.s(1, tag="a"), step.s(tag="b"), step.s(tag="c")).apply_async()
    first = json.loads(r.lrange("celery", -1, -1)[0])  # taken next: kombu takes from the right
    first["properties"]["delivery_tag"] = str(uuid.uuid4())
    r.rpush("celery", json.dumps(first))
    w = worker(make_worker, pool)
    settle(capp, r, {"c": 1})
    wait_until(lambda: w.log().count(f"[{first['headers']['id']}] succeeded") == 2, 60,
               message="the copy was not delivered")
    settle(capp, r, {"c": 1})
    assert counts(r, "starts", "abc") == {"a": 1, "b": 1, "c": 1}
    assert counts(r, "effect", "abc") == {"a": 1, "b": 1, "c": 1}
    assert stored_result(capp, res.id) == 4


# -- 7. queues and priorities -----------------------------------------------------------------------


def test_a_chain_across_two_queues_with_priorities_runs_each_step_once_on_its_queue(
    capp: Any, r: redis.Redis, make_worker: Callable[..., WorkerProcess]
) -> None:
    wa = worker(make_worker, "prefork", queues="qa", name="wqa")
    wb = worker(make_worker, "prefork", queues="qb", name="wqb")
    step = task(capp, "cv_step")
    flow = chain(
        step.s(1, tag="a").set(queue="qa", priority=9),
        step.s(tag="b").set(queue="qb", priority=0),
        step.s(tag="c").set(queue="qa", priority=5),
        step.s(tag="d").set(queue="qb", priority=9),
    )
    res = flow.apply_async()
    settle(capp, r, {"d": 1}, queues=("qa", "qb", "celery"))
    assert counts(r, "effect", "abcd") == dict.fromkeys("abcd", 1)
    assert counts(r, "starts", "abcd") == dict.fromkeys("abcd", 1)
    assert [seen(r, t) for t in "abcd"] == [[1], [2], [3], [4]]
    hosts = {t: [node_name(h) for h in r.lrange(f"host:{t}", 0, -1)] for t in "abcd"}
    assert hosts == {"a": [wa.name], "b": [wb.name], "c": [wa.name], "d": [wb.name]}
    assert stored_result(capp, res.id) == 5


# -- 8. a worker killed in the middle of a chain step -------------------------------------------------


@pytest.mark.parametrize("pool", list(POOLS))
def test_a_chain_whose_worker_is_killed_mid_step_completes_with_each_effect_once(
    pool: str, capp: Any, r: redis.Redis, make_worker: Callable[..., WorkerProcess]
) -> None:
    victim = worker(make_worker, pool)
    step = task(capp, "cv_step")
    res = chain(step.s(1, tag="a"), step.s(tag="b", sleep=120), step.s(tag="c")).apply_async()
    wait_until(lambda: r.get("sleeping:b"), 60, message="step b never started")
    victim.kill()
    worker(make_worker, pool)
    settle(capp, r, {"c": 1}, timeout=120)
    assert counts(r, "starts", "abc") == {"a": 1, "b": 2, "c": 1}, "step b should have started again"
    assert counts(r, "effect", "abc") == {"a": 1, "b": 1, "c": 1}
    assert [seen(r, t) for t in "abc"] == [[1], [2], [3]]
    assert stored_result(capp, res.id) == 4
    assert dead_letters(capp) == []
