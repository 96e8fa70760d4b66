"""Loaded by the worker in the bad-message signal test: records Celery's signals in Redis."""

from __future__ import annotations

import json
from typing import Any

import redis
from celery import signals

from stalwart.settings import Settings

SIGNALS_KEY = "test:signals"
_client = redis.Redis.from_url(Settings.from_env().redis_url)


@signals.task_unknown.connect(weak=False)
def on_unknown(sender: Any = None, message: Any = None, name: Any = None, id: Any = None, **_: Any) -> None:
    _client.rpush(SIGNALS_KEY, json.dumps(["task_unknown", id, name]))


@signals.task_rejected.connect(weak=False)
def on_rejected(sender: Any = None, message: Any = None, **_: Any) -> None:
    headers = message.headers if message is not None and isinstance(message.headers, dict) else {}
    _client.rpush(SIGNALS_KEY, json.dumps(["task_rejected", headers.get("id"), headers.get("task")]))
