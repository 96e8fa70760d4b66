"""The supported Celery/kombu range is one fact: what pyproject declares is what import accepts."""

from __future__ import annotations

import re

import pytest

from stalwart.broker import compat
from stalwart.testing import REPO_ROOT


def declared() -> dict[str, str]:
    text = (REPO_ROOT / "pyproject.toml").read_text()
    block = text.split("dependencies = [", 1)[1].split("]\n", 1)[0]  # tomllib is 3.11+; we support 3.10
    deps = re.findall(r'^\s*"([^"]+)"', block, re.MULTILINE)
    out = {}
    for dep in deps:
        match = re.fullmatch(r"([a-z]+)(?:\[[a-z,]+\])?(.*)", dep)
        if match and match.group(1) in compat.SUPPORTED:
            out[match.group(1)] = match.group(2)
    return out


def test_pyproject_declares_exactly_the_range_import_accepts() -> None:
    assert declared() == compat.SUPPORTED


@pytest.mark.parametrize("celery", ["5.5.0", "5.5.3", "5.6.3", "5.7.0", "5.7.1rc1"])
def test_supported_versions_import(celery: str) -> None:
    assert compat.problem({"celery": celery, "kombu": "5.6.2"}) is None


@pytest.mark.parametrize("celery", ["5.4.0", "5.5.0rc1", "5.5.0.dev0", "5.8.0", "6.0.0", "5.10.1", "junk", None])
def test_unsupported_versions_fail_in_one_line_naming_the_range(celery: str | None) -> None:
    why = compat.problem({"celery": celery, "kombu": "5.7.0"})
    assert why is not None
    assert "\n" not in why
    assert "celery>=5.5,<5.8" in why
    assert f"celery {celery or 'missing'}" in why
