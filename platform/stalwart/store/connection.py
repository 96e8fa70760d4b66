"""Redis clients with short timeouts, so a dead Redis is noticed, not waited on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException
from redis.retry import Retry

from stalwart.errors import StoreUnavailable


def client_from_url(url: str, timeout: float = 2.0, **options: Any) -> redis.Redis:
    """A client for ``url`` whose calls fail after ``timeout`` seconds instead of hanging.

    ``redis+cluster://host:port`` (or ``rediss+cluster://``) gives a Redis Cluster client
    bootstrapped from that node. Every Stalwart script keeps its keys in one hash slot, so the
    cluster client serves wherever a single-node one does; it is typed as one for that reason.
    """
    options.setdefault("socket_timeout", timeout)
    options.setdefault("socket_connect_timeout", timeout)
    scheme, sep, rest = url.partition("://")
    if sep and scheme.endswith("+cluster"):
        try:  # a cluster client connects to its seed node here, not on its first command
            cluster = redis.RedisCluster.from_url(f"{scheme.removesuffix('+cluster')}://{rest}", **options)
        except (redis.RedisError, RedisClusterException) as exc:
            raise StoreUnavailable(f"Redis Cluster at {redact(url)} unreachable: {exc}") from exc
        return cast(redis.Redis, cluster)
    options.setdefault("health_check_interval", 30)
    return redis.Redis.from_url(url, **options)


def redact(url: str) -> str:
    """The URL with its password replaced, safe to log."""
    if "@" not in url:
        return url
    scheme, rest = url.split("://", 1) if "://" in url else ("", url)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0] if ":" in creds else ""
    shown = f"{user}:***" if user else "***"
    return f"{scheme}://{shown}@{host}" if scheme else f"{shown}@{host}"


def pinger(url: str, timeout: float) -> Callable[[], None]:
    """A check that PINGs the Redis at ``url`` once, without retrying; raises when it does not answer."""
    client = client_from_url(url, timeout, retry=Retry(NoBackoff(), 0))

    def check() -> None:
        client.ping()

    return check
