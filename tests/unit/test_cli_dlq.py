"""`stalwart dlq` against a real redis-server: parsing, time filters, output formats, replay."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from stalwart.cli.dlq import parse_time
from stalwart.cli.main import build_parser, main
from stalwart.dlq.entry import DeadLetter
from stalwart.dlq.queue import DeadLetterQueue
from stalwart.settings import Settings
from stalwart.store.keys import Keys

NOW = 1_800_000_000_000


@pytest.fixture
def dlq(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> DeadLetterQueue:
    """The DLQ the CLI will see: STALWART_REDIS_URL points it at the test Redis."""
    monkeypatch.setenv("STALWART_REDIS_URL", redis_url)
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    monkeypatch.delenv("STALWART_PREFIX", raising=False)
    settings = Settings.from_env({"STALWART_REDIS_URL": redis_url})
    return DeadLetterQueue(redis.Redis.from_url(redis_url), Keys(settings.prefix), settings)


def make_entry(entry_id: str, **fields: Any) -> DeadLetter:
    defaults: dict[str, Any] = {
        "reason": "exhausted", "task": "tests.integration.jobs.always_fail", "task_id": f"tid-{entry_id}",
        "queue": "celery", "args": [entry_id], "exc_type": "TimeoutError", "exc_message": "never works",
        "options": {},
        "headers": {"msg": entry_id, "gen": 2, "trace": "trace-1", "sent": NOW, "deadline": NOW + 1},
        "attempts": [{"attempt": i, "at": NOW, "host": "h", "duration": 0.1, "exc_type": "TimeoutError",
                      "exc_message": "never works"} for i in (1, 2, 3)],
    }
    return DeadLetter(id=entry_id, **{**defaults, **fields})


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """Run ``stalwart ARGS`` in process; return (exit status, stdout, stderr)."""

    def runner(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            code = main(list(argv))
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return runner


Run = Callable[..., tuple[int, str, str]]

# -- time parsing and argument errors -----------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("90s", NOW - 90_000), ("15m", NOW - 900_000), ("2h", NOW - 7_200_000),
    ("1d", NOW - 86_400_000), ("1w ago", NOW - 7 * 86_400_000), ("1.5h", NOW - 5_400_000),
])
def test_relative_times_count_back_from_now(text: str, expected: int) -> None:
    assert parse_time(text, now_ms=NOW) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("2027-01-15T08:00:00Z", NOW),
    ("2027-01-15T08:00:00", NOW),
    ("2027-01-15T10:00:00+02:00", NOW),
    ("2027-01-15", NOW - 8 * 3_600_000),
])
def test_iso_times_naive_means_utc(text: str, expected: int) -> None:
    assert parse_time(text) == expected


@pytest.mark.parametrize("text", ["yesterday", "15x", "", "2027-13-01"])
def test_bad_times_are_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="ISO-8601"):
        parse_time(text)


@pytest.mark.parametrize(("argv", "needle"), [
    (["dlq", "ls", "--since", "last tuesday"], "is not a time"),
    (["dlq", "ls", "--reason", "tired"], "invalid choice: 'tired'"),
    (["dlq", "ls", "--limit", "0"], "must be >= 1"),
    (["dlq", "ls", "--offset", "x"], "not a whole number"),
    (["dlq", "frobnicate"], "invalid choice"),
])
def test_bad_options_exit_2_with_a_clear_error(run: Run, argv: list[str], needle: str) -> None:
    code, _, err = run(*argv)
    assert code == 2
    assert needle in err


def test_every_command_accepts_json() -> None:
    parser = build_parser()
    for argv in (["ls"], ["show", "x"], ["replay", "--all"], ["purge", "--all"], ["stats"], ["export"]):
        assert parser.parse_args(["dlq", *argv, "--json"]).json is True


# -- ls and show ---------------------------------------------------------------------------------


def test_ls_table_newest_first_and_paginated(dlq: DeadLetterQueue, run: Run) -> None:
    for i in range(5):
        dlq.add(make_entry(f"e{i}"))
    code, out, _ = run("dlq", "ls")
    lines = out.splitlines()
    assert code == 0
    assert lines[0].split() == ["ID", "DEAD_AT", "REASON", "TASK", "TASK_ID", "QUEUE", "ATTEMPTS", "ERROR"]
    assert [ln.split()[0] for ln in lines[1:]] == ["e4", "e3", "e2", "e1", "e0"]
    assert "TimeoutError: never works" in lines[1]
    assert " 3 " in lines[1]
    code, out, err = run("dlq", "ls", "--limit", "2", "--offset", "1")
    assert [ln.split()[0] for ln in out.splitlines()[1:]] == ["e3", "e2"]
    assert "--offset 3" in err


def test_ls_filters_and_json(dlq: DeadLetterQueue, run: Run) -> None:
    dlq.add(make_entry("a", reason="permanent", queue="q1"))
    dlq.add(make_entry("b", reason="exhausted", queue="q2", task="other.task"))
    dlq.add(make_entry("c", reason="poison", queue="q1"))

    def ids(*extra: str) -> list[str]:
        code, out, _ = run("dlq", "ls", "--json", *extra)
        assert code == 0
        return [e["id"] for e in json.loads(out)]

    assert ids() == ["c", "b", "a"]
    assert ids("--queue", "q1") == ["c", "a"]
    assert ids("--reason", "exhausted") == ["b"]
    assert ids("--task", "other.task") == ["b"]
    assert ids("--queue", "q1", "--reason", "poison") == ["c"]
    assert ids("--since", "1h") == ["c", "b", "a"]
    assert ids("--until", "1h") == []
    assert ids("--since", "2999-01-01T00:00:00Z") == []


def test_ls_empty_says_so(dlq: DeadLetterQueue, run: Run) -> None:
    assert run("dlq", "ls")[1].strip() == "(no dead-letter entries match)"


def test_show_prints_context_attempts_and_traceback(dlq: DeadLetterQueue, run: Run) -> None:
    dlq.add(make_entry("x1", headers={"msg": "x1", "key": "order-7", "trace": "tr-9"},
                       traceback="Traceback (most recent call last):\nTimeoutError: never works"))
    code, out, _ = run("dlq", "show", "x1")
    assert code == 0
    assert "idempotency_key: order-7" in out
    assert "trace_id: tr-9" in out
    assert "attempts (3):" in out
    assert "#3" in out
    assert "Traceback (most recent call last)" in out
    code, out, _ = run("dlq", "show", "x1", "--json")
    assert json.loads(out)["attempts"][2]["attempt"] == 3


def test_show_unknown_entry_is_one_clear_line(dlq: DeadLetterQueue, run: Run) -> None:
    code, _, err = run("dlq", "show", "nope")
    assert code == 2
    assert "no dead-letter entry 'nope'" in err
    assert len(err.strip().splitlines()) == 1


# -- replay and purge -----------------------------------------------------------------------------


@pytest.mark.parametrize("verb", ["replay", "purge"])
def test_replay_and_purge_refuse_without_a_selection(dlq: DeadLetterQueue, run: Run, verb: str) -> None:
    dlq.add(make_entry("e1"))
    code, _, err = run("dlq", verb)
    assert code == 2
    assert "say which entries" in err
    assert "--all" in err
    code, _, err = run("dlq", verb, "e1", "--all")
    assert code == 2
    assert "only one of" in err
    assert dlq.stats()["total"] == 1


def queued_messages(r: redis.Redis, queue: str = "celery") -> list[dict[str, Any]]:
    return [json.loads(m) for m in r.lrange(queue, 0, -1)]


def test_replay_republishes_with_fresh_header_then_removes(dlq: DeadLetterQueue, run: Run, r: redis.Redis) -> None:
    dlq.add(make_entry("e1", headers={"msg": "e1", "gen": 3, "key": "order-7", "trace": "tr-9",
                                       "deadline": NOW, "history": [{"attempt": 1}]}))
    job_hash = Keys().job("k:order-7")
    r.hset(job_hash, mapping={"state": "dead", "gen": 3})
    code, out, _ = run("dlq", "replay", "e1")
    assert code == 0
    assert "replayed 1 entry" in out
    assert r.hgetall(job_hash) == {b"gen": b"4", b"task": b"tid-e1"}  # revived: no claim, gen above every copy
    [message] = queued_messages(r)
    headers = message["headers"]
    assert headers["id"] == "tid-e1"
    assert headers["task"] == "tests.integration.jobs.always_fail"
    meta = headers["stalwart"]
    assert meta["key"] == "order-7"
    assert meta["trace"] == "tr-9"
    assert meta["gen"] == 4
    assert "deadline" not in meta
    assert meta["msg"] != "e1"
    assert meta["history"] == [{"attempt": 1}]
    stats = dlq.stats()
    assert stats["total"] == 0
    assert stats["replayed"] == 1


def test_replay_skips_what_must_not_run_again(dlq: DeadLetterQueue, run: Run, r: redis.Redis) -> None:
    dlq.add(make_entry("bad", reason="malformed", task=None, task_id=None, raw="{nope"))
    dlq.add(make_entry("done", headers={"msg": "done", "key": "k1"}))
    r.hset(Keys().job("k:k1"), mapping={"state": "done", "result": "{}"})
    code, out, _ = run("dlq", "replay", "bad", "done", "missing")
    assert code == 1
    assert "replayed 0 entries" in out
    assert "malformed" in out
    assert "already done" in out
    assert "not found" in out
    assert dlq.stats()["total"] == 2
    assert queued_messages(r) == []
    code, out, _ = run("dlq", "replay", "bad", "--json")
    assert json.loads(out)["skipped_reasons"]["bad"].startswith("malformed")


def test_replay_by_filter_only_touches_matches(dlq: DeadLetterQueue, run: Run, r: redis.Redis) -> None:
    dlq.add(make_entry("p1", reason="permanent"))
    dlq.add(make_entry("x1", reason="exhausted"))
    dlq.add(make_entry("p2", reason="permanent"))
    code, out, _ = run("dlq", "replay", "--reason", "permanent", "--json")
    assert code == 0
    assert sorted(json.loads(out)["replayed_ids"]) == ["p1", "p2"]
    assert [e.id for e in dlq.iter()] == ["x1"]
    assert sorted(m["headers"]["id"] for m in queued_messages(r)) == ["tid-p1", "tid-p2"]


def test_purge_by_ids_filter_and_all(dlq: DeadLetterQueue, run: Run) -> None:
    for i, reason in enumerate(["poison", "expired", "poison", "exhausted", "permanent"]):
        dlq.add(make_entry(f"e{i}", reason=reason))
    assert run("dlq", "purge", "e0", "nope")[:2] == (1, "purged 1 entry\n")
    code, out, _ = run("dlq", "purge", "--reason", "poison", "--json")
    assert code == 0
    assert json.loads(out) == {"purged": 1}
    assert run("dlq", "purge", "--all")[1] == "purged 3 entries\n"
    stats = dlq.stats()
    assert stats["total"] == 0
    assert stats["purged"] == 5
    assert stats["by_reason"] == {}


# -- stats and export -------------------------------------------------------------------------


def test_stats_json_is_one_object(dlq: DeadLetterQueue, run: Run) -> None:
    for i, reason in enumerate(["poison", "poison", "expired"]):
        dlq.add(make_entry(f"e{i}", reason=reason))
    code, out, _ = run("dlq", "stats", "--json")
    data = json.loads(out)
    assert code == 0
    assert isinstance(data, dict)
    assert data["total"] == 3
    assert data["by_reason"] == {"expired": 1, "poison": 2}
    code, out, _ = run("dlq", "stats")
    assert "total: 3" in out
    assert "poison" in out
    assert "REASON" in out


def test_export_writes_json_lines(dlq: DeadLetterQueue, run: Run, tmp_path: Path) -> None:
    for i, reason in enumerate(["poison", "expired", "poison"]):
        dlq.add(make_entry(f"e{i}", reason=reason))
    code, out, _ = run("dlq", "export")
    assert code == 0
    assert [json.loads(line)["id"] for line in out.splitlines()] == ["e2", "e1", "e0"]
    target = tmp_path / "dlq.jsonl"
    code, out, _ = run("dlq", "export", "--reason", "poison", "-o", str(target))
    assert code == 0
    assert out == "exported 2 entries to " + str(target) + "\n"
    lines = target.read_text().splitlines()
    assert [DeadLetter.from_json(line).id for line in lines] == ["e2", "e0"]


def test_unreachable_redis_is_one_clear_line(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STALWART_REDIS_URL", "redis://:secret@127.0.0.1:1/0")
    monkeypatch.setenv("STALWART_REDIS_TIMEOUT", "0.5")
    code, out, err = run("dlq", "stats")
    assert code == 2
    assert out == ""
    assert err.startswith("stalwart: cannot reach Redis (state store redis://***@127.0.0.1:1/0): Error 111")
    assert "secret" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("crafted", ["x:reason", "reason:x", "added", "evicted:age", "sources"])
def test_every_command_is_right_for_any_entry_id(dlq: DeadLetterQueue, run: Run, r: redis.Redis,
                                                 crafted: str) -> None:
    """Issue 10 point 4: ls, export, purge and replay --all with ids shaped like other fields."""
    for entry_id in ("x", crafted):
        dlq.add(make_entry(entry_id, reason="poison", task_id=f"tid-{entry_id}"))
    code, out, _ = run("dlq", "ls", "--json")
    assert code == 0
    assert sorted(e["id"] for e in json.loads(out)) == sorted({"x", crafted})
    code, out, _ = run("dlq", "export")
    assert sorted(json.loads(line)["id"] for line in out.splitlines()) == sorted({"x", crafted})
    code, out, _ = run("dlq", "purge", f"{crafted}:reason")  # no such entry: nothing hidden is deleted
    assert (code, out) == (1, "purged 0 entries\n")
    code, out, _ = run("dlq", "purge", crafted)
    assert (code, out) == (0, "purged 1 entry\n")
    assert dlq.stats()["by_reason"] == {"poison": 1}
    code, out, _ = run("dlq", "replay", "--all", "--json")
    assert code == 0
    assert json.loads(out)["replayed_ids"] == ["x"]
    assert dlq.stats() | {"added": 0} == {"total": 0, "by_reason": {}, "evicted": 0, "evicted_by": {},
                                          "added": 0, "replayed": 1, "purged": 1}


def test_message_content_never_reaches_the_terminal_raw(dlq: DeadLetterQueue, run: Run) -> None:
    nasty = "\x1b[31mred\x1b[0m \x1b]8;;http://evil.example\x07link\x1b]8;;\x07 \u202eesrever\r"
    dlq.add(make_entry("e1", exc_message=nasty, args=[nasty], traceback=f"Traceback\n{nasty}",
                       attempts=[{"attempt": 1, "exc_type": "X", "exc_message": nasty}]))
    for argv in (("dlq", "ls"), ("dlq", "show", "e1"), ("dlq", "ls", "--json"), ("dlq", "show", "e1", "--json"),
                 ("dlq", "export")):
        code, out, _ = run(*argv)
        assert code == 0
        assert not any(c in out for c in "\x1b\x07\r\u202e"), argv
    code, out, _ = run("dlq", "show", "e1")
    assert "\\x1b[31mred" in out
    assert "\\u202eesrever" in out


def test_search_and_cause_filters(dlq: DeadLetterQueue, run: Run) -> None:
    dlq.add(make_entry("e1", exc_message="order 17: card declined"))
    dlq.add(make_entry("e2", exc_message="order 18: card declined"))
    dlq.add(make_entry("e3", exc_message="timeout talking to ledger"))
    code, out, _ = run("dlq", "ls", "--search", "LEDGER", "--json")
    assert [e["id"] for e in json.loads(out)] == ["e3"]
    [cause] = [c for c in dlq.causes()[0] if c["count"] == 2]
    code, out, _ = run("dlq", "purge", "--cause", cause["id"])
    assert (code, out) == (0, "purged 2 entries\n")
