"""Adversarial regressions for the architecture change (issue 8), from a red-team pass.

Red team, claims 2 and 7: one Settings object configures the app; nothing else (Celery's own
environment reading included) decides where Stalwart's jobs go.
"""

from __future__ import annotations

import pytest

from stalwart.app import Stalwart
from stalwart.settings import Settings


def test_settings_broker_url_is_the_broker_even_when_celery_broker_url_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stalwart passes broker=settings.broker_url, but Celery's conf.broker_url prefers the
    CELERY_BROKER_URL environment variable. An app built with explicit Settings therefore
    publishes to the environment's broker while runtime.broker_redis (delayed sets, parked jobs,
    the mover's target) is settings.broker_url: retries and deferrals move into queues on a
    Redis no worker consumes."""
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:2/0")
    settings = Settings.from_env({"STALWART_REDIS_URL": "redis://127.0.0.1:1/0"})
    app = Stalwart("rt", settings=settings)
    # Celery's conf.broker_url property still shows $CELERY_BROKER_URL; every connection it makes
    # follows the read and write URLs Stalwart sets from the settings.
    assert app.connection_for_write().port == 1
    assert app.connection_for_read().port == 1
