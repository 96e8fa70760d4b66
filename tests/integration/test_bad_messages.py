"""Bad messages never kill a worker and are never dropped (issue 2, item 6 and acceptance)."""

from __future__ import annotations

import base64
import json
import pickle
import re
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import redis

from stalwart.app import Stalwart
from stalwart.testing import WorkerProcess, wait_until
from tests.fuzz_items import Generator

pytestmark = pytest.mark.integration

RECORD = "tests.integration.jobs.record"


def envelope(body: bytes, content_type: str, task: str = RECORD, encoding: str = "utf-8") -> dict[str, Any]:
    """A kombu envelope built by hand, the way kombu's Redis transport writes one."""
    task_id = str(uuid.uuid4())
    return {
        "body": base64.b64encode(body).decode(),
        "content-encoding": encoding,
        "content-type": content_type,
        "headers": {
            "lang": "py", "task": task, "id": task_id, "root_id": task_id, "parent_id": None,
            "group": None, "retries": 0, "eta": None, "expires": None, "timelimit": [None, None],
            "argsrepr": "", "kwargsrepr": "", "origin": "test@host", "ignore_result": False,
        },
        "properties": {
            "correlation_id": task_id,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
            "delivery_info": {"exchange": "", "routing_key": "celery"},
            "priority": 0,
        },
    }


def json_body(*args: Any) -> bytes:
    return json.dumps([list(args), {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]).encode()


def raw_text(data: bytes) -> str:
    """How a DLQ entry keeps bytes it could not decode."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(data).decode()


class BadMessages:
    """Builds bad messages of each kind and remembers which DLQ reason each must get."""

    def __init__(self) -> None:
        self.by_tag: dict[str, str] = {}  # hand-built envelopes: delivery tag -> reason
        self.garbage: set[str] = set()  # items the transport must quarantine, as the DLQ keeps them

    def non_json(self, i: int) -> bytes:
        item = f"this is not json #{i}".encode() if i % 2 else b"\x80\x04\x95garbage" + bytes([i % 256])
        self.garbage.add(raw_text(item))
        return item

    def not_an_envelope(self, i: int) -> bytes:
        shapes: list[Any] = [[1, 2, i], {"task": RECORD, "args": [i]}, i, f"str {i}",
                             {"body": "", "headers": [], "properties": {}, "content-type": "x", "n": i}]
        item = json.dumps(shapes[i % len(shapes)]).encode()
        self.garbage.add(raw_text(item))
        return item

    def _envelope(self, message: dict[str, Any], reason: str) -> bytes:
        self.by_tag[message["properties"]["delivery_tag"]] = reason
        return json.dumps(message).encode()

    def pickled(self, i: int) -> bytes:
        body = pickle.dumps(((f"p{i}",), {}, {}))
        message = envelope(body, "application/x-python-serialize", encoding="binary")
        return self._envelope(message, "refused_content")

    def undecodable_json(self, i: int) -> bytes:
        return self._envelope(envelope(b"{[not json " + str(i).encode(), "application/json"), "malformed")

    def unregistered(self, i: int) -> bytes:
        message = envelope(json_body(f"u{i}"), "application/json", task=f"no.such.task_{i % 3}")
        return self._envelope(message, "unregistered")

    def kinds(self) -> list[Callable[[int], bytes]]:
        return [self.non_json, self.not_an_envelope, self.pickled, self.undecodable_json, self.unregistered]


def drained(r: redis.Redis) -> bool:
    return r.llen("celery") == 0 and r.hlen("unacked") == 0


def test_hundred_bad_messages_among_hundred_jobs(
    app: Stalwart, make_worker: Callable[..., WorkerProcess], r: redis.Redis
) -> None:
    bad = BadMessages()
    kinds = bad.kinds()
    for i in range(100):
        # Bad first: a worker that dies of it would strand the valid job behind.
        r.lpush("celery", kinds[i % len(kinds)](i))
        app.send_task(RECORD, args=[f"v{i}"])
    worker = make_worker()

    wait_until(lambda: len(r.keys("effect:v*")) == 100, 60, 0.2, "valid jobs did not all finish")
    wait_until(lambda: app.stalwart.dlq.stats()["total"] >= 100, 30, 0.2, "bad messages not all dead-lettered")
    wait_until(lambda: drained(r), 30, 0.2, "queue not drained")

    assert worker.alive
    assert "CRITICAL" not in worker.log()
    assert all(int(v) == 1 for v in r.mget(r.keys("effect:v*")))
    entries = list(app.stalwart.dlq.iter())
    assert len(entries) == 100
    assert Counter(e.reason for e in entries) == {"malformed": 60, "refused_content": 20, "unregistered": 20}
    for entry in entries:
        if entry.source in bad.by_tag:
            assert entry.reason == bad.by_tag.pop(entry.source), entry
        else:
            assert entry.reason == "malformed"
            bad.garbage.remove(entry.raw)  # every raw item is kept, each exactly once
    assert bad.by_tag == {}
    assert bad.garbage == set()
    assert app.stalwart.dlq.stats()["by_reason"] == {"malformed": 60, "refused_content": 20, "unregistered": 20}


def test_bad_message_entries_carry_what_an_operator_needs(
    app: Stalwart, make_worker: Callable[..., WorkerProcess], r: redis.Redis
) -> None:
    unregistered = envelope(json_body("a", 2), "application/json", task="billing.refund")
    pickled = envelope(pickle.dumps((("x",), {}, {})), "application/x-python-serialize", encoding="binary")
    undecodable = envelope(b"\xff\xfe{", "application/json")
    for item in (b"\x00\x01 binary junk", json.dumps(unregistered), json.dumps(pickled), json.dumps(undecodable)):
        r.lpush("celery", item)
    app.send_task(RECORD, args=["behind"])
    worker = make_worker()

    wait_until(lambda: r.get("effect:behind"), 30, message="the valid job behind the bad ones never ran")
    wait_until(lambda: app.stalwart.dlq.stats()["total"] == 4, 30)
    by_source = {e.source: e for e in app.stalwart.dlq.iter()}

    entry = by_source[unregistered["properties"]["delivery_tag"]]
    assert (entry.reason, entry.task) == ("unregistered", "billing.refund")
    assert entry.task_id == unregistered["headers"]["id"]
    assert (entry.args, entry.kwargs) == (["a", 2], {})
    assert entry.queue == "celery"
    assert entry.replayable

    entry = by_source[pickled["properties"]["delivery_tag"]]
    assert (entry.reason, entry.task) == ("refused_content", RECORD)
    assert "x-python-serialize" in (entry.exc_message or "")
    assert entry.raw is not None
    assert not entry.replayable

    entry = by_source[undecodable["properties"]["delivery_tag"]]
    assert (entry.reason, entry.task_id) == ("malformed", undecodable["headers"]["id"])
    assert entry.raw == raw_text(b"\xff\xfe{")

    [junk] = [e for e in by_source.values() if e.task is None]
    assert junk.reason == "malformed"
    assert junk.raw == raw_text(b"\x00\x01 binary junk")
    assert junk.queue == "celery"
    assert worker.alive


def test_a_tagged_non_envelope_is_dead_lettered_once_and_not_redelivered(
    app: Stalwart, make_worker: Callable[..., WorkerProcess], r: redis.Redis
) -> None:
    """An object with a delivery tag but no body: the fetch records it unacked under that tag, and
    the quarantine envelope keeps the tag, so acknowledging the DLQ entry clears the record (a new
    tag would leave it to be restored and dead-lettered again every visibility timeout)."""
    make_worker()
    r.lpush("celery", json.dumps({"properties": {"delivery_tag": "tag-1", "delivery_info": {}}}))
    wait_until(lambda: app.stalwart.dlq.stats()["total"] == 1, 20, message="not dead-lettered")
    wait_until(lambda: r.hlen("unacked") == 0, 10, message="unacked record left behind")
    [entry] = app.stalwart.dlq.iter()
    assert (entry.source, entry.reason) == ("tag-1", "malformed")


# -- generated bad items among valid jobs: every one accounted for -----------------------------------

NUMBERED = re.compile(rb"fz-(?:id-|msg-|mut-)?(\d+)")


def _number(text: str | bytes | None) -> int | None:
    data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else (text or b"")
    match = NUMBERED.search(data)
    return int(match.group(1)) if match else None


def outcomes(app: Stalwart, r: redis.Redis) -> tuple[Counter[int], Counter[str], list[str]]:
    """(item numbers seen run/dead/delayed, raw texts of unnumbered DLQ entries, DLQ reasons)."""
    numbered: Counter[int] = Counter()
    unnumbered: Counter[str] = Counter()
    reasons = []
    for task_id in r.lrange("fz:ran", 0, -1):
        numbered[_number(task_id) or -1] += 1
    for entry in app.stalwart.dlq.iter():
        reasons.append(entry.reason)
        n = next((m for m in map(_number, (entry.task_id, entry.source, entry.raw)) if m is not None), None)
        if n is None:
            unnumbered[entry.raw or ""] += 1
        else:
            numbered[n] += 1
    for list_key in r.smembers(app.stalwart.keys.registry("delayed")):
        for payload in r.zrange(app.stalwart.keys.delayed(list_key.decode()), 0, -1):
            numbered[_number(payload) or -1] += 1
    return numbered, unnumbered, reasons


def test_generated_bad_items_among_valid_jobs_are_all_accounted_for(
    app: Stalwart, make_worker: Callable[..., WorkerProcess], r: redis.Redis
) -> None:
    generator = Generator(seed=9)
    items = [generator.item(n) for n in range(250)]
    for n, item in enumerate(items):
        r.lpush("celery", item)
        if n % 5 < 2:  # 100 valid jobs among them, a bad item in front of each
            app.send_task(RECORD, args=[f"ok{n}"])
    worker = make_worker(env={"STALWART_TASK_MODULES": "tests.integration.jobs,tests.integration.jobs_fuzz"})

    expected_numbered = Counter(n for n, item in enumerate(items) if _number(item) is not None)
    expected_raw = Counter(raw_text(item[: 64 * 1024]) for item in items if _number(item) is None)

    def settled() -> bool:
        numbered, unnumbered, _ = outcomes(app, r)
        return (len(r.keys("effect:ok*")) == 100 and r.llen("celery") == 0 and r.hlen("unacked") == 0
                and sum(numbered.values()) + sum(unnumbered.values()) >= len(items))

    wait_until(settled, 150, 0.5, "the worker did not settle every item")
    numbered, unnumbered, reasons = outcomes(app, r)
    assert numbered == expected_numbered  # each item run once, dead-lettered once, or delayed: never twice
    assert unnumbered == expected_raw  # unreadable items are dead-lettered with their raw bytes
    assert set(reasons) <= {"malformed", "expired", "bad_arguments", "unregistered", "poison", "refused_content"}
    assert all(int(v) == 1 for v in r.mget(r.keys("effect:ok*")))
    assert r.xlen(app.stalwart.keys.prefix + ":{broker}:quarantine") == 0
    log = worker.log()
    assert worker.alive
    assert "CRITICAL" not in log
    assert "Unrecoverable" not in log
    app.send_task(RECORD, args=["after"])  # and it is still consuming
    wait_until(lambda: r.get("effect:after") == b"1", 30, message="the worker stopped consuming")
