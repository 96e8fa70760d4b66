"""Pure parts of replay: which entries may be replayed and the header a replayed job carries."""

from __future__ import annotations

from typing import Any

import pytest

from stalwart.dlq.entry import DeadLetter
from stalwart.dlq.replay import entry_meta, job_key, replay, successor_meta, unreplayable_reason
from stalwart.errors import DLQError

ENVELOPE_HEADERS = {"msg": "m1", "gen": 4, "key": "order-7", "trace": "tr", "sent": 1000,
                    "deadline": 2000, "first_seen": 900, "history": [{"attempt": 1}]}


def entry(**fields: Any) -> DeadLetter:
    base: dict[str, Any] = {"id": "m1", "reason": "exhausted", "task": "t.x", "task_id": "tid",
                            "headers": dict(ENVELOPE_HEADERS)}
    return DeadLetter(**{**base, **fields})


def test_successor_keeps_key_trace_history_and_drops_deadline_and_gen() -> None:
    meta = successor_meta(entry())
    assert (meta.key, meta.trace, meta.history, meta.first_seen) == ("order-7", "tr", [{"attempt": 1}], 900)
    assert (meta.gen, meta.deadline) == (0, None)
    assert meta.msg != "m1"
    assert meta.sent > 1000


def test_consumer_entries_carry_the_whole_celery_header_set() -> None:
    celery_headers = {"task": "t.x", "id": "tid", "stalwart": {"msg": "m9", "key": "k9", "trace": "t9"}}
    e = entry(reason="unregistered", headers=celery_headers)
    assert entry_meta(e).key == "k9"
    assert job_key(e) == "k:k9"
    assert unreplayable_reason(e) is None


def test_job_key_falls_back_to_the_task_id() -> None:
    assert job_key(entry(headers={"msg": "m1"})) == "t:tid"
    assert job_key(entry(headers={})) == "t:tid"


@pytest.mark.parametrize(("fields", "needle"), [
    ({"reason": "malformed", "task": None, "task_id": None}, "malformed"),
    ({"reason": "refused_content"}, "refused_content"),
    ({"reason": "unregistered", "task_id": None}, "no task name or task id"),
])
def test_unreplayable_entries_say_why(fields: dict[str, Any], needle: str) -> None:
    why = unreplayable_reason(entry(**fields))
    assert why is not None
    assert needle in why


def test_replay_needs_a_selection() -> None:
    with pytest.raises(DLQError, match="say which entries"):
        replay(object())  # type: ignore[arg-type]
