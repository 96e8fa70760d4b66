"""``stalwart flower``: Flower 2.x with Stalwart's console in its navigation.

Takes Flower's own options and ``FLOWER_*`` environment, as ``celery flower`` does (``--port``,
``--address``, ``--url_prefix``, ``FLOWER_BASIC_AUTH``, OAuth...). ``-A`` names the Celery app
(default: a Stalwart app from the environment, with ``STALWART_TASK_MODULES``).
``STALWART_CONSOLE_READONLY=1`` makes the console read-only for everyone;
``STALWART_CONSOLE_READONLY_AUTH=user:password`` adds logins that may look but not act.
"""

from __future__ import annotations

import argparse
from typing import Any

from stalwart.console import flower as console_flower
from stalwart.console.routes import build

DEFAULT_APP = "stalwart.console.default:app"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "flower", help="run Flower with Stalwart's console (dead letters, breakers, limits, switches, queues)",
        description=__doc__.splitlines()[0] if __doc__ else None,
        epilog="Any other option is Flower's (see `celery flower --help`), e.g. --port=5555 --address=0.0.0.0",
    )
    parser.add_argument("-A", "--app", default=DEFAULT_APP, help=f"the Celery app (default {DEFAULT_APP})")
    parser.set_defaults(func=run, passthrough="flower_args")


def run(args: argparse.Namespace) -> int:
    """Hand over to Flower's own command, with the console added to its app."""
    return console_flower.run(["-A", args.app, "flower", *getattr(args, "flower_args", [])], build)
