"""Red team, issue 10 point 9: a frozen delivery whose lease lapsed must not overwrite a newer claim.

job_end only compares owners while the hash still names one. Once the newer delivery handed the job
on (``waiting``: its retry is published, owner cleared), the frozen delivery's late ``dead`` verdict
for the *older generation* is accepted and the newer generation's retry is then dropped as dead.
"""
from __future__ import annotations

import time

from stalwart.runtime import runtime_of


def test_frozen_stale_generation_verdict_does_not_kill_newer_generation(app) -> None:
    jobs = runtime_of(app).jobs
    job, ttl = "t:rt10-frozen", 60_000
    a = jobs.begin(job, owner="h:1:m:A", lease_ms=50, max_deliveries=5, deadline_ms=None, gen=0, ttl_ms=ttl)
    assert a.code == "run"
    time.sleep(0.15)  # A freezes; its lease lapses
    b = jobs.begin(job, owner="h:1:m:B", lease_ms=5000, max_deliveries=5, deadline_ms=None, gen=0, ttl_ms=ttl)
    assert b.code == "run"
    assert jobs.end(job, owner="h:1:m:B", outcome="waiting", ttl_ms=ttl, gen=0, next_gen=1)  # B's retry (gen 1) is out
    # A wakes up and records its verdict for generation 0
    refused = not jobs.end(job, owner="h:1:m:A", outcome="dead", ttl_ms=ttl, gen=0)
    c = jobs.begin(job, owner="h:1:m:C", lease_ms=5000, max_deliveries=5, deadline_ms=None, gen=1, ttl_ms=ttl)
    assert (refused, c.code) == (True, "run"), f"stale verdict accepted={not refused}; gen-1 retry got {c.code!r}"


def test_a_late_done_of_an_older_generation_is_kept_so_the_newer_copy_does_not_run_again(app) -> None:
    jobs = runtime_of(app).jobs
    job, ttl = "t:rt10-late-done", 60_000
    assert jobs.begin(job, owner="h:1:m:A", lease_ms=50, max_deliveries=5, deadline_ms=None, gen=0,
                      ttl_ms=ttl).code == "run"
    time.sleep(0.15)
    assert jobs.begin(job, owner="h:1:m:B", lease_ms=5000, max_deliveries=5, deadline_ms=None, gen=0,
                      ttl_ms=ttl).code == "run"
    assert jobs.end(job, owner="h:1:m:B", outcome="waiting", ttl_ms=ttl, gen=0, next_gen=1)
    assert jobs.end(job, owner="h:1:m:A", outcome="done", ttl_ms=ttl, gen=0, result="1")  # A's body did finish
    c = jobs.begin(job, owner="h:1:m:C", lease_ms=5000, max_deliveries=5, deadline_ms=None, gen=1, ttl_ms=ttl)
    assert c.code != "run"


def test_the_current_generation_still_records_every_verdict(app) -> None:
    jobs = runtime_of(app).jobs
    for n, outcome in enumerate(("dead", "waiting", "done")):
        job = f"t:rt10-current-{n}"
        assert jobs.begin(job, owner="h:1:m:A", lease_ms=5000, max_deliveries=5, deadline_ms=None, gen=3,
                          ttl_ms=60_000).code == "run"
        assert jobs.end(job, owner="h:1:m:A", outcome=outcome, ttl_ms=60_000, gen=3, next_gen=4)
