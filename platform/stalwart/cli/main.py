"""Entry point of the ``stalwart`` command. Each subcommand lives in its own module.

A subcommand module exposes ``register(subparsers)``, which adds its parser and sets
``func(args) -> int`` as the parser default (and ``passthrough``, the attribute that receives
the options it does not know, when it hands them on to another program). Errors from Stalwart
become one clear line on stderr and exit status 2; an unreachable Redis is named with its
(redacted) URL.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

import redis
from kombu.exceptions import OperationalError
from redis.exceptions import RedisClusterException

from stalwart.errors import StalwartError, StoreUnavailable
from stalwart.settings import Settings
from stalwart.store.connection import redact

COMMANDS = ["dlq", "dev", "switch", "status", "breaker", "limits", "flower"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stalwart", description="Operate a Stalwart deployment.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"stalwart.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    passthrough = getattr(args, "passthrough", None)
    if passthrough:  # a command that hands its other options to another program (flower)
        setattr(args, passthrough, extra)
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.func(args))
    except (StoreUnavailable, *UNREACHABLE) as exc:
        print(f"stalwart: cannot reach Redis ({where()}): {reason(exc)}", file=sys.stderr)
        return 2
    except StalwartError as exc:
        print(f"stalwart: {exc}", file=sys.stderr)
        return 2


# Connection trouble from redis-py or kombu (the broker) that no store call wrapped.
UNREACHABLE = (redis.ConnectionError, redis.TimeoutError, RedisClusterException, OperationalError)


def where() -> str:
    """The Redis URLs the command used, passwords redacted: state store and broker when they differ."""
    try:
        settings = Settings.from_env()
    except StalwartError:
        return "its URL is not valid"
    store, broker = redact(settings.redis_url), redact(settings.broker_url)
    return f"state store {store}" if store == broker else f"state store {store}, broker {broker}"


def reason(exc: BaseException) -> str:
    cause = exc.__cause__ if isinstance(exc, StoreUnavailable) and exc.__cause__ else exc
    return " ".join(str(cause).split()) or type(cause).__name__


if __name__ == "__main__":
    sys.exit(main())
