"""Secret scrubbing and Sentry event filtering, as pure functions."""

from __future__ import annotations

import types
from typing import Any

import fakeredis
import pytest

from stalwart.job.header import Meta
from stalwart.ops import sentry as reporting
from stalwart.ops.scrub import FILTERED, is_secret, scrub, secret_values
from stalwart.settings import Settings
from stalwart.store.jobs import JobStore
from stalwart.store.keys import Keys


@pytest.mark.parametrize("key", ["password", "DB_PASSWORD", "api_key", "X-Api-Token", "Authorization",
                                 "card_number", "cvv", "pan", "user.ssn", "session_id", "Cookie", "client_secret"])
def test_secret_names(key: str) -> None:
    assert is_secret(key)


@pytest.mark.parametrize("key", ["user", "amount", "company", "span", "idempotency_key", "trace_id", "queue"])
def test_ordinary_names(key: str) -> None:
    assert not is_secret(key)


def test_scrub_filters_keys_recursively_and_cuts_secret_values_from_text() -> None:
    event = {
        "contexts": {"job": {"arguments": {"user": "ada", "password": "hunter22", "nested": [{"token": "t0k3n"}]}}},
        "message": "login for ada with hunter22 failed",
        "breadcrumbs": {"values": [{"message": "sent t0k3n", "data": {"Authorization": "Bearer x"}}]},
    }
    clean = scrub(event, secret_values(event))
    arguments = clean["contexts"]["job"]["arguments"]
    assert arguments == {"user": "ada", "password": FILTERED, "nested": [{"token": FILTERED}]}
    assert clean["message"] == f"login for ada with {FILTERED} failed"
    assert clean["breadcrumbs"]["values"][0] == {"message": f"sent {FILTERED}", "data": {"Authorization": FILTERED}}


def test_short_secret_values_are_not_cut_from_text() -> None:
    assert secret_values({"pin": "12"}) == set()


def celery_event(task_id: str) -> dict[str, Any]:
    exception = {"values": [{"type": "E", "mechanism": {"type": "celery"}}]}
    return {"exception": exception, "tags": {"celery_task_id": task_id}}


def test_the_celery_integration_copy_of_a_reported_job_is_dropped() -> None:
    reporting.remember("job-1")
    assert reporting.before_send(celery_event("job-1"), {}) is None
    assert reporting.before_send(celery_event("job-2"), {}) is not None
    ours = {"exception": {"values": [{"type": "E", "mechanism": {"type": "generic"}}]}, "tags": {"task_id": "job-1"}}
    assert reporting.before_send(ours, {}) is not None


def test_named_arguments_bind_positional_values_to_parameter_names() -> None:
    class Task:
        def run(self, user: str, password: str, token: str | None = None) -> None: ...

    assert reporting.named_arguments(Task(), ["ada", "pw"], {"token": "t"}) == {"user": "ada", "password": "pw",
                                                                             "token": "t"}
    assert reporting.named_arguments(None, ["ada"], {"k": 1}) == {"args": ["ada"], "k": 1}


def test_one_report_per_message_a_poison_verdict_after_a_reported_loss_adds_none() -> None:
    runtime = types.SimpleNamespace(jobs=JobStore(fakeredis.FakeRedis(), Keys("t")), settings=Settings())
    hook = reporting.SentryHook(types.SimpleNamespace(), runtime)  # type: ignore[arg-type]
    meta = Meta()
    assert hook.first_report("job-1", meta, "lost")
    assert not hook.first_report("job-1", meta, "lost")  # a second kill, or the poison verdict
    assert hook.first_report("job-1", meta, "dead")  # another way to die is still reported once
    assert not hook.first_report("job-1", meta, "dead")
    assert hook.first_report("job-1", Meta(), "lost")  # a replay is a new message
    assert hook.first_report(None, meta, "dead")  # bad messages without a task id: always
