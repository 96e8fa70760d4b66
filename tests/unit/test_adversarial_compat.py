"""Adversarial regressions for the architecture change (issue 8), from a red-team pass.

Red team, claim 4: the Celery/kombu range is true: what pip may install is what import accepts,
and a version outside it fails at `import stalwart` in one line naming the range.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from stalwart.broker.compat import SUPPORTED, problem

ROOT = Path(__file__).resolve().parents[2]


def declared() -> dict[str, Requirement]:
    text = (ROOT / "pyproject.toml").read_text()
    block = text.split("dependencies = [", 1)[1].split("]\n", 1)[0]  # tomllib is 3.11+; we support 3.10
    deps = re.findall(r'^\s*"([^"]+)"', block, re.MULTILINE)
    reqs = [Requirement(d) for d in deps]
    return {r.name: r for r in reqs if r.name in SUPPORTED}


@pytest.mark.parametrize("name", sorted(SUPPORTED))
@pytest.mark.parametrize("candidate", ["5.7.9", "5.8.0", "5.9.1", "5.99.0"])
def test_pyproject_allows_exactly_what_import_accepts(name: str, candidate: str) -> None:
    """pyproject.toml says celery[redis]>=5.5,<6 and kombu>=5.5,<6; compat.SUPPORTED says <5.8.
    pip therefore installs (or keeps) Celery 5.8/5.9 with Stalwart, and `import stalwart` then
    fails: the declared range is still not the true one (issue 8, point 3)."""
    installable = declared()[name].specifier.contains(Version(candidate), prereleases=True)
    importable = problem({"celery": "5.6.0", "kombu": "5.6.0", name: candidate}) is None
    assert installable == importable, f"{name} {candidate}: pip allows={installable}, import allows={importable}"


@pytest.mark.parametrize("version", ["5.5.0rc1", "5.5.0a1", "5.5.0.dev0"])
def test_pre_releases_below_the_lower_bound_are_refused(version: str) -> None:
    """PEP 440: 5.5.0rc1 < 5.5, so it is outside >=5.5; _release() drops everything after the
    minor number and accepts it."""
    assert problem({"celery": version, "kombu": "5.6.0"}) is not None


IMPORT_WITH = """
import importlib.metadata as md
real = md.version
def fake(name):
    if name == {name!r}:
        {body}
    return real(name)
md.version = fake
import stalwart
"""


@pytest.mark.parametrize(("name", "body"), [
    ("celery", "return '6.0.0'"), ("kombu", "return '5.10.1'"), ("celery", "raise md.PackageNotFoundError(name)"),
    ("celery", "return '5.4.9'"),
])
def test_import_fails_in_one_line_naming_the_range(name: str, body: str) -> None:
    code = textwrap.dedent(IMPORT_WITH.format(name=name, body=body))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode != 0
    assert last.startswith("ImportError: stalwart supports celery>=5.5,<5.8 and kombu>=5.5,<5.8"), last
