"""Keeps the idempotency lease of running jobs alive while their bodies run.

One daemon thread per process renews every lease held longer than a third of its length, so
jobs shorter than that never cost a renewal. A lease whose holder dies simply expires.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from stalwart.store.jobs import JobStore

log = logging.getLogger("stalwart.job.leases")


class LeaseKeeper:
    """Renews held job leases from a background thread."""

    def __init__(self, jobs: JobStore, lease_seconds: float) -> None:
        self.jobs = jobs
        self.lease_ms = int(lease_seconds * 1000)
        self.interval = lease_seconds / 3
        self._held: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self._pid: int | None = None

    @contextmanager
    def hold(self, job_key: str, owner: str) -> Iterator[None]:
        self._ensure_thread()
        with self._lock:
            self._held[(job_key, owner)] = time.monotonic()
        try:
            yield
        finally:
            with self._lock:
                self._held.pop((job_key, owner), None)

    def _ensure_thread(self) -> None:
        if self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._held = {}
        threading.Thread(target=self._run, name="stalwart-leases", daemon=True).start()

    def _run(self) -> None:
        while True:
            time.sleep(self.interval / 2)
            cutoff = time.monotonic() - self.interval
            with self._lock:
                due = [k for k, since in self._held.items() if since <= cutoff]
            for job_key, owner in due:
                try:
                    self.jobs.renew(job_key, owner=owner, lease_ms=self.lease_ms)
                    with self._lock:
                        if (job_key, owner) in self._held:
                            self._held[(job_key, owner)] = time.monotonic()
                except Exception as exc:  # noqa: BLE001 - the renewer must outlive any error
                    log.warning("could not renew lease of job %s: %s", job_key, exc)
