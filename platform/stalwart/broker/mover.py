"""The mover: publishes due jobs from the delayed sets to their queues (DESIGN §5).

Every worker runs one. Each move is one Lua script (ZRANGEBYSCORE, LPUSH, ZREM), so a mover
killed mid-move loses nothing and never publishes a job twice; many movers are harmless. Fair
jobs wait in their lane's delayed set and go back into the lane (``fair_move``), each as its key's
next job.
"""

from __future__ import annotations

from stalwart.periodic import Periodic
from stalwart.store.delayed import DelayedStore

BATCH = 1000


class Mover(Periodic):
    """A daemon thread that moves due jobs every ``interval`` seconds (sooner under load)."""

    name = "stalwart-mover"

    def __init__(self, delayed: DelayedStore, interval: float = 0.1) -> None:
        super().__init__(interval)
        self.delayed = delayed
        self.moved = 0

    def tick(self) -> float:
        """Move everything due now; returns how long to sleep before the next tick."""
        sleep = self.interval
        plain, lanes = self.delayed.registered()
        moves = [(name, self.delayed.move_due) for name in plain]
        moves += [(name, self.delayed.move_fair_due) for name in lanes]
        for name, move in moves:
            while True:
                moved, wait = move(name, BATCH)
                self.moved += moved
                if moved < BATCH:
                    break
            if 0 <= wait < sleep * 1000:
                sleep = max(0.005, wait / 1000)
        return sleep
