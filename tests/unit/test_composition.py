"""One composition root: building a Stalwart app wires nothing; only a starting worker does."""

from __future__ import annotations

import threading

import pytest
import sentry_sdk
from celery import shared_task, signals

from stalwart import Retry, Stalwart, StalwartTask
from stalwart.errors import ConfigurationError
from stalwart.policies.limits import RateLimit
from stalwart.settings import Settings
from stalwart.worker.steps import StalwartStep


def receivers(signal: signals.Signal) -> list[str]:
    return [repr(r) for r in signal.receivers]


def test_building_an_app_starts_no_thread_and_wires_no_reporting() -> None:
    threads = {t.name for t in threading.enumerate()}
    logging_receivers = receivers(signals.after_setup_logger)
    process_init = receivers(signals.worker_process_init)
    settings = Settings.from_env({"SENTRY_DSN": "http://key@127.0.0.1:9/1", "STALWART_OPS_PORT": "0"})
    app = Stalwart("composition", settings=settings, set_as_current=False)
    assert {t.name for t in threading.enumerate()} == threads
    assert list(app.stalwart.hooks) == []  # no Sentry hook, no metrics hook
    assert app.stalwart.switches is None
    assert not app.stalwart.wired
    assert receivers(signals.after_setup_logger) == logging_receivers
    assert receivers(signals.worker_process_init) == process_init
    assert not sentry_sdk.get_client().is_active()
    assert StalwartStep in app.steps["worker"]  # registered for a worker, not run


def test_the_settings_repr_never_shows_the_sentry_dsn() -> None:
    settings = Settings.from_env({"SENTRY_DSN": "https://secret-key@sentry.example/1"})
    assert "secret-key" not in repr(settings)
    assert settings.sentry_dsn == "https://secret-key@sentry.example/1"


def test_shared_task_options_are_resolved_when_bound_to_a_stalwart_app() -> None:
    @shared_task(name="composition.shared", max_retries=6, limits=[RateLimit("shared-api", "5/s")],
                 idempotency_key="order-{order_id}")
    def shared(order_id: str) -> str:
        return order_id

    app = Stalwart("composition-shared", settings=Settings(), set_as_current=False)
    app.finalize()
    task = app.tasks["composition.shared"]
    assert task.retry_policy == Retry(max_attempts=7, backoff=1.0, backoff_max=600.0)
    assert [p.name for p in task.permits] == ["shared-api"]
    assert task.derive_key(("o-9",), {}) == "composition.shared:order-o-9"
    assert not hasattr(type(task), "limits")


def test_a_bad_option_on_a_task_class_fails_when_bound() -> None:
    class Bad(StalwartTask):
        name = "composition.bad"
        max_age = -1

        def run(self) -> None:
            """A body."""

    app = Stalwart("composition-bad", settings=Settings(), set_as_current=False)
    with pytest.raises(ConfigurationError, match="max_age must be a number"):
        app.register_task(Bad())
