"""The ops port of real prefork workers: metrics summed over children, health, readiness, drain."""

from __future__ import annotations

import json
import re
import signal
import urllib.error
import urllib.request
from collections.abc import Callable

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from stalwart.app import Stalwart
from stalwart.dev.embedded import RedisServer, free_port
from stalwart.testing import WorkerProcess, wait_until

pytestmark = pytest.mark.integration
MODULES = {"STALWART_TASK_MODULES": "tests.integration.jobs,tests.integration.jobs_metrics"}
NOTE_PID = "tests.integration.jobs_metrics.note_pid"
SLOW = "tests.integration.jobs_metrics.slow"


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def unready_body(port: int) -> str | None:
    """The /readyz body once it answers 503, else None (for wait_until)."""
    code, body = get(port, "/readyz")
    return body if code == 503 else None


def jobs_total(port: int, outcome: str | None = None) -> float:
    total = 0.0
    for family in text_string_to_metric_families(get(port, "/metrics")[1]):
        for s in family.samples:
            if s.name == "stalwart_jobs_total" and outcome in (None, s.labels["outcome"]):
                total += s.value
    return total


def test_metrics_sum_every_job_over_the_pool_children(
    make_worker: Callable[..., WorkerProcess], app: Stalwart, r: redis.Redis
) -> None:
    port, n = free_port(), 40
    make_worker(env={**MODULES, "STALWART_OPS_PORT": str(port)}, concurrency=2)
    for _ in range(n):
        app.send_task(NOTE_PID, ("m",), {"sleep": 0.02})
    wait_until(lambda: int(r.get("effect:m") or 0) == n, 60)
    wait_until(lambda: jobs_total(port) == n, 10, 0.2)
    assert jobs_total(port, "succeeded") == n
    assert r.scard("pids:m") == 2, "both pool children ran jobs, so the total is a sum"


def test_health_and_ready_on_a_live_worker_with_a_port_picked_at_start(
    make_worker: Callable[..., WorkerProcess],
) -> None:
    worker = make_worker(env={"STALWART_OPS_PORT": "0"})
    port = int(wait_until(lambda: re.search(r"ops server listening on \S+:(\d+)", worker.log()), 10)[1])
    code, body = get(port, "/healthz")
    assert (code, json.loads(body)["consumer"]) == (200, "consuming")
    wait_until(lambda: get(port, "/readyz")[0] == 200, 10)
    assert json.loads(get(port, "/readyz")[1]) == {"status": "ok", "checks": {"broker": "ok", "state_store": "ok"}}


def test_ready_turns_503_while_draining_and_the_running_job_still_finishes(
    make_worker: Callable[..., WorkerProcess], app: Stalwart, r: redis.Redis
) -> None:
    port = free_port()
    worker = make_worker(env={**MODULES, "STALWART_OPS_PORT": str(port)})
    wait_until(lambda: get(port, "/readyz")[0] == 200, 10)
    app.send_task(SLOW, ("slow", 4))
    wait_until(lambda: r.get("started:slow"), 10)
    worker.signal(signal.SIGTERM)
    body = wait_until(lambda: unready_body(port), 5)
    assert "draining: the worker is shutting down" in json.loads(body)["reasons"]
    assert get(port, "/healthz")[0] == 200  # draining is healthy: do not kill it
    assert r.get("effect:slow") is None, "503 came before the drain finished"
    assert worker.process is not None
    worker.process.wait(30)
    assert r.get("effect:slow") == b"1"


def test_ready_turns_503_when_the_state_store_is_unreachable(
    make_worker: Callable[..., WorkerProcess], redis_url: str
) -> None:
    port = free_port()
    state_store = RedisServer().start()
    try:
        make_worker(env={"STALWART_OPS_PORT": str(port), "STALWART_REDIS_URL": state_store.url,
                         "CELERY_BROKER_URL": redis_url, "STALWART_REDIS_TIMEOUT": "0.5"})
        wait_until(lambda: get(port, "/readyz")[0] == 200, 10)
        state_store.stop(kill=True)
        body = wait_until(lambda: unready_body(port), 10)
        checks = json.loads(body)["checks"]
        assert checks["broker"] == "ok"
        assert checks["state_store"] != "ok"
        assert get(port, "/healthz")[0] == 200
        metrics_text = get(port, "/metrics")[1]
        assert "stalwart_state_store_up 0.0" in metrics_text
    finally:
        state_store.cleanup()
