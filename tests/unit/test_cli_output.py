"""CLI output never lets control characters from stored data reach the terminal (issue 10.9)."""

from __future__ import annotations

import io
import json
import re
import unicodedata

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


@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Zl", "Zp"))))
def test_ordinary_text_is_unchanged(text: str) -> None:
    assert escape(text) == text


HIDDEN_CATEGORIES = ("Cc", "Cf", "Cs", "Zl", "Zp")


@given(st.text(alphabet=st.characters(categories=HIDDEN_CATEGORIES)))
def test_every_format_control_separator_and_surrogate_is_shown_as_text(text: str) -> None:
    """Red team (issue 10): tag characters (U+E0000 block), U+206A-206F, the soft hyphen and lone
    surrogates went through unescaped."""
    shown = escape(text, keep_lines=False)
    assert shown.isascii()
    assert all(unicodedata.category(c) not in HIDDEN_CATEGORIES or c in "\t\n" for c in escape(text))


def test_named_invisible_characters_are_escaped() -> None:
    for char, shown in (("\u00ad", "\\xad"), ("\u206a", "\\u206a"), ("\U000e0041", "\\U000e0041"),
                        ("\udcff", "\\udcff"), ("\u200d", "\\u200d")):
        assert escape(f"a{char}b") == f"a{shown}b"


def test_a_lone_surrogate_prints_in_every_format() -> None:
    value = "report-\udcff.csv"
    for text in (printed(say, value), printed(print_fields, {"file": value}),
                 printed(print_table, [{"file": value}], ("file",)), printed(print_json, {"file": value})):
        text.encode("utf-8")  # printable on a UTF-8 terminal: no lone surrogate left
