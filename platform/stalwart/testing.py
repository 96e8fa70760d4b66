"""Real worker processes for tests and benchmarks: start, wait until ready, kill, clean up.

A test reads "start worker, enqueue, wait for outcome, assert outcome"; :func:`wait_until`
polls a condition instead of sleeping a fixed time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
REPO_ROOT = Path(__file__).resolve().parents[2]


def wait_until(
    condition: Callable[[], T], timeout: float = 30.0, interval: float = 0.05, message: str = ""
) -> T:
    """Poll ``condition`` until it returns something truthy; raise TimeoutError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(message or f"condition not met within {timeout}s")
        time.sleep(interval)


class WorkerProcess:
    """One ``celery worker`` process group (main process and pool children)."""

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        app: str = "workers.app",
        concurrency: int = 2,
        pool: str = "prefork",
        queues: str | None = None,
        name: str | None = None,
        extra_args: list[str] | None = None,
        log_dir: str | None = None,
    ) -> None:
        self.name = name or f"w{uuid.uuid4().hex[:6]}"
        self.env = {**os.environ, **env}
        self.env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), self.env.get("PYTHONPATH", "")) if p
        )
        self.args = [
            sys.executable, "-m", "celery", "-A", app, "worker",
            "-P", pool, "-c", str(concurrency), "-n", f"{self.name}@%h",
            "-l", "INFO", "--without-gossip", "--without-mingle",
        ]
        if queues:
            self.args += ["-Q", queues]
        self.args += extra_args or []
        self.log_path = Path(log_dir or tempfile.gettempdir()) / f"stalwart-{self.name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, wait: bool = True, timeout: float = 60.0) -> WorkerProcess:
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            self.args, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        def ready() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"worker {self.name} exited early:\n{self.log()[-3000:]}")
            return " ready." in self.log()

        wait_until(ready, timeout, 0.1, f"worker {self.name} not ready within {timeout}s")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the main process only (SIGTERM drains, SIGQUIT stops at once)."""
        if self.alive:
            assert self.process is not None
            self.process.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL the whole process group: the host died, nothing gets to clean up."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self, timeout: float = 30.0) -> int | None:
        """Warm shutdown (SIGTERM), then SIGKILL whatever is left after ``timeout``."""
        if self.process is None:
            return None
        if self.alive:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout)
        self.kill()
        return self.process.returncode
