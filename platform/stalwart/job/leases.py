"""Keeps the claim of running jobs alive while their bodies run: the lease and the job hash.

One daemon thread per process renews every lease held longer than a third of its length, so
jobs shorter than that never cost a renewal. Each renewal also extends the job hash's TTL, so a
job that runs longer than its TTL keeps its state. A lease whose holder dies simply expires.
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
        self._held: dict[tuple[str, str], tuple[float, int]] = {}
        self._lock = threading.Lock()
        self._pid: int | None = None

    @contextmanager
    def hold(self, job_key: str, owner: str, ttl_ms: int) -> Iterator[None]:
        """Renew ``owner``'s claim on ``job_key`` (and its hash's ``ttl_ms``) while the block runs."""
        self._ensure_thread()
        with self._lock:
            self._held[(job_key, owner)] = (time.monotonic(), ttl_ms)
        try:
            yield
        finally:
            with self._lock:
                self._held.pop((job_key, owner), None)

    def _ensure_thread(self) -> None:
        with self._lock:  # pool threads may start their first job at the same moment
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._held = {}
        threading.Thread(target=self._run, name="stalwart-leases", daemon=True).start()

    def _run(self) -> None:
        while True:
            time.sleep(self.interval / 2)
            self.renew_due(time.monotonic() - self.interval)

    def renew_due(self, cutoff: float) -> None:
        """Renew every claim last renewed at or before ``cutoff`` (monotonic seconds)."""
        with self._lock:
            due = [(k, ttl) for k, (since, ttl) in self._held.items() if since <= cutoff]
        for (job_key, owner), ttl_ms in due:
            try:
                held = self.jobs.renew(job_key, owner=owner, lease_ms=self.lease_ms, ttl_ms=ttl_ms)
            except Exception as exc:  # noqa: BLE001 - the renewer must outlive any error
                log.warning("could not renew lease of job %s: %s", job_key, exc)
                continue
            with self._lock:
                if (job_key, owner) not in self._held:
                    continue
                if held:
                    self._held[(job_key, owner)] = (time.monotonic(), ttl_ms)
                else:  # stop renewing; commit() and job_end will find the claim gone
                    del self._held[(job_key, owner)]
            if not held:
                log.warning("job %s: this delivery no longer holds its claim (lease lapsed)", job_key)
