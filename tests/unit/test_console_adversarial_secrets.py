"""Red team (issue 11 point 5): secrets reaching the console's pages and JSON API (fixed; each
test asserts the secret no longer shows).

Each test builds a dead letter the way the consumer/envelope would and looks at what the console
shows of it (views.detail / views.row, the entry page and API bodies) or what the DLQ's cause and
search indexes expose (the by-cause API's ``sample``, the search filter)."""

from __future__ import annotations

import base64
import json

import pytest
from celery.utils.saferepr import saferepr
from hypothesis import given
from hypothesis import strategies as st

from stalwart.app import Stalwart
from stalwart.console import views
from stalwart.console.context import basic_login
from stalwart.dlq.entry import DeadLetter, Filter
from stalwart.ops.scrub import scrub_raw
from tests.integration import jobs_console

CARD = "4111111111111111"
PASSWORD = "hunter2-correct-horse"


def entry(**fields: object) -> DeadLetter:
    base: dict[str, object] = {"reason": "exhausted", "task": "rt.task", "task_id": "rt-1", "queue": "celery",
                               "options": {}, "headers": {"msg": "m-1", "gen": 0}}
    return DeadLetter(**{**base, **fields})  # type: ignore[arg-type]


def test_common_secret_header_and_argument_names_are_not_scrubbed() -> None:
    """`x-api-key`, `private-key`, `passphrase`, `bearer` are shown verbatim (is_secret misses them:
    `api_key`/`private_key` are matched only with an underscore)."""
    secrets = {"x-api-key": "ak-live-0123456789", "private-key": "-----BEGIN KEY-----abc",
               "passphrase": "open-sesame-42", "bearer": "eyJhbGciOiJIUzI1NiJ9.payload"}
    shown = views.detail(entry(kwargs=dict(secrets), options={"headers": dict(secrets)}))
    body = json.dumps(shown)
    leaked = [v for v in secrets.values() if v in body]
    assert leaked == [], f"shown verbatim in the entry API: {leaked}"


def test_a_raw_message_is_shown_with_its_password() -> None:
    """A protocol-1 (or otherwise undecoded) JSON body is kept raw and shown raw: its kwargs'
    password is not scrubbed (the secrets are only looked for in the decoded args/kwargs)."""
    raw = json.dumps({"task": "billing.charge", "id": "t-1", "args": [],
                      "kwargs": {"user": "alice", "password": PASSWORD}})
    shown = views.detail(entry(reason="malformed", raw=raw, options=None))
    assert PASSWORD not in shown["raw"], shown["raw"]


def test_kwargsrepr_header_leaks_a_password_whose_repr_differs() -> None:
    """Celery's `kwargsrepr`/`argsrepr` headers hold repr() of the arguments: a password with a
    backslash, a quote pair or a newline is escaped there, so cutting the literal value misses it."""
    password = "pa\\ss'w\"ord\n2024"
    kwargs = {"password": password}
    headers = {"task": "rt.task", "id": "rt-1", "argsrepr": "()", "kwargsrepr": saferepr(kwargs, 1024)}
    shown = views.detail(entry(kwargs=kwargs, headers=headers))
    shown_repr = shown["headers"]["kwargsrepr"]
    assert "[Filtered]" in shown_repr, shown_repr
    assert "2024" not in shown_repr, shown_repr


def test_the_row_error_is_cut_before_it_is_scrubbed() -> None:
    """views.row cuts the error at 300 characters *then* scrubs: a password straddling character 300
    is no longer the whole value, so its head is shown in the dead-letters list (API and page)."""
    message = "x" * 280 + f"password {PASSWORD} refused"  # the password spans characters 289-310
    shown = views.row(entry(kwargs={"password": PASSWORD}, exc_message=message))
    assert PASSWORD[:8] not in shown["error"], shown["error"][-30:]


@pytest.fixture
def console_app(app: Stalwart) -> Stalwart:
    return app


def test_the_by_cause_sample_shows_a_positional_secret(console_app: Stalwart) -> None:
    """The entry page scrubs a positional card number (the task is registered), but the cause's
    `sample` (shown on the Causes page and by /api/stalwart/causes, unscrubbed by views) was
    scrubbed only with kwargs/headers secrets when the entry was added."""
    dlq = console_app.stalwart.dlq
    task = jobs_console.crafted
    dead = entry(task=task.name, args=[7, CARD], exc_type="Permanent", exc_message=f"card {CARD} declined")
    dlq.add(dead)
    assert CARD not in json.dumps(views.detail(dlq.get(dead.id), task))  # the entry page holds
    causes, _ = dlq.causes(order="count")
    shown = views.show(causes)  # what api.Causes sends
    assert CARD not in json.dumps(shown), [c["sample"] for c in shown]


def test_the_search_filter_is_an_oracle_for_a_positional_secret(console_app: Stalwart) -> None:
    """The search index holds the positional card number unscrubbed: any login (read-only too)
    can confirm or extract it a character at a time with ?q=."""
    dlq = console_app.stalwart.dlq
    dead = entry(task=jobs_console.crafted.name, args=[7, CARD], exc_message="declined")
    dlq.add(dead)
    probe = f'7, "{CARD[:4]}'  # the JSON text of the args, as indexed
    found = [e.id for e in dlq.page(Filter(search=probe)).entries]
    assert found == [], f"search {probe!r} found the entry: the secret is searchable"


@given(st.text(alphabet="xyz ", max_size=20), st.sampled_from(["password", "x-api-key", "Private.Key", "bearer"]),
       st.text(min_size=2, max_size=30), st.booleans())
def test_a_raw_json_body_never_shows_a_value_under_a_secret_key(other: str, key: str, tail: str, ascii: bool) -> None:
    """Property: whatever the value (quotes, backslashes, unicode), a raw JSON body shown on the
    entry page holds it neither under its key nor quoted elsewhere, raw or JSON-escaped."""
    value = "S3" + tail
    raw = json.dumps({"kwargs": {key: value, "note": other}, "echo": f"was {value}"}, ensure_ascii=ascii)
    shown = scrub_raw(raw)
    assert value not in shown, shown
    assert json.dumps(value, ensure_ascii=ascii)[1:-1] not in shown, shown


@given(st.text(max_size=60))
def test_the_console_reads_a_basic_header_as_flower_does(header: str) -> None:
    """Property: basic_login sees exactly the credential Flower's get_current_user would check."""
    try:
        scheme, encoded = header.split()
        flowers: str | None = base64.b64decode(encoded.encode()).decode() if scheme == "Basic" else None
    except ValueError:
        flowers = None
    login = basic_login(header)
    assert (login[1] if login else None) == (flowers or None)
