"""A daemon thread that runs one small job over and over until the worker stops it."""

from __future__ import annotations

import logging
import threading

log = logging.getLogger("stalwart.periodic")


class Periodic:
    """Calls :meth:`tick` every ``interval`` seconds (or as long as tick asks) until stopped.

    The thread outlives any error in a tick: it logs it, counts it in ``errors`` and tries again
    after a short backoff, so a Redis restart never silently ends the mover or a keeper.
    """

    name = "stalwart-periodic"

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.errors = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> float | None:
        """Do one round of work; return seconds until the next round (None: the interval)."""
        raise NotImplementedError

    def start(self) -> None:
        """Run the first tick here, then the rest in the thread.

        The first tick makes the first connection and any first-time imports on the calling
        (main) thread: a later fork of a pool child can then never copy a module lock that this
        thread holds mid-import.
        """
        sleep = self._tick_safely()
        self._thread = threading.Thread(target=self._run, args=(sleep,), name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _tick_safely(self) -> float:
        try:
            sleep = self.tick()
        except Exception as exc:  # noqa: BLE001 - the thread must outlive any error
            self.errors += 1
            log.warning("%s: %s: %s; retrying", self.name, type(exc).__name__, exc)
            return max(self.interval, min(5.0, self.interval * 10))
        return self.interval if sleep is None else sleep

    def _run(self, first_sleep: float) -> None:
        sleep = first_sleep
        while not self._stop.wait(sleep):
            sleep = self._tick_safely()
