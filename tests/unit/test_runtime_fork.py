"""A process forked while another thread uses a Redis client never waits on that client's locks.

Pool children are forked again whenever one is recycled (``worker_max_tasks_per_child``), while
the main process's threads (mover, visibility keeper, presence, ops server) use the state store:
a child that reused the parent's client deadlocked on its copied pool lock (redis-py 8).
"""

from __future__ import annotations

import os
import signal
import threading
import time

from stalwart.runtime import Runtime
from stalwart.settings import Settings


def test_a_child_forked_while_a_thread_holds_a_client_lock_does_not_hang(redis_url: str) -> None:
    runtime = Runtime(Settings.from_env({"STALWART_REDIS_URL": redis_url}))
    runtime.redis.ping()
    pool = runtime.redis.connection_pool
    held, release = threading.Event(), threading.Event()

    def use_the_pool() -> None:  # what a main-process thread does, mid-command, at the fork
        with pool._lock:  # a redis-py internal, held the way the pool holds it
            held.set()
            release.wait(10)

    thread = threading.Thread(target=use_the_pool)
    thread.start()
    held.wait(5)
    pid = os.fork()
    if pid == 0:  # the child: use the state store as a job would
        try:
            os._exit(0 if runtime.redis.ping() and runtime.jobs.read("t:x").state == "new" else 1)
        except BaseException:
            os._exit(2)
    release.set()
    thread.join()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError("the forked child hung on its parent's Redis client")
