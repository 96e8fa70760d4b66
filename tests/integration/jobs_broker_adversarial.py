"""Test-only hooks for tests/integration/test_broker_adversarial.py (red team, issue 9)."""

from __future__ import annotations

import os
from typing import Any

from celery import signals


@signals.task_received.connect
def rt_consumer_killers(request: Any = None, **_: Any) -> None:
    """``rt-kill*`` kills the main process (os._exit); ``rt-exit*`` raises SystemExit in it (what
    sys.exit() in a custom deserializer, or Celery's WorkerShutdown, would do)."""
    task_id = str(getattr(request, "id", ""))
    if task_id.startswith("rt-kill"):
        os._exit(70)
    if task_id.startswith("rt-exit"):
        raise SystemExit(70)
