"""Red team (issue 11 point 2): the audit log's cap."""

from __future__ import annotations

import json

from stalwart.app import Stalwart
from stalwart.dlq.audit import AuditLog
from stalwart.dlq.bulk import BulkActions, Selection


def test_the_audit_log_is_capped_in_bytes_too(app: Stalwart) -> None:
    """Confirming a dry run over 10,000 selected ids wrote every id into the audit record (~36 MB a
    page of 100); now it keeps their count and a sample."""
    rt = app.stalwart
    audit = AuditLog(rt.redis, rt.keys)
    bulk = BulkActions(app, audit)
    ids = tuple(f"{i:032x}" for i in range(10_000))
    plan = bulk.dry_run("purge", Selection(ids=ids), who="ops")
    assert bulk.wait(plan["id"], 60)["state"] == "done"
    job = bulk.confirm(plan["id"], name="sweep", who="ops")
    bulk.wait(job["id"], 60)
    records, _ = audit.page(0, 100)
    size = max(len(json.dumps(r)) for r in records)
    assert size < 64_000, f"one audit record is {size} bytes; a page of 100 would be ~{size * 100 // 1_000_000} MB"
