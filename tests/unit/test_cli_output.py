"""CLI output never lets control characters from stored data reach the terminal (issue 10.9)."""

from __future__ import annotations

import io
import json
import re

from hypothesis import given
from hypothesis import strategies as st

from stalwart.cli.output import escape, print_fields, print_json, print_table, say

# What a terminal acts on: C0 but newline/tab, DEL, C1 (0x9b is CSI, 0x9d OSC), bidi controls.
ACTIVE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
HOSTILE = "ok\x1b]8;;http://evil.example\x07click\x1b]8;;\x07\x1b[2J\x1b[31mred\x9b1m\r\u202eevil\x00"


def printed(fn: object, *args: object, **kwargs: object) -> str:
    out = io.StringIO()
    fn(*args, out=out, **kwargs)  # type: ignore[operator]
    return out.getvalue()


def test_tables_fields_lines_and_json_show_escape_sequences_as_text() -> None:
    table = printed(print_table, [{"id": HOSTILE, HOSTILE: 1}], ("id", HOSTILE), max_width=500)
    fields = printed(print_fields, {"error": HOSTILE, HOSTILE: [HOSTILE]})
    line = printed(say, f"breaker {HOSTILE}: open")
    doc = printed(print_json, {HOSTILE: HOSTILE + "\x7f"})
    for text in (table, fields, line, doc):
        assert not ACTIVE.search(text), repr(text)
    assert "\\x1b]8;;http://evil.example\\x07click" in table
    assert json.loads(doc) == {HOSTILE: HOSTILE + "\x7f"}  # JSON still round-trips exactly


@given(st.text())
def test_escaped_text_has_no_active_character(text: str) -> None:
    assert not ACTIVE.search(escape(text))
    assert not ACTIVE.search(escape(text, keep_lines=False).replace("\n", "").replace("\t", ""))
    assert "\n" not in escape(text, keep_lines=False)


@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cf", "Zl", "Zp"))))
def test_ordinary_text_is_unchanged(text: str) -> None:
    assert escape(text) == text
