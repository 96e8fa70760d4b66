"""The console's JSON API, over HTTP against a real ``stalwart flower`` and redis-server: Flower's
login, filters and cursors, scrubbed and escaped content, a bulk replay in the background with
progress and an audit record, the breakers/limits/switches/queues reads and actions, and the
read-only mode refusing every action."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from stalwart.app import Stalwart
from stalwart.dev.embedded import RedisServer
from stalwart.dlq.entry import DeadLetter
from stalwart.settings import Settings
from stalwart.testing import wait_until
from tests.integration.console_harness import CONSOLE_TASKS, Client, Console, console

pytestmark = pytest.mark.integration
NASTY = "\x1b[31mred\x1b[0m\x07\u202e"


@pytest.fixture(scope="module")
def env(redis_server: RedisServer) -> dict[str, str]:
    redis.Redis.from_url(redis_server.url).flushall()
    return {"STALWART_REDIS_URL": redis_server.url, "STALWART_TASK_MODULES": CONSOLE_TASKS}


@pytest.fixture(scope="module")
def app(env: dict[str, str]) -> Stalwart:
    application = Stalwart("tests", settings=Settings.from_env(env), include=CONSOLE_TASKS.split(","))
    application.loader.import_default_modules()
    return application


@pytest.fixture(scope="module")
def server(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    with console(env, tmp_path_factory.mktemp("api") / "flower.log") as started:
        yield started


@pytest.fixture
def ops(server: Console) -> Client:
    return server.client()


def dead(i: int, **fields: Any) -> DeadLetter:
    base: dict[str, Any] = {"reason": "exhausted", "task": "api.task_a", "task_id": f"api-{i}", "queue": "celery",
                            "args": [i], "exc_type": "TimeoutError", "exc_message": f"call {i} timed out",
                            "options": {}, "headers": {"msg": f"m-{i}", "gen": 0}, "source": f"api-{i}"}
    return DeadLetter(**{**base, **fields})


def test_the_api_and_pages_need_flowers_login(server: Console) -> None:
    for path in ("/api/stalwart/dead-letters", "/api/stalwart/causes", "/stalwart/dead-letters"):
        assert server.client(auth=None).get(path)[0] == 401, path
        assert server.client(auth="ops:wrong").get(path)[0] == 401, path
        assert server.client().get(path)[0] == 200, path


def test_actions_need_the_csrf_token_and_a_same_origin_request(app: Stalwart, ops: Client) -> None:
    entry = dead(7000, source="csrf-7000", task_id="csrf-7000")
    app.stalwart.dlq.add(entry)
    path = f"/api/stalwart/dead-letters/{entry.id}/purge"
    assert ops.post(path, token=False)[0] == 403
    assert ops.request("POST", path, {}, {"X-XSRFToken": "2|00|00|1"})[0] == 403  # a token not from the cookie
    assert ops.request("POST", path, {}, {"X-XSRFToken": ops.token(), "Sec-Fetch-Site": "cross-site"})[0] == 403
    assert ops.request("GET", path)[0] == 405  # no action by GET
    assert app.stalwart.dlq.get(entry.id).id == entry.id
    assert ops.post(path) == (200, {"purged": 1})


def test_dead_letters_filter_page_and_count(app: Stalwart, ops: Client) -> None:
    app.stalwart.dlq.add_many([dead(i, task="api.task_b" if i % 2 else "api.task_a",
                                    reason="permanent" if i % 3 == 0 else "exhausted") for i in range(120)])
    status, first = ops.get("/api/stalwart/dead-letters?task=api.task_b&limit=50")
    assert status == 200
    assert (first["total"], len(first["entries"])) == (60, 50)
    status, second = ops.get(f"/api/stalwart/dead-letters?task=api.task_b&limit=50&cursor={first['cursor']}")
    assert (len(second["entries"]), second["cursor"]) == (10, None)
    ids = [e["task_id"] for e in first["entries"] + second["entries"]]
    assert len(set(ids)) == 60
    both = ops.get("/api/stalwart/dead-letters?task=api.task_b&reason=permanent")[1]
    assert {e["task_id"] for e in both["entries"]} == {f"api-{i}" for i in range(120) if i % 2 and i % 3 == 0}
    assert [e["task_id"] for e in ops.get("/api/stalwart/dead-letters?q=call%2077%20timed")[1]["entries"]] == ["api-77"]
    assert ops.get("/api/stalwart/dead-letters?since=yesterday")[0] == 400
    assert "not a time" in ops.get("/api/stalwart/dead-letters?since=yesterday")[1]["error"]
    assert ops.get("/api/stalwart/dead-letters?reason=tired")[0] == 400
    assert ops.get("/api/stalwart/dead-letters?limit=lots")[0] == 400
    assert ops.get("/api/stalwart/dead-letters/nosuchentry")[0] == 404
    causes = ops.get("/api/stalwart/causes?order=count")[1]
    assert sum(c["count"] for c in causes["causes"]) >= 120


def test_entries_are_scrubbed_and_escaped_in_the_api(app: Stalwart, ops: Client) -> None:
    entry = dead(1000, task="tests.integration.jobs_console.crafted", args=[5, "4111111111111111"],
                 kwargs={"password": "hunter2-pass", "note": NASTY}, exc_message=f"{NASTY} hunter2-pass")
    app.stalwart.dlq.add(entry)
    status, shown = ops.get(f"/api/stalwart/dead-letters/{entry.id}")
    assert status == 200
    assert shown["args"] == [5, "[Filtered]"]  # card_number, named by the task registered in the console
    assert shown["kwargs"] == {"password": "[Filtered]", "note": "\\x1b[31mred\\x1b[0m\\x07\\u202e"}
    assert "hunter2-pass" not in shown["error"]
    listed = ops.get(f"/api/stalwart/dead-letters?q={entry.task_id}")[1]["entries"]
    assert [e["id"] for e in listed] == [entry.id]
    assert "4111111111111111" not in str(listed)


def test_a_bulk_replay_runs_in_the_background_with_progress_and_is_audited(
    app: Stalwart, ops: Client, env: dict[str, str]
) -> None:
    app.stalwart.dlq.add_many([dead(i, task="api.bulk", source=f"bulk-{i}", task_id=f"bulk-{i}")
                               for i in range(300)])
    broker = redis.Redis.from_url(env["STALWART_REDIS_URL"])
    before = broker.llen("celery")
    selection = {"action": "replay", "filter": {"task": "api.bulk"}}
    status, started = ops.post("/api/stalwart/dead-letters/dry-run", selection)
    assert status == 202
    plan = wait_until(lambda: (j := ops.get(f"/api/stalwart/jobs/{started['job']['id']}")[1])["state"] != "running"
                      and j, 30, 0.1)
    assert plan["result"] == {"replay": 300, "skip": 0, "why": {}}
    assert broker.llen("celery") == before  # a dry run sends nothing
    status, confirmed = ops.post("/api/stalwart/dead-letters/confirm", {"plan": plan["id"], "name": "bulk test"})
    assert status == 202
    seen: list[int] = []

    def finished() -> dict[str, Any] | None:
        job = ops.get(f"/api/stalwart/jobs/{confirmed['job']['id']}")[1]
        seen.append(job["done"])
        return job if job["state"] != "running" else None

    job = wait_until(finished, 60, 0.05)
    assert (job["state"], job["total"], job["done"], job["replayed"]) == ("done", 300, 300, 300)
    assert seen == sorted(seen)  # progress only moves forward
    assert broker.llen("celery") == before + 300
    assert ops.get("/api/stalwart/dead-letters?task=api.bulk")[1]["total"] == 0
    records = ops.get("/api/stalwart/audit")[1]["records"]
    done = next(r for r in records if r["action"] == "replay" and r["what"] == "bulk test")
    assert (done["who"], done["count"]) == ("ops", 300)
    assert any(j["id"] == job["id"] for j in ops.get("/api/stalwart/jobs")[1]["jobs"])
    assert ops.post("/api/stalwart/dead-letters/confirm", {"plan": "0000"})[0] == 400
    for bad in ({"since": "yesterday"}, {"since_ms": "1"}, {"task": ["a"]}, {"colour": "red"}):
        status, answer = ops.post("/api/stalwart/dead-letters/dry-run", {"action": "purge", "filter": bad})
        assert status == 400, (bad, answer)
    status, started = ops.post("/api/stalwart/dead-letters/dry-run",
                               {"action": "purge", "filter": {"task": "api.task_a", "since": "1h", "until": "0s"}})
    assert status == 202
    assert started["job"]["selection"]["filter"]["since_ms"] < started["job"]["selection"]["filter"]["until_ms"]


def test_breakers_limits_switches_and_queues(app: Stalwart, ops: Client) -> None:
    app.stalwart.breakers.admin("api-breaker", "force_open")
    breakers = ops.get("/api/stalwart/breakers")[1]["breakers"]
    assert [b["state"] for b in breakers if b["name"] == "api-breaker"] == ["forced_open"]
    assert ops.post("/api/stalwart/breakers/api-breaker/close")[1] == {"name": "api-breaker", "state": "closed"}
    assert ops.post("/api/stalwart/breakers/never-used/close")[0] == 400
    assert "limits" in ops.get("/api/stalwart/limits")[1]

    pattern = "tests.integration.jobs_console.*"
    preview = ops.get(f"/api/stalwart/switches?preview={pattern}")[1]["preview"]
    assert "tests.integration.jobs_console.fixable" in preview
    status, applied = ops.post("/api/stalwart/switches", {"pattern": pattern, "state": "paused"})
    assert status == 200
    assert "tests.integration.jobs_console.pay" in applied["matches"]
    switches = ops.get("/api/stalwart/switches")[1]["switches"]
    assert [s["state"] for s in switches if s["pattern"] == pattern] == ["paused"]
    assert ops.post("/api/stalwart/switches", {"pattern": pattern, "state": "asleep"})[0] == 400
    assert ops.post("/api/stalwart/switches", {"pattern": pattern, "state": "resume"})[1]["resumed"] is True

    before = next(q["ready"] for q in ops.get("/api/stalwart/queues")[1]["queues"] if q["queue"] == "celery")
    app.send_task("api.urgent", queue="celery", priority=9)  # kept in the queue's priority list
    queues = ops.get("/api/stalwart/queues")[1]
    [celery] = [q for q in queues["queues"] if q["queue"] == "celery"]
    assert celery["ready"] == before + 1
    assert celery["ready"] >= 301  # and the bulk replay's messages: no worker runs here
    assert celery["oldest_age_seconds"] is not None
    assert len(queues["dlq_per_minute"]) == 360
    assert sum(p["count"] for p in queues["dlq_per_minute"]) >= 420
    actions = [r["action"] for r in ops.get("/api/stalwart/audit")[1]["records"]]
    assert {"breaker close", "switch paused", "switch resume"} <= set(actions)


def test_read_only_mode_shows_no_action_and_refuses_every_post(
    app: Stalwart, env: dict[str, str], tmp_path: Path
) -> None:
    entry = dead(5000, source="ro-5000", task_id="ro-5000")
    app.stalwart.dlq.add(entry)
    with console(env, tmp_path / "flower-ro.log", {"STALWART_CONSOLE_READONLY": "1"}) as readonly:
        ops = readonly.client()
        page = ops.get("/stalwart/dead-letters")[1]
        assert 'data-readonly="true"' in page
        for action in ('id="replay-matching"', 'id="purge-matching"', 'class="row-check"', 'id="actions"'):
            assert action not in page
        entry_page = ops.get(f"/stalwart/dead-letters/{entry.id}")[1]
        assert "entry-replay" not in entry_page
        assert ops.get("/api/stalwart/csrf")[1]["readonly"] is True
        for path, body in ((f"/api/stalwart/dead-letters/{entry.id}/purge", {}),
                           (f"/api/stalwart/dead-letters/{entry.id}/replay", {}),
                           ("/api/stalwart/dead-letters/dry-run", {"action": "purge", "filter": {}}),
                           ("/api/stalwart/switches", {"pattern": "*", "state": "disabled"}),
                           ("/api/stalwart/breakers/api-breaker/open", {})):
            status, answer = ops.post(path, body)  # with a valid CSRF token: refused all the same
            assert (status, answer) == (403, {"error": "the console is read-only"}), path
        assert ops.get("/api/stalwart/dead-letters")[0] == 200
    assert app.stalwart.dlq.get(entry.id).id == entry.id


def test_under_flowers_url_prefix(app: Stalwart, env: dict[str, str], tmp_path: Path) -> None:
    entry = dead(6000, source="prefix-6000", task_id="prefix-6000")
    app.stalwart.dlq.add(entry)
    with console(env, tmp_path / "flower-prefix.log", prefix="/ops") as prefixed:
        ops = prefixed.client()
        status, page = ops.get("/ops/stalwart/dead-letters")
        assert status == 200
        for link in ('data-api="/ops/api/stalwart"', 'data-base="/ops"', 'src="/ops/stalwart/static/stalwart.js"',
                     'href="/ops/stalwart/static/stalwart.css"', 'href="/ops/stalwart/causes"', 'href="/ops/tasks"'):
            assert link in page, link
        assert ops.get(f"/ops/stalwart/dead-letters/{entry.id}")[0] == 200
        assert f'href="/ops/task/{entry.task_id}"' in ops.get(f"/ops/stalwart/dead-letters/{entry.id}")[1]
        assert ops.get("/ops/stalwart/static/stalwart.js")[0] == 200
        assert ops.post(f"/ops/api/stalwart/dead-letters/{entry.id}/purge") == (200, {"purged": 1})
