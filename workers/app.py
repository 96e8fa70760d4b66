"""The Celery app the workers run, built from the environment.

``STALWART_REDIS_URL`` names the state store; the broker defaults to the same Redis and can be
overridden with ``CELERY_BROKER_URL``. ``STALWART_TASK_MODULES`` (comma-separated) adds task
modules to the catalogue in ``tasks/``.
"""

from __future__ import annotations

import os

from stalwart import create_app

TASK_MODULES = ["tasks.examples"] + [
    m.strip() for m in os.environ.get("STALWART_TASK_MODULES", "").split(",") if m.strip()
]

app = create_app("stalwart", include=TASK_MODULES)
