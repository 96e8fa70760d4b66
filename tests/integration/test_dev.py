"""``stalwart dev`` end to end: embedded Redis, worker, Flower, demo outcomes, clean Ctrl-C."""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from stalwart.dev.embedded import free_port
from stalwart.dlq.queue import DeadLetterQueue
from stalwart.settings import Settings
from stalwart.store.keys import Keys
from stalwart.testing import wait_until

pytestmark = pytest.mark.integration


class Output:
    """Collects a child's stdout lines in a thread so the test can wait for text."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self.proc = proc
        assert proc.stdout is not None
        self._stream = proc.stdout
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self._stream:
            self.lines.append(line.rstrip("\n"))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, needle: str, timeout: float) -> None:
        def seen() -> bool:
            if needle in self.text:
                return True
            if self.proc.poll() is not None:
                time.sleep(0.2)  # let the reader thread catch the last lines
                raise AssertionError(f"exited {self.proc.returncode} before {needle!r}:\n{self.text}")
            return False

        wait_until(seen, timeout, 0.1, f"no {needle!r} in:\n{self.text}")


def _descendants(root: int) -> set[int]:
    """Every live process below ``root``, by walking parent ids in /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _get(url: str, auth: str | None = None) -> int:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Output, int]]:
    """``stalwart dev`` as a child process in an empty directory; killed if the test fails."""
    if not hasattr(signal, "SIGKILL") or not Path("/proc").exists():
        pytest.skip("needs Linux /proc to track child processes")
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in {"STALWART_REDIS_URL", "CELERY_BROKER_URL", "FLOWER_BASIC_AUTH"}}
    stalwart = Path(sys.executable).with_name("stalwart")
    proc = subprocess.Popen(
        [str(stalwart), "dev", "--flower-port", str(port)], cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
    )
    try:
        yield proc, Output(proc), port
    finally:
        if proc.poll() is None:
            for pid in _descendants(proc.pid):
                os.kill(pid, signal.SIGKILL)
            proc.kill()
        proc.wait()


def test_dev_runs_the_demo_and_stops_everything_on_ctrl_c(
    dev: tuple[subprocess.Popen[str], Output, int],
) -> None:
    proc, out, port = dev
    out.wait_for("stalwart dev: ready", 120)
    url = re.search(r"export STALWART_REDIS_URL=(\S+)", out.text)
    password = re.search(r"password for this session: (\S+)", out.text)
    assert url, out.text
    assert password, out.text
    children = _descendants(proc.pid)
    banner_pids = {int(p) for p in re.findall(r"(?:redis-server|worker|flower) (\d+)", out.text)}
    assert len(banner_pids) == 3
    assert banner_pids <= children

    out.wait_for("demo: all demo jobs settled", 120)
    assert out.text.count("-> succeeded") == 4, out.text  # three adds and the flaky job
    client = redis.Redis.from_url(url.group(1))
    stats = DeadLetterQueue(client, Keys(), Settings()).stats()
    assert stats["by_reason"] == {"exhausted": 2, "permanent": 1}

    flower = f"http://127.0.0.1:{port}/api/workers"
    assert _get(flower) == 401
    assert _get(flower, "stalwart:wrong") == 401
    assert _get(flower, f"stalwart:{password.group(1)}") == 200
    console = f"http://127.0.0.1:{port}/api/stalwart/dead-letters"  # Stalwart's console, inside Flower
    assert _get(console) == 401
    assert _get(console, f"stalwart:{password.group(1)}") == 200
    assert f"http://127.0.0.1:{port}/stalwart/dead-letters" in out.text
    client.close()

    children = _descendants(proc.pid)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(90) == 0
    assert "stalwart dev: stopped" in out.text
    time.sleep(0.2)
    assert not [pid for pid in children if _alive(pid)]


def test_dev_uses_the_redis_it_is_given(redis_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "STALWART_REDIS_URL": redis_url}
    stalwart = Path(sys.executable).with_name("stalwart")
    proc = subprocess.Popen(
        [str(stalwart), "dev", "--no-flower", "--no-demo", "-c", "1"], cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
    )
    out = Output(proc)
    try:
        out.wait_for("stalwart dev: ready", 120)
        assert f"export STALWART_REDIS_URL={redis_url}" in out.text
        assert "redis-server" not in out.text
        assert "Flower" not in out.text
        children = _descendants(proc.pid)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        time.sleep(0.2)
        assert not [pid for pid in children if _alive(pid)]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
