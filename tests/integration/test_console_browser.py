"""The operator console in a real headless Chromium (Debian's), against real Flower
(``stalwart flower``), a real worker and a real redis-server: filter dead letters, open one,
dry-run and replay a cause and watch the jobs succeed in Flower's task list, purge by filter,
pause and resume a task pattern, see a breaker open; a read-only login sees no action and its
crafted POSTs are refused; a POST without the CSRF token is refused.

One worker, one console and one browser serve the whole module; each test makes its own dead
letters (distinct tasks and keys) and looks only at those.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from stalwart.app import Stalwart
from stalwart.dev.embedded import RedisServer
from stalwart.dlq.entry import DeadLetter, Filter
from stalwart.policies.switches import parked_counts
from stalwart.settings import Settings
from stalwart.store.keys import Keys
from stalwart.testing import WorkerProcess, wait_until
from tests.integration.console_harness import (
    CONSOLE_TASKS,
    OPERATOR,
    VIEWER,
    Console,
    chromium_or_skip,
    console,
    screenshot_path,
)

pytestmark = pytest.mark.integration
CRAFTED = "tests.integration.jobs_console.crafted"
FIXABLE = "tests.integration.jobs_console.fixable"
PAY = "tests.integration.jobs_console.pay"
PERMANENT = "tests.integration.jobs.permanent"
RECORD = "tests.integration.jobs.record"
CARD = "4111111111111111"
TIMEOUT_MS = 30_000


@dataclass
class Stack:
    app: Stalwart
    r: redis.Redis
    server: Console
    browser: Browser
    tmp: Path

    def context(self, auth: str = OPERATOR) -> BrowserContext:
        user, _, password = auth.partition(":")
        ctx = self.browser.new_context(http_credentials={"username": user, "password": password},
                                       viewport={"width": 1360, "height": 900})
        ctx.set_default_timeout(TIMEOUT_MS)
        return ctx

    def page(self, ctx: BrowserContext, path: str) -> Page:
        page = ctx.new_page()
        page.on("dialog", lambda d: pytest.fail(f"a page opened a JavaScript dialog: {d.message!r}"))
        page.goto(self.server.base + path)
        return page

    def dead_job(self, task_id: str) -> DeadLetter:
        """Wait until the job ``task_id`` is in the DLQ; return its entry."""
        return wait_until(lambda: next((e for e in self.app.stalwart.dlq.iter(Filter(search=task_id))
                                        if e.task_id == task_id), None), 60, 0.1, f"{task_id} never died")

    def dead(self, task: str, count: int) -> list[Any]:
        """Wait until ``count`` entries of ``task`` are in the DLQ; return them."""
        return wait_until(lambda: (found := list(self.app.stalwart.dlq.iter(Filter(task=task)))) and
                          len(found) >= count and found, 60, 0.1, f"{task} never reached the DLQ {count} times")


@pytest.fixture(scope="module")
def stack(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    chromium = chromium_or_skip()
    tmp = tmp_path_factory.mktemp("console")
    redis.Redis.from_url(redis_server.url).flushall()
    env = {"STALWART_REDIS_URL": redis_server.url, "STALWART_TASK_MODULES": CONSOLE_TASKS,
           "STALWART_RECOVERY_SECONDS": "6", "STALWART_LEASE_SECONDS": "3", "STALWART_MOVER_INTERVAL": "0.05"}
    app = Stalwart("tests", settings=Settings.from_env(env), include=CONSOLE_TASKS.split(","))
    app.loader.import_default_modules()
    worker = WorkerProcess(env, log_dir=str(tmp)).start()
    try:
        with console(env, tmp / "flower.log") as server, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(chromium), headless=True, args=["--no-sandbox"])
            try:
                yield Stack(app, redis.Redis.from_url(redis_server.url), server, browser, tmp)
            finally:
                browser.close()
    finally:
        worker.stop(timeout=10)


def rows(page: Page) -> Any:
    return page.locator("#dlq-rows tr[data-entry]")


def test_filter_dead_letters_and_open_an_entry_without_rendering_its_content(stack: Stack) -> None:
    for order in (1, 2, 3):
        stack.app.send_task(CRAFTED, (order, CARD), {"note": "<b>bold</b>"})
    stack.app.send_task(PERMANENT, ("filter-noise",))
    stack.dead(CRAFTED, 3)
    stack.dead(PERMANENT, 1)
    ctx = stack.context()
    page = stack.page(ctx, "/stalwart/dead-letters")
    expect(rows(page)).to_have_count(4)
    page.screenshot(path=screenshot_path("console-dead-letters.png", stack.tmp), full_page=True)

    page.fill("#f-task", CRAFTED)
    page.click("#f-apply")
    expect(rows(page)).to_have_count(3)
    expect(page.locator("#dlq-rows .entry-task")).to_have_text([CRAFTED] * 3)
    assert "task=" in page.url  # the filter is in the address, so a refresh or a link keeps it

    error = page.locator("#dlq-rows .entry-error").first
    expect(error).to_contain_text("<img src=x onerror=")
    expect(error).to_contain_text("\\x1b[31mred")
    assert page.locator("#dlq-rows img, #dlq-rows script, #dlq-rows b").count() == 0
    assert page.title() != "pwned"

    page.locator("#dlq-rows .entry-link").first.click()
    expect(page.locator("#e-task")).to_have_text(CRAFTED)
    expect(page.locator("#e-args")).to_contain_text("[Filtered]")  # card_number, positional, named by the task
    expect(page.locator("#e-error")).to_contain_text("\\u202eesrever")
    expect(page.locator("#e-attempts li")).to_have_count(1)
    assert CARD not in page.content()
    assert page.locator("#entry img, #entry script, #entry b").count() == 0
    assert page.title() != "pwned"
    href = page.locator("#e-task-link").get_attribute("href") or ""
    assert re.fullmatch(r"/task/[0-9a-f-]{36}", href), href  # Flower's own task page
    page.screenshot(path=screenshot_path("console-entry.png", stack.tmp), full_page=True)
    ctx.close()


def test_pages_refresh_on_their_own_keeping_filters_and_selection_and_pause_when_hidden(stack: Stack) -> None:
    for key in ("live-1", "live-2", "live-3"):
        stack.dead_job(stack.app.send_task(PERMANENT, (key,)).id)
    ctx = stack.context()
    page = stack.page(ctx, f"/stalwart/dead-letters?task={PERMANENT}&q=live-")
    expect(rows(page)).to_have_count(3)
    chosen = rows(page).first.get_attribute("data-entry")
    rows(page).first.locator(".row-check").check()
    expect(page.locator("#replay-selected")).to_have_text("Replay selected (1)…")

    stack.app.send_task(PERMANENT, ("live-4",))  # a new death shows up on the next refresh
    expect(rows(page)).to_have_count(4)
    expect(page.locator(f'#dlq-rows tr[data-entry="{chosen}"] .row-check')).to_be_checked()
    expect(page.locator("#f-task")).to_have_value(PERMANENT)
    expect(page.locator("#f-q")).to_have_value("live-")
    expect(page.locator("#replay-selected")).to_have_text("Replay selected (1)…")

    page.evaluate("""() => {
        Object.defineProperty(document, 'hidden', {configurable: true, get: () => true});
        document.dispatchEvent(new Event('visibilitychange'));
    }""")
    expect(page.locator("#refresh-status")).to_have_text("Paused while the tab is hidden")
    page.wait_for_timeout(1000)  # a refresh under way when the tab was hidden ends
    page.evaluate("""() => {
        window.stalwartFetches = 0;
        const fetch = window.fetch;
        window.fetch = (...args) => { window.stalwartFetches += 1; return fetch(...args); };
    }""")
    page.wait_for_timeout(5000)  # more than one refresh period: nothing may be fetched meanwhile
    assert page.evaluate("window.stalwartFetches") == 0
    expect(page.locator("#refresh-status")).to_have_text("Paused while the tab is hidden")
    page.evaluate("""() => {
        Object.defineProperty(document, 'hidden', {configurable: true, get: () => false});
        document.dispatchEvent(new Event('visibilitychange'));
    }""")
    expect(page.locator("#refresh-status")).to_contain_text("Updated")
    assert page.evaluate("window.stalwartFetches") > 0
    ctx.close()


def test_dry_run_and_replay_a_cause_then_the_jobs_succeed_in_flower(stack: Stack) -> None:
    ids = [stack.app.send_task(FIXABLE, (order,)).id for order in (201, 202, 203)]
    stack.dead(FIXABLE, 3)
    for order in (201, 202, 203):
        stack.r.set(f"fixed:{order}", 1)
    ctx = stack.context()
    page = stack.page(ctx, "/stalwart/causes")
    cause = page.locator("#cause-rows tr", has=page.locator(".cause-task", has_text=FIXABLE))
    expect(cause.locator(".cause-count")).to_have_text("3")
    cause.locator(".cause-replay").click()
    expect(page.locator("#plan-summary")).to_have_text("Replay will republish 3 entries and skip 0.")
    page.fill("#dialog-name", "replay the payment outage")
    page.click("#dialog-confirm")
    job = page.locator("#jobs li", has_text="replay the payment outage")
    expect(job.locator(".job-status")).to_contain_text("done · 3/3 · 3 replayed, 0 skipped")
    wait_until(lambda: all(stack.r.get(f"effect:{o}") == b"1" for o in (201, 202, 203)), 60, 0.1)

    tasks = stack.page(ctx, f"/tasks?name={FIXABLE}")
    table = tasks.locator("#tasks-table tbody")
    wait_until(lambda: all(i in (table.text_content() or "") for i in ids) and
               (table.text_content() or "").count("SUCCESS") >= 3, 60, 0.5, "Flower never showed the replays succeed")

    audit = stack.page(ctx, "/stalwart/audit")
    expect(audit.locator("#audit-rows tr", has_text="replay the payment outage").first).to_contain_text("ops")
    ctx.close()


def test_purge_by_filter(stack: Stack) -> None:
    for key in ("purge-1", "purge-2", "purge-3"):
        stack.dead_job(stack.app.send_task(PERMANENT, (key,)).id)
    others = stack.app.stalwart.dlq.count() - 3
    ctx = stack.context()
    page = stack.page(ctx, f"/stalwart/dead-letters?task={PERMANENT}&q=purge-&since=1h")
    expect(rows(page)).to_have_count(3)
    page.click("#purge-matching")
    expect(page.locator("#plan-summary")).to_have_text("Purge will delete 3 entries. This cannot be undone.")
    page.click("#dialog-confirm")
    expect(page.locator("#dlq-rows")).to_contain_text("No dead letters match.")
    assert stack.app.stalwart.dlq.count() == others  # the rest stay
    ctx.close()


def test_pause_and_resume_a_task_pattern(stack: Stack) -> None:
    ctx = stack.context()
    page = stack.page(ctx, "/stalwart/switches")
    page.fill("#s-pattern", "tests.integration.jobs.rec*")
    expect(page.locator("#s-preview")).to_contain_text(RECORD)
    page.click("#s-apply")
    expect(page.locator("#switch-matches")).to_contain_text(RECORD)
    page.click("#dialog-confirm")
    row = page.locator('#switch-rows tr[data-pattern="tests.integration.jobs.rec*"]')
    expect(row).to_contain_text("paused")

    page.wait_for_timeout(1000)  # a switch reaches every worker within a second (their cache: 0.25 s)
    stack.app.send_task(RECORD, ("while-paused",))
    wait_until(lambda: parked_counts(stack.r, Keys()).get(RECORD), 30, 0.05, "the paused job was not parked")
    assert stack.r.get("effect:while-paused") is None

    row.locator(".switch-resume").click()
    page.click("#dialog-confirm")
    expect(page.locator("#switch-rows")).to_contain_text("No switch is set")
    wait_until(lambda: stack.r.get("effect:while-paused") == b"1", 60, 0.1, "the resumed job never ran")
    ctx.close()


def test_a_breaker_is_seen_opening(stack: Stack) -> None:
    for order in range(4):
        stack.app.send_task(PAY, (order,))
    ctx = stack.context()
    page = stack.page(ctx, "/stalwart/breakers")
    breaker = page.locator('#breaker-rows tr[data-breaker="console-payments"]')
    expect(breaker.locator(".breaker-state")).to_have_text("open", timeout=60_000)
    expect(breaker).to_contain_text("failure rate")  # why it opened
    ctx.close()


def test_a_readonly_login_sees_no_action_and_its_posts_are_refused(stack: Stack) -> None:
    entry = stack.dead_job(stack.app.send_task(PERMANENT, ("read-only",)).id)
    ctx = stack.context(VIEWER)
    page = stack.page(ctx, "/stalwart/dead-letters")
    expect(rows(page)).not_to_have_count(0)
    expect(page.locator("#readonly-note")).to_be_visible()
    for absent in ("#actions", ".row-check", "#replay-matching", "#purge-matching"):
        assert page.locator(absent).count() == 0, absent
    page.goto(f"{stack.server.base}/stalwart/dead-letters/{entry.id}")
    expect(page.locator("#e-task")).to_have_text(PERMANENT)
    assert page.locator("#entry-replay, #entry-purge").count() == 0
    for path, absent in (("/stalwart/causes", ".cause-replay"), ("/stalwart/switches", "#switch-form"),
                         ("/stalwart/breakers", ".breaker-open")):
        page.goto(stack.server.base + path)
        expect(page.locator("#refresh-status")).to_contain_text("Updated")
        assert page.locator(absent).count() == 0, absent

    # A crafted POST from the read-only page, with its own valid CSRF token: refused.
    status = page.evaluate(
        """async (id) => (await fetch('/api/stalwart/dead-letters/' + id + '/purge', {method: 'POST',
             headers: {'X-XSRFToken': document.getElementById('stalwart').dataset.csrf}})).status""", entry.id)
    assert status == 403
    viewer = stack.server.client(VIEWER)
    assert viewer.get("/api/tasks")[0] == 200  # Flower's own pages and API: looking is allowed
    for path, body in ((f"/api/stalwart/dead-letters/{entry.id}/replay", {}),
                       ("/api/stalwart/switches", {"pattern": "*", "state": "paused"}),
                       ("/api/stalwart/breakers/console-payments/close", {}),
                       (f"/api/task/revoke/{entry.task_id}", {})):  # Flower's own actions too
        assert viewer.post(path, body)[0] == 403, path
    assert stack.app.stalwart.dlq.get(entry.id).id == entry.id
    ctx.close()


def test_a_post_without_the_csrf_token_is_refused(stack: Stack) -> None:
    entry = stack.dead_job(stack.app.send_task(PERMANENT, ("csrf",)).id)
    ctx = stack.context()
    page = stack.page(ctx, "/stalwart/dead-letters")
    expect(rows(page)).not_to_have_count(0)
    status = page.evaluate(
        """async (id) => (await fetch('/api/stalwart/dead-letters/' + id + '/purge', {method: 'POST'})).status""",
        entry.id)
    assert status == 403
    operator = stack.server.client()
    assert operator.post(f"/api/stalwart/dead-letters/{entry.id}/purge", token=False)[0] == 403
    assert stack.app.stalwart.dlq.get(entry.id).id == entry.id
    assert operator.post(f"/api/stalwart/dead-letters/{entry.id}/purge") == (200, {"purged": 1})
    ctx.close()
