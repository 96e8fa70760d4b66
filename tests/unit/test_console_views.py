"""What the console shows of an entry: secrets scrubbed by name (positional arguments named through
the task's signature), secret values cut from free text, and no control or invisible character
left in any string, whatever the message held."""

from __future__ import annotations

import base64
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from stalwart.app import Stalwart
from stalwart.console.context import Console, basic_login
from stalwart.console.views import detail, parameter_names, row, scrubbed_call
from stalwart.dlq.display import show, visible
from stalwart.dlq.entry import DeadLetter
from stalwart.ops.scrub import FILTERED
from stalwart.settings import Settings

NASTY = "\x1b[31mred\x1b[0m \x1b]8;;http://evil.example\x07link \u202eesrever \x00nul\r"
INVISIBLE = set(range(0x00, 0x09)) | set(range(0x0B, 0x20)) | set(range(0x7F, 0xA0)) | {
    0x200B, 0x200E, 0x200F, 0x2028, 0x2029, 0x202A, 0x202E, 0x2066, 0x2069, 0xFEFF}


class ChargeTask:
    """Stands in for a registered task: only its ``run`` signature matters."""

    name = "billing.charge"

    def run(self, order_id: int, card_number: str, *rest: Any, api_token: str = "") -> None:
        """A task with a secret positional parameter."""


def strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*strings(k), *strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


def assert_clean(value: Any) -> None:
    for text in strings(value):
        assert not any(ord(c) in INVISIBLE for c in text), repr(text)


def test_visible_escapes_controls_and_keeps_lines() -> None:
    assert visible("a\x1b[31mb\tc\nd\u202e") == "a\\x1b[31mb\tc\nd\\u202e"
    assert show({"k\x07": ["\x00", 1, None]}) == {"k\\x07": ["\\x00", 1, None]}


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_visible_leaves_no_invisible_character(text: str) -> None:
    shown = visible(text)
    assert_clean(shown)
    assert shown.count("\n") == text.count("\n")


def test_positional_secrets_are_named_through_the_tasks_signature() -> None:
    assert parameter_names(ChargeTask(), 4) == ["order_id", "card_number", None, None]
    args, kwargs, secrets = scrubbed_call(ChargeTask(), [7, "4111111111111111", "extra"],
                                          {"api_token": "tok-123456", "note": "paid with 4111111111111111"}, {})
    assert args == [7, FILTERED, "extra"]
    assert kwargs == {"api_token": FILTERED, "note": f"paid with {FILTERED}"}
    assert {"4111111111111111", "tok-123456"} <= secrets
    unknown_args, _, _ = scrubbed_call(None, [7, "4111111111111111"], {}, {})
    assert unknown_args == [7, "4111111111111111"]  # no signature, no name: nothing to go by


def crafted_entry(**fields: Any) -> DeadLetter:
    base: dict[str, Any] = {
        "id": "e1", "reason": "permanent", "task": "billing.charge", "task_id": "t1", "queue": "celery",
        "args": [7, "4111111111111111", NASTY], "kwargs": {"password": "hunter2-pass", "note": NASTY},
        "headers": {"msg": "m", "gen": 2, "key": "order-7", "trace": "tr", "authorization": "Bearer abcdef"},
        "options": {"headers": {"tenant": NASTY}, "link": [{"task": "x", "args": [NASTY]}]},
        "exc_type": "ValueError", "exc_message": f"card 4111111111111111 / hunter2-pass refused {NASTY}",
        "traceback": f"Traceback\n  password=hunter2-pass\n{NASTY}", "raw": None,
        "attempts": [{"attempt": 1, "at": 1_800_000_000_000, "exc_message": f"hunter2-pass {NASTY}"}],
    }
    return DeadLetter(**{**base, **fields})


def test_an_entry_page_has_no_secret_and_no_raw_control_character() -> None:
    shown = detail(crafted_entry(), ChargeTask())
    text = json.dumps(shown, ensure_ascii=False)
    for secret in ("4111111111111111", "hunter2-pass", "Bearer abcdef"):
        assert secret not in text, secret
    assert_clean(shown)
    assert shown["args"][1] == FILTERED
    assert shown["kwargs"]["password"] == FILTERED
    assert shown["headers"]["authorization"] == FILTERED
    assert "\\x1b[31mred" in shown["error"]
    assert shown["replayable"] is True
    assert shown["idempotency_key"] == "order-7"
    assert shown["attempts"][0]["at_iso"] == "2027-01-15T08:00:00.000Z"
    assert "\\u001b" in shown["pretty"]["kwargs"]  # JSON escapes controls in the pretty block


def test_a_row_is_scrubbed_and_escaped_too() -> None:
    shown = row(crafted_entry(), ChargeTask())
    assert_clean(shown)
    assert "4111111111111111" not in json.dumps(shown)
    assert "hunter2-pass" not in json.dumps(shown)


def test_an_unreplayable_entry_says_why() -> None:
    shown = detail(crafted_entry(reason="unregistered", raw="base64:gASV", args=[]))
    assert shown["replayable"] is False
    assert "never decoded" in shown["why_not_replayable"]


JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                       lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                                      max_size=4), max_leaves=12)


@settings(max_examples=150, deadline=None)
@given(args=st.lists(JSONISH, max_size=4), kwargs=st.dictionaries(st.text(max_size=10), JSONISH, max_size=4),
       message=st.text(max_size=100), attempts=st.lists(st.dictionaries(st.text(max_size=8), JSONISH, max_size=3),
                                                        max_size=3))
def test_any_entry_renders_clean(args: list[Any], kwargs: dict[str, Any], message: str,
                                 attempts: list[dict[str, Any]]) -> None:
    entry = crafted_entry(args=args, kwargs=kwargs, exc_message=message, attempts=attempts, traceback=message)
    for shown in (detail(entry, ChargeTask()), row(entry, ChargeTask()), detail(entry)):
        assert_clean(shown)
        json.dumps(shown)


def test_basic_login_parsing() -> None:
    assert basic_login("Basic dmlld2VyOnB3OmV4dHJh") == ("viewer", "viewer:pw:extra")
    for bad in (None, "", "Bearer x", "Basic !!!", "Basic //79", "basic dmlld2VyOnB3", "Basic a b"):
        assert basic_login(bad) is None
    # Parsed as Flower parses it: any whitespace separates, characters outside the alphabet are dropped.
    assert basic_login("Basic\tdmlld2VyOnB3") == basic_login("Basic dmll*d2VyOnB3") == ("viewer", "viewer:pw")


def test_who_is_read_only() -> None:
    viewer = "Basic " + base64.b64encode(b"viewer:pw").decode()
    ops = "Basic " + base64.b64encode(b"ops:pw").decode()
    settings = Settings(console_readonly_auth=("viewer:pw",))
    console = Console(Stalwart("ro", settings=settings, set_as_current=False), full_logins=("ops:pw",))
    assert (console.readonly(viewer), console.readonly(ops), console.readonly(None)) == (True, False, True)
    # Not recognised as a full-access login: read-only (a header only Flower could read, a wrong password).
    assert console.readonly("Basic " + base64.b64encode(b"ops:wrong").decode())
    assert console.readonly("Basic\t" + base64.b64encode(b"viewer:pw").decode())
    assert console.is_readonly_login(viewer)
    assert not console.is_readonly_login("Basic " + base64.b64encode(b"viewer:wrong").decode())
    everyone = Console(Stalwart("ro", settings=Settings(console_readonly=True), set_as_current=False))
    assert everyone.readonly(ops)
    flowers = Console(Stalwart("ro", settings=Settings(), set_as_current=False), flower_read_only=True)
    assert flowers.readonly(ops)  # Flower's own --read_only makes the console read-only too
