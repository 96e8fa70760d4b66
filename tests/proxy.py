"""A TCP proxy between workers and redis-server that a test controls: freeze, drop, refuse, delay.

* ``freeze(waiting_on=b"BLMOVE")``: every connection open now (or only those whose last command
  contains ``waiting_on``) stops forwarding, silently, in both directions; its sockets stay open (a
  half-open connection: a NAT or firewall that forgot it, a frozen host). Later ones work.
* ``drop()``: every open connection is closed.
* ``refuse(seconds)``: for that long, open connections are closed and new ones are closed as soon as
  they are accepted.
* ``delay(seconds)``: every chunk is forwarded that much later.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest


class Link:
    """One client connection and its connection to the server, pumped by two threads."""

    def __init__(self, proxy: Proxy, client: socket.socket, server: socket.socket) -> None:
        self.proxy = proxy
        self.client, self.server = client, server
        self.frozen = threading.Event()
        self.closed = threading.Event()
        self.last_sent = b""  # the last chunk the client sent
        for src, dst in ((client, server), (server, client)):
            threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while not self.closed.is_set():
                data = src.recv(65536)
                if not data:
                    break
                if self.frozen.is_set():  # swallow it and everything after: nothing is answered
                    self.closed.wait()
                    return
                if src is self.client:
                    self.last_sent = data
                if self.proxy.latency:
                    time.sleep(self.proxy.latency)
                dst.sendall(data)
        except OSError:
            pass
        if not self.frozen.is_set():
            self.close()

    def close(self) -> None:
        self.closed.set()
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


class Proxy:
    """Listens on a free local port and forwards to ``target`` (host, port)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.links: list[Link] = []
        self.accepted = 0
        self.latency = 0.0
        self._refuse_until = 0.0
        self._lock = threading.Lock()
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            if time.monotonic() < self._refuse_until:
                client.close()
                continue
            try:
                server = socket.create_connection(self.target, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self.links.append(Link(self, client, server))

    def _open(self) -> list[Link]:
        with self._lock:
            self.links = [link for link in self.links if not link.closed.is_set()]
            return list(self.links)

    def freeze(self, waiting_on: bytes | None = None) -> int:
        """Freeze every open connection (or those whose last command has ``waiting_on``); how many."""
        links = [link for link in self._open() if not link.frozen.is_set()
                 and (waiting_on is None or waiting_on in link.last_sent)]
        for link in links:
            link.frozen.set()
        return len(links)

    def drop(self) -> None:
        for link in self._open():
            link.close()

    def refuse(self, seconds: float) -> None:
        self._refuse_until = time.monotonic() + seconds
        self.drop()

    def delay(self, seconds: float) -> None:
        self.latency = seconds

    def stop(self) -> None:
        self._stopped = True
        self.listener.close()
        for link in self._open():
            link.close()


@pytest.fixture
def proxy(redis_url: str) -> Iterator[Proxy]:
    """A proxy in front of the test's redis-server; stopped (every connection closed) at teardown."""
    host, port = redis_url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)
    server = Proxy((host, int(port)))
    yield server
    server.stop()
