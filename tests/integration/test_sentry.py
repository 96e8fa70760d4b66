"""Sentry: the real sentry-sdk in real workers, posting to an endpoint this test owns."""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from stalwart.testing import WorkerProcess, wait_until

pytestmark = pytest.mark.integration
TASKS = "tests.integration.jobs,tests.integration.jobs_ops"
SETTLE = 2.0  # seconds to wait for events that must not come


def parse_envelope(body: bytes) -> list[tuple[dict[str, Any], bytes]]:
    """The (item header, payload) pairs of a Sentry envelope."""
    _, _, rest = body.partition(b"\n")
    items = []
    while rest.strip():
        line, _, rest = rest.partition(b"\n")
        if not line.strip():
            continue
        header = json.loads(line)
        if "length" in header:
            payload, rest = rest[: header["length"]], rest[header["length"] + 1 :]
        else:
            payload, _, rest = rest.partition(b"\n")
        items.append((header, payload))
    return items


class SentryServer:
    """A tiny Sentry ingest endpoint: collects the events posted to /api/<project>/envelope/."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path.startswith("/api/7/envelope"):
                    collector.collect(body)
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def dsn(self) -> str:
        return f"http://key@127.0.0.1:{self.server.server_address[1]}/7"

    def collect(self, body: bytes) -> None:
        with self.lock:
            self.events += [json.loads(p) for h, p in parse_envelope(body) if h.get("type") == "event"]

    def for_task(self, task: str) -> list[dict[str, Any]]:
        with self.lock:
            return [e for e in self.events if (e.get("tags") or {}).get("task") == task
                    or ((e.get("extra") or {}).get("celery-job") or {}).get("task_name") == task]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sentry() -> Iterator[SentryServer]:
    server = SentryServer()
    yield server
    server.close()


@pytest.fixture
def worker(make_worker: Callable[..., WorkerProcess], sentry: SentryServer) -> WorkerProcess:
    return make_worker(env={"SENTRY_DSN": sentry.dsn, "STALWART_TASK_MODULES": TASKS})


def one_event(sentry: SentryServer, task: str, timeout: float = 30) -> dict[str, Any]:
    """Wait for the first event of ``task``, let any duplicate arrive, and insist there is one."""
    wait_until(lambda: sentry.for_task(task), timeout, message=f"no Sentry event for {task}")
    time.sleep(SETTLE)
    events = sentry.for_task(task)
    assert len(events) == 1, json.dumps(events, indent=1)[:4000]
    return events[0]


def test_a_dead_job_is_one_event_with_its_context(worker: WorkerProcess, sentry: SentryServer, app: Any) -> None:
    result = app.send_task("tests.integration.jobs.always_fail", ["dead"], trace_id="trace-dead-1",
                           idempotency_key="dead-key-1")
    event = one_event(sentry, "tests.integration.jobs.always_fail")
    tags = event["tags"]
    assert tags["reason"] == "exhausted"
    assert tags["queue"] == "celery"
    assert tags["attempt"] == "3"
    assert tags["trace_id"] == "trace-dead-1"
    assert tags["idempotency_key"] == "tests.integration.jobs.always_fail:dead-key-1"  # scoped by task
    assert tags["task_id"] == result.id
    assert app.stalwart.dlq.get(tags["dlq_entry_id"]).task_id == result.id
    assert event["fingerprint"] == ["tests.integration.jobs.always_fail", "TimeoutError"]
    assert event["exception"]["values"][-1]["type"] == "TimeoutError"
    crumbs = [c.get("message", "") for c in event["breadcrumbs"]["values"] if c.get("category") == "stalwart.attempt"]
    assert [c.split(" on ")[0] for c in crumbs] == ["attempt 1", "attempt 2", "attempt 3"]


def test_a_job_that_succeeds_after_retries_sends_nothing(worker: WorkerProcess, sentry: SentryServer,
                                                         app: Any, r: Any) -> None:
    app.send_task("tests.integration.jobs.fail_times", ["flaky", 2])
    wait_until(lambda: r.get("effect:flaky"), 30)
    time.sleep(SETTLE)
    assert int(r.get("attempts:flaky")) == 3
    assert sentry.for_task("tests.integration.jobs.fail_times") == []


def test_a_poison_job_is_one_event(worker: WorkerProcess, sentry: SentryServer, app: Any, r: Any) -> None:
    app.send_task("tests.integration.jobs.crash", ["boom"])
    wait_until(lambda: r.zcard("stalwart:{dlq}:index"), 60, message="poison job never dead-lettered")
    event = one_event(sentry, "tests.integration.jobs.crash")
    assert event["tags"]["reason"] == "lost"
    assert event["fingerprint"] == ["tests.integration.jobs.crash", "WorkerLostError"]
    assert int(r.get("attempts:boom")) == 3


def test_a_hard_time_limit_kill_is_one_event(worker: WorkerProcess, sentry: SentryServer, app: Any, r: Any) -> None:
    app.send_task("tests.integration.jobs.hard_limited", ["slow"], trace_id="trace-slow")
    event = one_event(sentry, "tests.integration.jobs.hard_limited")
    assert event["tags"]["reason"] == "time_limit"
    assert event["tags"]["trace_id"] == "trace-slow"
    assert event["fingerprint"] == ["tests.integration.jobs.hard_limited", "TimeLimitExceeded"]
    # The repeated kills and the poison verdict they end in do not add events.
    wait_until(lambda: r.zcard("stalwart:{dlq}:index"), 60, message="hard-limited job never dead-lettered")
    time.sleep(SETTLE)
    assert len(sentry.for_task("tests.integration.jobs.hard_limited")) == 1


def test_secret_arguments_arrive_scrubbed(worker: WorkerProcess, sentry: SentryServer, app: Any) -> None:
    app.send_task("tests.integration.jobs_ops.leak", ["ada", "hunter2-pw"], {"token": "tok-SECRET-42"})
    event = one_event(sentry, "tests.integration.jobs_ops.leak")
    arguments = event["contexts"]["stalwart"]["arguments"]
    assert arguments == {"user": "ada", "password": "[Filtered]", "token": "[Filtered]"}
    text = json.dumps(event)
    assert "hunter2-pw" not in text
    assert "tok-SECRET-42" not in text
    assert "login for ada refused with [Filtered]" in text
