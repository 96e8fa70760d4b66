"""The app ``stalwart flower`` watches when not given one with ``-A``: a Stalwart app configured
from the environment, with the task modules of ``STALWART_TASK_MODULES`` (so the console knows
their parameter names, for scrubbing, and switch patterns can show the tasks they match)."""

from __future__ import annotations

from stalwart.app import create_app
from stalwart.settings import Settings

settings = Settings.from_env()
app = create_app("stalwart", settings=settings, include=list(settings.task_modules))
