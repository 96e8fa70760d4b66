"""``stalwart dev``: run the whole platform locally (see :mod:`stalwart.dev`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from stalwart.dev.stack import DevOptions
from stalwart.dev.stack import run as run_dev


def register(sub: Any) -> None:
    """Add the ``dev`` subcommand."""
    parser = sub.add_parser(
        "dev",
        help="run Redis (embedded unless STALWART_REDIS_URL is set), a worker, Flower and a demo",
        description="Start an embedded redis-server (when STALWART_REDIS_URL is unset), a worker, "
        "Flower behind basic auth (FLOWER_BASIC_AUTH, or a password generated for this session) "
        "and some demo jobs. Ctrl-C stops everything it started.",
    )
    parser.add_argument("--concurrency", "-c", type=int, default=2, help="worker processes (2)")
    parser.add_argument("--flower-port", type=int, default=5555, help="Flower's port (5555)")
    parser.add_argument("--no-flower", action="store_true", help="do not start Flower")
    parser.add_argument("--no-demo", action="store_true", help="do not enqueue demo jobs")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="where the embedded Redis keeps its AOF and logs (./.stalwart)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the options and hand over to :func:`stalwart.dev.stack.run`."""
    options = DevOptions(
        concurrency=args.concurrency, flower=not args.no_flower, flower_port=args.flower_port,
        demo=not args.no_demo, data_dir=args.data_dir,
    )
    return run_dev(options)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="stalwart")
    register(parser.add_subparsers(dest="command", required=True))
    ns = parser.parse_args(["dev", *sys.argv[1:]])
    sys.exit(ns.func(ns))
