"""Real Flower (``stalwart flower``: Flower's own app with the console added), behind basic auth
from the environment, watching a real worker's jobs."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from stalwart.app import Stalwart
from stalwart.dev.embedded import free_port
from stalwart.testing import REPO_ROOT, WorkerProcess, wait_until

pytestmark = pytest.mark.integration
CREDENTIALS = "ops:flower-test-secret"  # a throwaway for this test; deployments set FLOWER_BASIC_AUTH


class Flower:
    """``stalwart flower -A workers.app`` as a child process on a free loopback port."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        full_env = {**os.environ, **env, "FLOWER_BASIC_AUTH": CREDENTIALS,
                    "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)}
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "stalwart.cli.main", "flower", "-A", "workers.app", f"--port={self.port}",
                 "--address=127.0.0.1", "--persistent=False"],
                env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def page(self, path: str) -> str:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}")
        request.add_header("Authorization", "Basic " + base64.b64encode(CREDENTIALS.encode()).decode())
        with urllib.request.urlopen(request, timeout=10) as resp:
            return str(resp.read().decode())

    def get(self, path: str, auth: str | None = CREDENTIALS) -> tuple[int, Any]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}")
        if auth is not None:
            request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            return err.code, None
        except (urllib.error.URLError, ConnectionError):
            if self.process.poll() is not None:
                raise RuntimeError(f"flower exited:\n{self.log_path.read_text()[-3000:]}") from None
            return 0, None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def flower(worker_env: dict[str, str], tmp_path: Path) -> Iterator[Flower]:
    process = Flower(worker_env, tmp_path / "flower.log")
    try:
        wait_until(lambda: process.get("/api/tasks")[0] == 200, 60, 0.2, "flower did not start")
        wait_until(lambda: "Connected to" in process.log_path.read_text(), 30, 0.2)  # events capture
        yield process
    finally:
        process.stop()


def states(flower: Flower) -> dict[str, dict[str, Any]]:
    return flower.get("/api/tasks")[1] or {}


def test_flower_shows_succeeded_retried_and_failed_jobs_behind_basic_auth(
    flower: Flower, make_worker: Callable[..., WorkerProcess], app: Stalwart
) -> None:
    assert flower.get("/api/tasks", auth=None)[0] == 401
    assert flower.get("/api/tasks", auth="ops:wrong")[0] == 401
    make_worker()
    ok = app.send_task("tests.integration.jobs.record", ("flower-ok",)).id
    retried = app.send_task("tests.integration.jobs.fail_times", ("flower-retry", 2)).id
    failed = app.send_task("tests.integration.jobs.always_fail", ("flower-dead",)).id

    def settled() -> dict[str, dict[str, Any]] | None:
        seen = states(flower)
        final = {ok: "SUCCESS", retried: "SUCCESS", failed: "FAILURE"}
        return seen if all(seen.get(i, {}).get("state") == s for i, s in final.items()) else None

    seen = wait_until(settled, 60, 0.3, "flower did not see every job settle")
    assert seen[retried]["retried"] is not None, "the retried job passed through RETRY"
    assert seen[failed]["retried"] is not None
    assert "never works" in seen[failed]["exception"]
    assert seen[ok]["result"] == "'flower-ok'"
    tasks_page = flower.page("/tasks")  # Flower's own page, with the console in its navigation
    assert 'href="/stalwart/dead-letters"' in tasks_page
    assert 'href="/stalwart/breakers"' in tasks_page
