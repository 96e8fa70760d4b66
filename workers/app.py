"""The Celery app the workers run, built from the environment.

``STALWART_REDIS_URL`` names the state store; the broker defaults to the same Redis and can be
overridden with ``CELERY_BROKER_URL``. ``STALWART_TASK_MODULES`` (comma-separated) adds task
modules to the catalogue in ``tasks/``.
"""

from __future__ import annotations

from stalwart import Settings, create_app

settings = Settings.from_env()
TASK_MODULES = ["tasks.examples", *settings.task_modules]

app = create_app("stalwart", settings=settings, include=TASK_MODULES)
