"""Red team (issue 11 point 2 / issue 10 point 4): DLQ filters, cursors and page cost, fixed: a
negative bound is that bound, a garbled cursor is refused, a page request's scan is bounded."""

from __future__ import annotations

import pytest

from stalwart.app import Stalwart
from stalwart.console.api import selection_of
from stalwart.dlq import queue
from stalwart.dlq.entry import DeadLetter, Filter
from stalwart.dlq.times import parse_time
from stalwart.errors import DLQError


def dead(i: int, **fields: object) -> DeadLetter:
    base: dict[str, object] = {"reason": "exhausted", "task": "rt.task", "task_id": f"rt-{i}", "queue": "celery",
                               "args": [i], "exc_type": "E", "exc_message": f"boom {i}", "options": {},
                               "headers": {"msg": f"m-{i}", "gen": 0}, "source": f"rt-{i}"}
    return DeadLetter(**{**base, **fields})  # type: ignore[arg-type]


def test_an_until_before_1970_selects_no_entry(app: Stalwart) -> None:
    """`until` before the epoch is negative: it was read as 'no bound' (every entry); now it is
    the bound, and no entry is dead before it."""
    dlq = app.stalwart.dlq
    dlq.add_many([dead(i) for i in range(5)])
    until = parse_time("1969-12-31T00:00:00Z")
    assert until < 0
    flt = selection_of({"filter": {"until": "1969-12-31T00:00:00Z"}}).flt
    assert flt is not None
    assert dlq.count(flt) == 0, f"{dlq.count(flt)} entries 'dead before 1970'"


def test_a_negative_until_in_a_purge_deletes_nothing(app: Stalwart) -> None:
    """Same through the JSON body of a bulk action (`until_ms: -1` passes the int check)."""
    dlq = app.stalwart.dlq
    dlq.add_many([dead(i) for i in range(5)])
    flt = selection_of({"filter": {"until_ms": -1}}).flt
    assert flt is not None
    assert dlq.purge(flt) == 0
    assert dlq.count() == 5, f"left {dlq.count()} of 5"


def test_a_garbled_cursor_is_refused(app: Stalwart) -> None:
    """A cursor that does not parse was read as 'no cursor' (the first page again); now DLQError
    (the API's 400)."""
    dlq = app.stalwart.dlq
    dlq.add_many([dead(i) for i in range(6)])
    first = dlq.page(Filter(), None, 3)
    assert len(first.entries) == 3
    with pytest.raises(DLQError):
        dlq.page(Filter(), "not-a-cursor", 3)


def test_a_unicode_digit_cursor_is_refused(app: Stalwart) -> None:
    """The cursor regex used \\d (any Unicode digit): Arabic-Indic digits passed and gave an empty
    page; now only ASCII digits form a cursor."""
    dlq = app.stalwart.dlq
    dlq.add_many([dead(i) for i in range(3)])
    cursor = "\u0660" * 14 + "-" + "\u0660" * 14 + "-x"
    with pytest.raises(DLQError):
        dlq.page(Filter(), cursor, 3)


def test_a_search_matching_nothing_is_bounded_per_request(app: Stalwart, monkeypatch: pytest.MonkeyPatch) -> None:
    """DeadLetterQueue.page stops after PAGE_BUDGET index members per request (not per script)
    and returns a cursor to go on from; following the cursors reaches the one match at the end.
    (The red team's version used 60,000 entries and the real budget; a smaller budget proves the
    same bound quickly.)"""
    monkeypatch.setattr(queue, "PAGE_BUDGET", 500)
    dlq = app.stalwart.dlq
    dlq.add(dead(-1, exc_message="the needle", dead_at=1))  # the oldest entry: found last
    dlq.add_many([dead(i, exc_message=f"timeout talking to host-{i % 50}") for i in range(2_000)])
    calls: list[int] = []
    original = dlq.store.page

    def spy(**kwargs: object):  # type: ignore[no-untyped-def]
        found = original(**kwargs)  # type: ignore[arg-type]
        calls.append(found.scanned)
        return found

    dlq.store.page = spy  # type: ignore[method-assign]
    page = dlq.page(Filter(search="needle"), None, 50)
    assert page.entries == []
    assert page.cursor is not None
    assert sum(calls) <= 500, f"one page request scanned {sum(calls)} members"
    requests = 1
    while not page.entries:
        assert page.cursor is not None
        assert requests < 10
        page = dlq.page(Filter(search="needle"), page.cursor, 50)
        requests += 1
    assert [e.task_id for e in page.entries] == ["rt--1"]
    assert page.cursor is None
    assert requests == 5  # 2,001 members, 500 a request
