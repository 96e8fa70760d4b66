"""The console under test: ``stalwart flower`` as a child process, an HTTP client that logs in
and carries the CSRF cookie, and Debian's Chromium driven by Playwright.

The browser is Debian's ``chromium`` package at /usr/bin/chromium (``./dev.sh test`` installs it
when it can). Without it the browser tests skip, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import base64
import http.cookiejar
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from stalwart.dev.embedded import free_port
from stalwart.testing import REPO_ROOT, wait_until

OPERATOR = "ops:console-test-secret"  # throwaways for the tests; deployments set their own
VIEWER = "viewer:look-but-do-not-touch"
CHROMIUM = Path("/usr/bin/chromium")
CONSOLE_TASKS = "tests.integration.jobs,tests.integration.jobs_dlq,tests.integration.jobs_console"
DOCS = REPO_ROOT / "docs"


class Console:
    """``stalwart flower -A workers.app`` on a free loopback port, behind basic auth."""

    def __init__(self, env: dict[str, str], log_path: Path, extra_env: dict[str, str] | None = None,
                 args: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.prefix = next((a.split("=", 1)[1] for a in args if a.startswith("--url_prefix=")), "")
        self.log_path = log_path
        full = {**os.environ, **env, "FLOWER_BASIC_AUTH": OPERATOR, "STALWART_CONSOLE_READONLY_AUTH": VIEWER,
                "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p),
                **(extra_env or {})}
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "stalwart.cli.main", "flower", "-A", "workers.app", f"--port={self.port}",
                 "--address=127.0.0.1", "--persistent=False", *args],
                env=full, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO_ROOT,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self) -> None:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"stalwart flower exited:\n{self.log()[-3000:]}")
            return self.client().get(f"{self.client().prefix}/api/stalwart/csrf")[0] == 200 and \
                "Connected to" in self.log()

        wait_until(ready, 60, 0.2, "stalwart flower did not start")

    def client(self, auth: str | None = OPERATOR) -> Client:
        return Client(self.base, auth, f"/{self.prefix}" if self.prefix else "")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Client:
    """HTTP with basic auth and a cookie jar (for the ``_xsrf`` cookie)."""

    def __init__(self, base: str, auth: str | None, prefix: str = "") -> None:
        self.base = base
        self.auth = auth
        self.prefix = prefix  # Flower's --url_prefix, for the CSRF token's path
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
                raw: bytes | None = None) -> tuple[int, Any]:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers or {})
        if self.auth is not None:
            req.add_header("Authorization", "Basic " + base64.b64encode(self.auth.encode()).decode())
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with self.opener.open(req, timeout=15) as resp:
                payload = resp.read()
                status = resp.status
        except urllib.error.HTTPError as err:
            payload, status = err.read(), err.code
        except (urllib.error.URLError, ConnectionError):
            return 0, None
        try:
            return status, json.loads(payload or b"null")
        except ValueError:
            return status, payload.decode(errors="replace")

    def get(self, path: str) -> tuple[int, Any]:
        return self.request("GET", path)

    def token(self) -> str:
        status, data = self.get(f"{self.prefix}/api/stalwart/csrf")
        assert status == 200, data
        return str(data["token"])

    def post(self, path: str, body: Any = None, token: bool = True) -> tuple[int, Any]:
        headers = {"X-XSRFToken": self.token()} if token else {}
        return self.request("POST", path, body if body is not None else {}, headers)


@contextmanager
def console(env: dict[str, str], log_path: Path, extra_env: dict[str, str] | None = None,
            prefix: str = "") -> Iterator[Console]:
    """A running console; ``prefix`` runs it under Flower's ``--url_prefix``."""
    server = Console(env, log_path, extra_env, (f"--url_prefix={prefix.strip('/')}",) if prefix else ())
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def chromium_or_skip() -> Path:
    """Debian's Chromium; the test skips without it, except under CI=true where it fails."""
    if CHROMIUM.exists():
        return CHROMIUM
    message = f"no browser at {CHROMIUM}: install Debian's chromium (./dev.sh test does, as root)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true: the browser tests must run; {message}")
    pytest.skip(message)
    raise AssertionError("unreachable")


def screenshot_path(name: str, tmp_dir: Path) -> Path:
    """docs/<name> when STALWART_UPDATE_SCREENSHOTS=1 (for the README), else a temporary file."""
    if os.environ.get("STALWART_UPDATE_SCREENSHOTS") == "1":
        DOCS.mkdir(exist_ok=True)
        return DOCS / name
    return tmp_dir / name
