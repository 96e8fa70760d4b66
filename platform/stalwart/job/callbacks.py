"""A done job's link callbacks and chain are sent once, however often its message is delivered.

Celery sends them after the body returns. A second delivery of a job that is done already (a
duplicate publish, a copy restored after a connection blip) returns the stored result without
running the body, and Celery would send the callbacks again: a chain's next step is dropped by
its frozen task id, but a ``link`` callback gets a fresh id each time and would run twice.

So once Celery has sent them (``after_return``: they go out before it), the job hash records it
(``job_linked``), and a later delivery of the done job clears them before Celery looks. A worker
killed between the verdict and sending them leaves no record: the next delivery sends them then
(at least once in that window, as Celery's own ``deduplicate_successful_tasks`` decides by the
stored result's children).
"""

from __future__ import annotations

import logging
from typing import Any

from stalwart.errors import StateStoreError
from stalwart.job.header import HEADER, Meta
from stalwart.runtime import Runtime
from stalwart.store.jobs import job_key

log = logging.getLogger("stalwart.job.callbacks")


def has_followers(request: Any) -> bool:
    return bool(getattr(request, "callbacks", None) or getattr(request, "chain", None))


def skip_sent(request: Any) -> None:
    """This delivery of a done job must not send the callbacks and chain again."""
    request.callbacks = None
    request.chain = None


def record_sent(runtime: Runtime, request: Any, task_id: str) -> None:
    """After Celery sent a successful job's callbacks and chain: remember it on the job hash."""
    meta = Meta.from_header(getattr(request, HEADER, None))
    try:
        runtime.jobs.linked(job_key(meta.key, task_id))
    except StateStoreError as exc:  # a later duplicate may send them again: logged, not fatal
        log.warning("could not record that the callbacks of %s were sent: %s", task_id, exc)
