"""Tasks for the fuzz and crash-loop runs: a body that takes any arguments, and a consumer killer."""

from __future__ import annotations

import os
from typing import Any

from celery import shared_task, signals

from tests.integration.effects import state_redis as _redis


@shared_task(bind=True)
def record_any(self: Any, *args: Any, **kwargs: Any) -> None:
    """RPUSH fz:ran <task id>: which generated items ran, and how many times."""
    _redis().rpush("fz:ran", str(self.request.id))


@signals.task_received.connect
def kill_consumer(request: Any = None, **_: Any) -> None:
    """Test-only hook: a message whose task id starts with ``kill-consumer`` kills the worker's main
    process as it is received (what a bug in a decoder, or a segfault, would do)."""
    if str(getattr(request, "id", "")).startswith("kill-consumer"):
        os._exit(70)
