"""Seeded generators of bad queue items for worker-level runs (the unit tests use hypothesis).

Every item is built around one identity (its delivery tag, message id and task id all carry the
item's number) so a test can account for it: run once, dead-lettered, or waiting in a delayed set.
"""

from __future__ import annotations

import base64
import json
import random
import uuid
from typing import Any

FUZZ_TASK = "tests.integration.jobs_fuzz.record_any"
TIMES = ["2000-01-01T00:00:00+00:00", "2999-01-01T00:00:00+00:00", "1999-12-31T23:59:59", "soon", "2999-13-01"]
HEADERS = ["task", "id", "shadow", "eta", "expires", "group", "group_index", "retries", "timelimit", "root_id",
           "parent_id", "argsrepr", "kwargsrepr", "origin", "ignore_result", "replaced_task_nesting",
           "stamped_headers", "stamps", "lang", "compression", "called_directly", "update", "get", "stalwart"]
META = ["msg", "gen", "key", "trace", "deadline", "sent", "first_seen", "history"]
PROPERTIES = ["delivery_tag", "body_encoding", "delivery_info", "priority", "correlation_id", "reply_to"]
IDENTITY = {("headers", "id"), ("headers", "stalwart", "key"), ("headers", "stalwart", "msg"),
            ("properties", "delivery_tag")}


def envelope(n: int, *, task: str = FUZZ_TASK, plain: bool = False, args: list[Any] | None = None) -> dict[str, Any]:
    """A valid Celery message for item ``n`` (tag ``fz-<n>``, task id ``fz-id-<n>``)."""
    task_id = f"fz-id-{n}"
    headers: dict[str, Any] = {
        "lang": "py", "task": task, "id": task_id, "shadow": None, "eta": None, "expires": None, "group": None,
        "group_index": None, "retries": 0, "timelimit": [None, None], "root_id": task_id, "parent_id": None,
        "argsrepr": repr(args), "kwargsrepr": "{}", "origin": "fuzz@host", "ignore_result": False,
    }
    if not plain:
        headers["stalwart"] = {"msg": f"fz-msg-{n}", "gen": 0, "trace": f"fz-trace-{n}", "sent": 0}
    body = [args if args is not None else [f"fz-{n}"], {}, {"callbacks": None, "errbacks": None, "chain": None,
                                                           "chord": None}]
    return {
        "body": base64.b64encode(json.dumps(body).encode()).decode(),
        "content-encoding": "utf-8", "content-type": "application/json", "headers": headers,
        "properties": {"correlation_id": task_id, "reply_to": str(uuid.uuid4()), "delivery_mode": 2,
                       "delivery_info": {"exchange": "", "routing_key": "celery"}, "priority": 0,
                       "body_encoding": "base64", "delivery_tag": f"fz-{n}"},
    }


class Generator:
    """Bad items from a seeded random source: bytes, JSON values, deep nesting, and envelopes with
    fields removed or replaced by values of any type (identity fields stay unique)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def scalar(self) -> Any:
        rng = self.rng
        return rng.choice([
            None, True, False, 0, -1, 2**63, 1.5, float("inf"), float("nan"), "", "x", "\ud800",
            "2999-01-01T00:00:00+00:00", "a" * rng.randint(0, 300), rng.randint(-(2**40), 2**40), rng.random(),
        ])

    def value(self, depth: int = 0) -> Any:
        roll = self.rng.random()
        if depth > 3 or roll < 0.5:
            return self.scalar()
        if roll < 0.75:
            return [self.value(depth + 1) for _ in range(self.rng.randint(0, 3))]
        return {self.rng.choice(["a", "task", "id", "", "__x"]): self.value(depth + 1)
                for _ in range(self.rng.randint(0, 3))}

    def deep(self) -> Any:
        value: Any = self.scalar()
        for level in range(self.rng.choice([101, 150, 400, 800])):  # json.dumps recurses: < ~950
            value = [value] if level % 2 else {"k": value}
        return value

    def mutated(self, n: int) -> dict[str, Any]:
        env = envelope(n, plain=self.rng.random() < 0.5)
        paths = ([("body",), ("content-type",), ("content-encoding",), ("headers",), ("properties",)]
                 + [("headers", h) for h in HEADERS] + [("headers", "stalwart", m) for m in META]
                 + [("properties", p) for p in PROPERTIES])
        for _ in range(self.rng.randint(1, 3)):
            path = self.rng.choice(paths)
            if path in IDENTITY and self.rng.random() < 0.5:
                _set(env, path, f"fz-mut-{n}-{self.rng.random()}")
            elif self.rng.random() < 0.3:
                _set(env, path, None, delete=True)
            else:
                _set(env, path, self.rng.choice([self.value(), self.deep(), self.rng.choice(TIMES)]))
        if self.rng.random() < 0.2:  # a body that is not [args, kwargs, embed] of the right types
            body = self.rng.choice([self.value(), self.deep(), [self.value(), self.value(), self.value()]])
            env["body"] = base64.b64encode(json.dumps(body).encode()).decode()
        return env

    def item(self, n: int) -> bytes:
        """Item ``n``: one of eight kinds, the mutated envelope the commonest."""
        kind = self.rng.choice(["bytes", "json", "deep", "empty", "timed", "big", "mutated", "mutated", "mutated"])
        if kind == "bytes":
            return bytes(self.rng.randrange(256) for _ in range(self.rng.randint(1, 200)))
        if kind == "json":
            return json.dumps(self.value()).encode()
        if kind == "deep":  # written out, so it can be deeper than Python's json can write
            depth = self.rng.choice([101, 999, 1001, 5000])
            return b'{"k":[' * depth + b"1" + b"]}" * depth
        if kind == "empty":
            return b""
        if kind == "timed":  # a plain Celery message: eta/expires past, future or garbage
            env = envelope(n, plain=True)
            env["headers"]["eta"] = self.rng.choice([*TIMES, None])
            env["headers"]["expires"] = self.rng.choice([*TIMES, None])
            return json.dumps(env).encode()
        if kind == "big":
            env = envelope(n, args=["x" * self.rng.randint(100_000, 1_500_000)])
            return json.dumps(env).encode()
        return json.dumps(self.mutated(n)).encode()


def _set(env: Any, path: tuple[str, ...], value: Any, delete: bool = False) -> None:
    for part in path[:-1]:
        if not isinstance(env, dict) or not isinstance(env.get(part), dict):
            return
        env = env[part]
    if isinstance(env, dict):
        if delete:
            env.pop(path[-1], None)
        else:
            env[path[-1]] = value
