"""Group dead letters by cause: task + exception type + the error message with its variable parts
(numbers, ids, hex, addresses) replaced, so "order 41 failed" and "order 42 failed" are one cause.

Pure functions; the store keeps the per-cause counts up to date as entries are added and removed.
"""

from __future__ import annotations

import hashlib
import re

MESSAGE_CHARS = 200  # a normalised message longer than this is cut: the tail rarely tells causes apart
_RULES = (
    (re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"), "<uuid>"),
    (re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"), "<ip>"),
    (re.compile(r"\b0x[0-9a-fA-F]+\b"), "<hex>"),
    (re.compile(r"\b(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{8,}\b"), "<hex>"),
    (re.compile(r"\d+(?:\.\d+)?"), "<n>"),
    (re.compile(r"\s+"), " "),
)


def normalise(message: str | None) -> str:
    """The message with its variable parts replaced by placeholders, whitespace collapsed."""
    text = (message or "").strip()
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return text[:MESSAGE_CHARS]


def cause_id(task: str | None, exc_type: str | None, message: str | None) -> str:
    """A short stable id of (task, exception type, normalised message)."""
    key = "\0".join((task or "", exc_type or "", normalise(message)))
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:20]


__all__ = ["cause_id", "normalise"]
