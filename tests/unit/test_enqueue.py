"""Enqueue-side translation of options into the stalwart headers, with a frozen clock."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any

import pytest

from stalwart import ConfigurationError
from stalwart.broker.decode import CLOCK_FIELD, LOCAL_CLOCK
from stalwart.enqueue.translate import current_trace, translate
from stalwart.job.header import DELAY_HEADER, HEADER, Meta

NOW = 1_700_000_000.0  # seconds since the epoch, frozen
NOW_MS = int(NOW * 1000)


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = SimpleNamespace(time=lambda: NOW)
    monkeypatch.setattr("stalwart.enqueue.translate.time", clock)
    monkeypatch.setattr("stalwart.job.header.time", clock)


def at(seconds_from_now: float, tz: dt.tzinfo | None = dt.timezone.utc) -> dt.datetime:
    when = dt.datetime.fromtimestamp(NOW + seconds_from_now, tz=dt.timezone.utc)
    return when if tz is not None else when.replace(tzinfo=None)


def run(**options: Any) -> tuple[Meta, dict[str, Any]]:
    meta = translate(options)
    return meta, options


def test_plain_job_gets_a_fresh_header_and_no_delay() -> None:
    meta, options = run(queue="celery")
    assert options["queue"] == "celery"
    # sent is on this process's clock, marked so: the transport moves it onto the Redis clock
    assert options["headers"] == {HEADER: {**meta.to_header(), CLOCK_FIELD: LOCAL_CLOCK}}
    assert meta.sent == NOW_MS
    assert meta.deadline is None
    assert meta.key is None


@pytest.mark.parametrize(
    ("options", "delay_ms"),
    [
        ({"countdown": 5}, 5000),
        ({"countdown": 0.25}, 250),
        ({"eta": at(12)}, 12000),
        ({"eta": at(3, tz=None)}, 3000),  # naive datetimes are UTC
        ({"eta": at(3, tz=dt.timezone(dt.timedelta(hours=5)))}, 3000),
        ({"countdown": 2, "eta": at(60)}, 2000),  # countdown wins, as in Celery
    ],
)
def test_countdown_and_eta_become_the_delay_header(options: dict[str, Any], delay_ms: int) -> None:
    _, out = run(**options)
    assert out["headers"][DELAY_HEADER] == delay_ms
    assert "countdown" not in out
    assert "eta" not in out  # never Celery's eta: nothing waits in a worker's memory


@pytest.mark.parametrize("options", [{"countdown": 0}, {"countdown": -3}, {"eta": at(-10)}])
def test_no_delay_header_for_due_jobs(options: dict[str, Any]) -> None:
    _, out = run(**options)
    assert DELAY_HEADER not in out["headers"]


@pytest.mark.parametrize(
    ("options", "deadline_ms"),
    [
        ({"expires": 30}, NOW_MS + 30_000),
        ({"deadline": 10.5}, NOW_MS + 10_500),
        ({"expires": at(45)}, NOW_MS + 45_000),
        ({"deadline": at(20), "expires": 60}, NOW_MS + 20_000),  # the earlier one wins
        ({"deadline": 90, "expires": at(15)}, NOW_MS + 15_000),
    ],
)
def test_expires_and_deadline_become_an_absolute_deadline(
    options: dict[str, Any], deadline_ms: int
) -> None:
    meta, out = run(**options)
    assert meta.deadline == deadline_ms
    assert out["headers"][HEADER]["deadline"] == deadline_ms
    assert "expires" not in out  # Celery would revoke silently; Stalwart dead-letters "expired"
    assert "deadline" not in out


@pytest.mark.parametrize(
    "options",
    [{"countdown": "soon"}, {"eta": "tomorrow"}, {"expires": True}, {"deadline": [1]}],
)
def test_bad_times_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        run(**options)


def test_idempotency_key_goes_into_the_header() -> None:
    meta, out = run(idempotency_key="order-7")
    assert meta.key == "order-7"
    assert out["headers"][HEADER]["key"] == "order-7"
    assert "idempotency_key" not in out


@pytest.mark.parametrize("key", ["", 7])
def test_bad_idempotency_key_is_refused(key: object) -> None:
    with pytest.raises(ConfigurationError):
        run(idempotency_key=key)


def test_explicit_trace_id_is_carried() -> None:
    meta, out = run(trace_id="trace-abc")
    assert meta.trace == "trace-abc"
    assert out["headers"][HEADER]["trace"] == "trace-abc"
    assert "trace_id" not in out


def test_jobs_enqueued_from_a_job_inherit_its_trace() -> None:
    token = current_trace.set("parent-trace")
    try:
        assert run()[0].trace == "parent-trace"
        assert run(trace_id="own")[0].trace == "own"
    finally:
        current_trace.reset(token)


def test_an_existing_header_is_kept_not_replaced() -> None:
    """A successor (retry, deferral) already carries its job's header."""
    original = Meta(msg="m1", gen=2, key="k", trace="t1", deadline=NOW_MS + 5000, sent=NOW_MS - 9000,
                    history=[{"attempt": 1}])
    token = current_trace.set("someone-else")
    try:
        meta, out = run(headers={HEADER: original.to_header(), "other": 1}, countdown=1)
    finally:
        current_trace.reset(token)
    assert meta == original
    assert out["headers"]["other"] == 1
    assert out["headers"][DELAY_HEADER] == 1000


def test_meta_round_trips_through_the_header() -> None:
    meta = Meta(msg="m", gen=3, key="order-1", trace="t", deadline=NOW_MS + 1, sent=NOW_MS,
                first_seen=NOW_MS - 5, history=[{"attempt": 1, "exc_type": "ValueError"}])
    assert Meta.from_header(meta.to_header()) == meta


def test_minimal_meta_header_omits_empty_fields() -> None:
    header = Meta(msg="m", trace="t", sent=NOW_MS).to_header()
    assert header == {"msg": "m", "gen": 0, "trace": "t", "sent": NOW_MS}


@pytest.mark.parametrize(
    "raw",
    [None, "text", 3, [], {"gen": "x", "deadline": "soon", "history": "none", "sent": None}],
)
def test_meta_parses_foreign_headers_leniently(raw: object) -> None:
    meta = Meta.from_header(raw)
    assert meta.gen == 0
    assert meta.deadline is None
    assert meta.history == []
    assert meta.sent == NOW_MS
    assert meta.msg
    assert meta.trace


def test_meta_history_keeps_only_records() -> None:
    assert Meta.from_header({"history": [{"attempt": 1}, "junk", 3]}).history == [{"attempt": 1}]


def test_successor_is_a_new_message_of_the_same_job() -> None:
    meta = Meta(key="k", trace="t", deadline=NOW_MS + 100, history=[{"attempt": 1}])
    nxt = meta.successor(gen=meta.gen + 1)
    assert nxt.msg != meta.msg
    assert (nxt.key, nxt.trace, nxt.deadline, nxt.sent) == (meta.key, meta.trace, meta.deadline, meta.sent)
    assert nxt.gen == 1
    nxt.history.append({"attempt": 2})
    assert meta.history == [{"attempt": 1}]  # not shared
