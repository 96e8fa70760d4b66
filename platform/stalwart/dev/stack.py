"""``stalwart dev``: the whole platform on one machine, started and stopped by one command.

With ``STALWART_REDIS_URL`` unset it starts a real redis-server (AOF on, data under
``./.stalwart/``), then a worker, Flower behind basic auth and a little demo traffic, and
prints where to look. SIGINT or SIGTERM stops everything it started, worker drained first.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from stalwart.app import Stalwart
from stalwart.dev.embedded import RedisServer
from stalwart.errors import ConfigurationError, StalwartError
from stalwart.runtime import Runtime
from stalwart.settings import Settings
from stalwart.store.jobs import job_key
from stalwart.testing import REPO_ROOT, WorkerProcess, wait_until

FLOWER_USER = "stalwart"
READY_LINE = "stalwart dev: ready"
_SETSID = "import os, sys; os.setsid(); os.execv(sys.argv[1], sys.argv[1:])"


@dataclass(frozen=True)
class DevOptions:
    """What ``stalwart dev`` starts; validated here so the CLI stays thin."""

    concurrency: int = 2
    flower: bool = True
    flower_port: int = 5555
    demo: bool = True
    data_dir: Path | None = None

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ConfigurationError(f"--concurrency must be >= 1, got {self.concurrency}")
        if not 0 < self.flower_port < 65536:
            raise ConfigurationError(f"--flower-port must be a TCP port, got {self.flower_port}")


@dataclass(frozen=True)
class DemoJob:
    """One demo job and the outcome it is expected to reach."""

    label: str
    task: str
    args: tuple[Any, ...]
    expect: str


DEMO_JOBS = (
    DemoJob("add(2, 3)", "tasks.examples.add", (2, 3), "done"),
    DemoJob("add(40, 2)", "tasks.examples.add", (40, 2), "done"),
    DemoJob("add(7, 8)", "tasks.examples.add", (7, 8), "done"),
    DemoJob("flaky: fails twice, then succeeds", "tasks.examples.flaky", ("demo", 2), "done"),
    DemoJob("always_fails: exhausts its retries", "tasks.examples.always_fails", ("demo",),
            "exhausted"),
    DemoJob("charge(-5): bad input, permanent", "tasks.examples.charge", (-5,), "permanent"),
    DemoJob("slow_report(3): hits its 1 s soft limit", "tasks.examples.slow_report", (3,),
            "exhausted"),
)


def flower_auth(env: Mapping[str, str]) -> tuple[str, bool]:
    """``user:password`` for Flower from ``FLOWER_BASIC_AUTH``, else a fresh one (generated=True)."""
    given = env.get("FLOWER_BASIC_AUTH", "")
    if given:
        if ":" not in given.split(",")[0]:
            raise ConfigurationError("FLOWER_BASIC_AUTH must be user:password[,user:password...]")
        return given, False
    return f"{FLOWER_USER}:{secrets.token_urlsafe(12)}", True


def data_directory(explicit: Path | None = None) -> Path:
    """``./.stalwart`` when the current directory is writable, else a new temp directory."""
    candidate = explicit or Path.cwd() / ".stalwart"
    try:
        (candidate / "redis").mkdir(parents=True, exist_ok=True)
        (candidate / "logs").mkdir(exist_ok=True)
    except OSError:
        if explicit is not None:
            raise
        candidate = Path(tempfile.mkdtemp(prefix="stalwart-dev-"))
        (candidate / "redis").mkdir()
        (candidate / "logs").mkdir()
    return candidate


def port_is_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:``port``."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class OwnSessionRedis(RedisServer):
    """A redis-server in its own session, so a terminal's Ctrl-C reaches only ``stalwart dev``.

    Otherwise redis-server would get the SIGINT too and shut down under the draining worker.
    """

    def command(self) -> list[str]:
        return [sys.executable, "-c", _SETSID, *super().command()]


def _child_env(redis_url: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, "STALWART_REDIS_URL": redis_url, **(extra or {})}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


@dataclass
class DevStack:
    """The processes ``stalwart dev`` owns; :meth:`stop` ends each one it started."""

    options: DevOptions
    env: Mapping[str, str]
    data_dir: Path = field(init=False)
    redis: RedisServer | None = None
    redis_url: str = ""
    worker: WorkerProcess | None = None
    flower: subprocess.Popen[bytes] | None = None
    flower_auth: str = ""
    flower_generated: bool = False

    def __post_init__(self) -> None:
        self.data_dir = data_directory(self.options.data_dir)

    def start(self) -> None:
        """Redis (unless given), worker, then Flower; each waited on until it answers."""
        if not (REPO_ROOT / "workers" / "app.py").exists():
            raise ConfigurationError(f"stalwart dev runs from a checkout; no workers/ in {REPO_ROOT}")
        self.redis_url = self.env.get("STALWART_REDIS_URL", "")
        if not self.redis_url:
            self.redis = OwnSessionRedis(appendonly=True, directory=str(self.data_dir / "redis"))
            self.redis.start()
            self.redis_url = self.redis.url
        self.worker = WorkerProcess(
            _child_env(self.redis_url), concurrency=self.options.concurrency, name="dev",
            log_dir=str(self.data_dir / "logs"),
        )
        self.worker.start(timeout=90)
        if self.options.flower:
            self._start_flower()

    def _start_flower(self) -> None:
        port = self.options.flower_port
        if not port_is_free(port):
            raise ConfigurationError(f"port {port} is in use; pass --flower-port or --no-flower")
        self.flower_auth, self.flower_generated = flower_auth(self.env)
        log = (self.data_dir / "logs" / "flower.log").open("wb")
        self.flower = subprocess.Popen(
            [sys.executable, "-m", "stalwart.cli.main", "flower", "-A", "workers.app",
             "--address=127.0.0.1", f"--port={port}"],
            env=_child_env(self.redis_url, {"FLOWER_BASIC_AUTH": self.flower_auth}),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        wait_until(self._flower_answers, 60, 0.2, f"Flower did not answer on port {port}")

    def _flower_answers(self) -> bool:
        if self.flower is not None and self.flower.poll() is not None:
            raise ConfigurationError(f"Flower exited; see {self.data_dir / 'logs' / 'flower.log'}")
        url = f"http://127.0.0.1:{self.options.flower_port}/healthcheck"
        try:
            with urllib.request.urlopen(url, timeout=1):
                return True
        except urllib.error.HTTPError:
            return True  # it answers, even if it wants credentials
        except OSError:
            return False

    def pids(self) -> dict[str, int]:
        """The process id of each child it started (for the banner and for tests)."""
        out = {}
        for name, proc in (
            ("redis-server", self.redis.process if self.redis else None),
            ("worker", self.worker.process if self.worker else None),
            ("flower", self.flower),
        ):
            if proc is not None:
                out[name] = proc.pid
        return out

    def stop(self) -> None:
        """Flower, then the worker (warm shutdown: in-flight jobs finish), then redis-server."""
        if self.flower is not None:
            self.flower.terminate()
            try:
                self.flower.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.flower.pid, signal.SIGKILL)
                self.flower.wait()
            self.flower = None
        if self.worker is not None:
            self.worker.stop(timeout=30)
            self.worker = None
        if self.redis is not None:
            self.redis.stop()
            self.redis = None


def send_demo(redis_url: str) -> dict[str, DemoJob]:
    """Enqueue the demo jobs; returns task id → job."""
    app = Stalwart("stalwart-dev", settings=Settings.from_env({"STALWART_REDIS_URL": redis_url}))
    sent = {}
    for job in DEMO_JOBS:
        sent[app.send_task(job.task, args=job.args).id] = job
    return sent


def demo_outcomes(redis_url: str, sent: Mapping[str, DemoJob]) -> dict[str, str]:
    """task id → ``done`` or the DLQ reason, for the demo jobs that have finished."""
    runtime = Runtime(Settings.from_env({"STALWART_REDIS_URL": redis_url}))
    out: dict[str, str] = {}
    for task_id in sent:
        if runtime.jobs.read(job_key(None, task_id)).state == "done":
            out[task_id] = "done"
    dead = {e.task_id: e.reason for e in runtime.dlq.iter() if e.task_id in sent}
    out.update({k: v for k, v in dead.items() if k is not None})
    return out


def watch_demo(redis_url: str, sent: Mapping[str, DemoJob], stop: threading.Event,
               emit: Callable[[str], None], timeout: float = 90.0) -> None:
    """Print each demo job's outcome once, as it happens, until all are settled."""
    shown: set[str] = set()
    deadline = time.monotonic() + timeout
    while not stop.is_set() and len(shown) < len(sent) and time.monotonic() < deadline:
        try:
            outcomes = demo_outcomes(redis_url, sent)
        except Exception as exc:  # noqa: BLE001 - a demo printer must never crash the run
            emit(f"demo: cannot read outcomes ({exc})")
            return
        for task_id, outcome in outcomes.items():
            if task_id not in shown:
                shown.add(task_id)
                where = "succeeded" if outcome == "done" else f"dead-lettered, reason {outcome}"
                emit(f"demo: {sent[task_id].label} -> {where}")
        stop.wait(0.5)
    if len(shown) == len(sent):
        emit("demo: all demo jobs settled")


def cli_command() -> str:
    """How to call ``stalwart`` from another shell: the bare name if it is on PATH."""
    if shutil.which("stalwart"):
        return "stalwart"
    script = Path(sys.executable).with_name("stalwart")
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def banner(stack: DevStack) -> list[str]:
    """Where to look, printed once everything is up."""
    cli = cli_command()
    lines = [READY_LINE, ""]
    if stack.flower is not None:
        user, _, password = stack.flower_auth.split(",")[0].partition(":")
        lines.append(f"  Flower:  http://127.0.0.1:{stack.options.flower_port}/  (user {user})")
        lines.append(f"  Console: http://127.0.0.1:{stack.options.flower_port}/stalwart/dead-letters  (in Flower)")
        if stack.flower_generated:
            lines.append(f"           password for this session: {password}")
        else:
            lines.append("           password: from FLOWER_BASIC_AUTH")
    lines += [
        f"  Redis:   {stack.redis_url}" + ("  (embedded, AOF on)" if stack.redis else ""),
        f"  Logs:    {stack.data_dir / 'logs'}",
        "",
        "  In another shell:",
        f"    export STALWART_REDIS_URL={stack.redis_url}",
        f"    {cli} dlq ls",
        f"    {cli} status",
        "",
        "  processes: " + ", ".join(f"{k} {v}" for k, v in stack.pids().items()),
        "  Ctrl-C stops everything started here.",
    ]
    return lines


class _Stop(StalwartError):
    """Raised by the signal handler to leave startup or the wait loop."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


def run(options: DevOptions, env: Mapping[str, str] | None = None) -> int:
    """Start the stack, print where to look, wait for SIGINT/SIGTERM, stop it all; 0 on a clean stop."""
    environ = dict(os.environ if env is None else env)
    emit: Callable[[str], None] = lambda text: print(text, flush=True)  # noqa: E731
    previous = {s: signal.signal(s, _raise_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    stack = DevStack(options, environ)
    stop_demo = threading.Event()
    try:
        emit("stalwart dev: starting" + ("" if environ.get("STALWART_REDIS_URL") else
                                         " embedded redis-server, worker, flower..."))
        stack.start()
        sent = send_demo(stack.redis_url) if options.demo else {}
        for line in banner(stack):
            emit(line)
        if sent:
            threading.Thread(target=watch_demo, args=(stack.redis_url, sent, stop_demo, emit),
                             daemon=True).start()
        while True:
            signal.pause()
    except _Stop as exc:
        emit(f"stalwart dev: {exc}, stopping (worker drains in-flight jobs)...")
    finally:
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        stop_demo.set()
        stack.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    emit("stalwart dev: stopped")
    return 0
