"""The metrics hook, multiprocess aggregation across forked processes, and scrape-time gauges."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest
import redis
from prometheus_client import CollectorRegistry, values
from prometheus_client.parser import text_string_to_metric_families

from stalwart.dev.embedded import free_port
from stalwart.dlq.entry import DeadLetter
from stalwart.job.context import JobContext, Outcome
from stalwart.job.header import Meta
from stalwart.ops import metrics
from stalwart.ops.metrics import MetricsHook, StateCollector
from stalwart.runtime import Runtime
from stalwart.settings import Settings


def ctx(task: str = "app.charge") -> JobContext:
    return JobContext(task_name=task, task_id="t1", queue="celery", args=(), kwargs={}, meta=Meta(),
                      attempt=1, hostname="h", job_key="t:t1")


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float | None:
    return samples(text).get((name, tuple(sorted(labels.items()))))


@pytest.fixture
def multiproc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Multiprocess mode in this test only: env and value class are restored afterwards."""
    monkeypatch.setattr(values, "ValueClass", values.ValueClass)
    monkeypatch.delenv(metrics.ENV_DIR, raising=False)
    path = metrics.enable_multiprocess(str(tmp_path))
    monkeypatch.setenv(metrics.ENV_DIR, str(path))
    return path


def test_hook_counts_outcomes_retries_deferrals_dead_letters_and_lost_workers() -> None:
    hook = MetricsHook()
    hook.after_job(ctx(), Outcome("succeeded", 0.2))
    hook.after_job(ctx(), Outcome("retried", 0.1))
    hook.on_retry(ctx(), ValueError("x"), 1.0)
    hook.on_defer(ctx(), "rate limit stripe-api", 0.5)
    hook.after_job(ctx(), Outcome("deferred", reason="rate limit stripe-api"))
    hook.on_dead_letter(DeadLetter(id="d", reason="malformed"), None)
    hook.on_worker_lost("app.charge", "t1", "worker lost", {})
    registry = CollectorRegistry()
    for name in ("jobs", "duration", "retries", "deferrals", "dead_letters", "worker_lost"):
        registry.register(getattr(hook.metrics, name))
    get = registry.get_sample_value
    assert get("stalwart_jobs_total", {"task": "app.charge", "outcome": "succeeded"}) == 1
    assert get("stalwart_jobs_total", {"task": "app.charge", "outcome": "deferred"}) == 1
    assert get("stalwart_job_duration_seconds_count", {"task": "app.charge"}) == 2  # not the deferral
    assert get("stalwart_retries_total", {"task": "app.charge"}) == 1
    assert get("stalwart_deferrals_total", {"task": "app.charge", "reason": "rate_limit"}) == 1
    assert get("stalwart_dead_letters_total", {"task": "-", "reason": "malformed"}) == 1
    assert get("stalwart_worker_lost_total", {"task": "app.charge"}) == 1


def _child(jobs: int) -> None:
    hook = MetricsHook()
    for _ in range(jobs):
        hook.after_job(ctx(), Outcome("succeeded", 0.01))
    os._exit(0)


def test_counts_from_forked_children_are_summed(multiproc: Path) -> None:
    hook = MetricsHook()
    hook.after_job(ctx(), Outcome("succeeded", 0.01))  # created before the fork, like the main process
    fork = multiprocessing.get_context("fork")
    children = [fork.Process(target=_child, args=(n,)) for n in (3, 4)]
    for child in children:
        child.start()
    for child in children:
        child.join(10)
        assert child.exitcode == 0
        metrics.mark_dead(child.pid or 0)
    text = metrics.exposition(multiproc).decode()
    assert value(text, "stalwart_jobs_total", task="app.charge", outcome="succeeded") == 8
    assert value(text, "stalwart_job_duration_seconds_count", task="app.charge") == 8


def test_enable_gives_a_fresh_directory_and_cleans_dead_workers_dirs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(values, "ValueClass", values.ValueClass)
    monkeypatch.delenv(metrics.ENV_DIR, raising=False)
    stale = tmp_path / f"{metrics.DIR_PREFIX}999999999-abc"
    stale.mkdir()
    live = tmp_path / f"{metrics.DIR_PREFIX}{os.getppid()}-abc"
    live.mkdir()
    path = metrics.enable_multiprocess(str(tmp_path))
    assert os.environ[metrics.ENV_DIR] == str(path)
    assert list(path.iterdir()) == []
    assert not stale.exists()
    assert live.exists()
    metrics.remove_dir(path)
    assert not path.exists()
    assert metrics.ENV_DIR not in os.environ


def runtime_for(url: str) -> Runtime:
    return Runtime(Settings.from_env({"STALWART_REDIS_URL": url, "STALWART_REDIS_TIMEOUT": "0.3"}))


def test_state_collector_reads_delayed_dlq_and_breakers(redis_url: str, r: redis.Redis) -> None:
    runtime = runtime_for(redis_url)
    keys = runtime.keys
    r.sadd(keys.registry("delayed"), "celery")
    r.zadd(keys.delayed("celery"), {"a": 1, "b": 2})
    runtime.dlq.add(DeadLetter(id="e1", reason="exhausted", task="app.t"))
    runtime.dlq.add(DeadLetter(id="e2", reason="poison", task="app.t"))
    for name in ("stripe", "mail"):
        runtime.limits.touch("breakers", name)
    r.hset(keys.breaker("stripe", "state"), mapping={"state": "open", "open_until": 1})
    text = metrics.exposition(None, StateCollector(runtime)).decode()
    assert value(text, "stalwart_state_store_up") == 1
    assert value(text, "stalwart_delayed_jobs", queue="celery") == 2
    assert value(text, "stalwart_dlq_size") == 2
    assert value(text, "stalwart_dlq_entries", reason="poison") == 1
    assert value(text, "stalwart_breaker_state", breaker="stripe", state="open") == 1
    assert value(text, "stalwart_breaker_state", breaker="stripe", state="closed") == 0
    assert value(text, "stalwart_breaker_state", breaker="mail", state="closed") == 1


def test_state_collector_reports_an_unreachable_redis_instead_of_failing() -> None:
    runtime = runtime_for(f"redis://127.0.0.1:{free_port()}/0")
    text = metrics.exposition(None, StateCollector(runtime)).decode()
    assert value(text, "stalwart_state_store_up") == 0
    assert "stalwart_dlq_size" not in text


def test_policy_redis_errors_reach_the_shared_counter_once(monkeypatch: pytest.MonkeyPatch) -> None:
    counts = {"stripe": 2}
    monkeypatch.setattr(metrics, "policy_redis_errors", lambda: dict(counts))
    hook = MetricsHook()
    hook.after_job(ctx(), Outcome("deferred", reason="breaker stripe open"))
    counts["stripe"] = 3
    hook.after_job(ctx(), Outcome("succeeded", 0.1))
    hook.after_job(ctx(), Outcome("succeeded", 0.1))
    registry = CollectorRegistry()
    registry.register(hook.metrics.redis_errors)
    assert registry.get_sample_value("stalwart_redis_errors_total", {"policy": "stripe"}) == 3


# -- bounded over days: files and label values (issue 10.8) -------------------------------------


def _recycled_child(jobs: int, exits: bool) -> None:
    hook = MetricsHook()
    for _ in range(jobs):
        hook.after_job(ctx(), Outcome("succeeded", 0.01))
    if exits:  # what Celery's worker_process_shutdown signal does as a pool child exits
        metrics.mark_dead(os.getpid())
    os._exit(0)


def test_files_stay_bounded_as_children_are_recycled(multiproc: Path) -> None:
    """worker_max_tasks_per_child replaces children forever: their files used to pile up."""
    fork = multiprocessing.get_context("fork")
    for n in range(40):
        child = fork.Process(target=_recycled_child, args=(2, n % 4 != 0))  # every 4th is killed, not exited
        child.start()
        child.join(10)
    text = metrics.exposition(multiproc).decode()
    assert value(text, "stalwart_jobs_total", task="app.charge", outcome="succeeded") == 80
    assert value(text, "stalwart_job_duration_seconds_count", task="app.charge") == 80
    assert len(list(multiproc.glob("*.db"))) <= 2  # the two archives; no child is alive
    child = fork.Process(target=_recycled_child, args=(1, True))
    child.start()
    child.join(10)
    text = metrics.exposition(multiproc).decode()
    assert value(text, "stalwart_jobs_total", task="app.charge", outcome="succeeded") == 81


def test_label_values_are_bounded() -> None:
    hook = MetricsHook()
    for n in range(metrics.MAX_LABEL_VALUES + 50):
        hook.after_job(ctx(f"app.task{n}"), Outcome("succeeded", 0.01))
        hook.on_defer(ctx(), f"concurrency limit tenant-{n}", 0.1)
        hook.on_dead_letter(DeadLetter(id=f"d{n}", reason="unregistered", task=f"evil.{n}"), None)
    registry = CollectorRegistry()
    for name in ("jobs", "deferrals", "dead_letters"):
        registry.register(getattr(hook.metrics, name))
    labels = {name: {s.labels.get("task") for f in registry.collect() if f.name == name for s in f.samples}
              for name in ("stalwart_jobs", "stalwart_dead_letters")}
    assert len(labels["stalwart_jobs"]) <= metrics.MAX_LABEL_VALUES + 1
    assert metrics.OTHER in labels["stalwart_jobs"]
    assert labels["stalwart_dead_letters"] == {"-"}
    reasons = {s.labels["reason"] for f in registry.collect() if f.name == "stalwart_deferrals" for s in f.samples}
    assert reasons == {"concurrency"}


@pytest.mark.parametrize(("reason", "kind"), [
    ("paused", "paused"), ("busy", "busy"), ("claim_lost", "claim_lost"), ("rate limit api", "rate_limit"),
    ("breaker stripe half-open", "breaker"), ("breaker stripe verdict pending", "breaker"),
    ("api: state store unavailable", "state_store"), ("\x1b]8;;evil", "other"),
])
def test_deferral_reasons_are_reduced_to_their_kind(reason: str, kind: str) -> None:
    assert metrics.deferral_kind(reason) == kind


def test_prometheus_mmap_dict_contract(tmp_path: Path) -> None:
    """The private prometheus_client.mmap_dict API metrics.fold relies on."""
    from prometheus_client.mmap_dict import MmapedDict  # noqa: PLC0415 - the private module under contract

    path = str(tmp_path / "counter_1.db")
    d = MmapedDict(path)
    d.write_value("k", 2.5, 7.0)
    assert d.read_value("k") == (2.5, 7.0)
    d.close()
    assert [v[:3] for v in MmapedDict.read_all_values_from_file(path)] == [("k", 2.5, 7.0)]
