"""The README's task declaration is real code: it declares, validates and runs as written."""

from __future__ import annotations

import re
from typing import Any

from stalwart.app import Stalwart
from stalwart.settings import Settings
from stalwart.testing import REPO_ROOT


def readme_example() -> str:
    text = (REPO_ROOT / "README.md").read_text()
    match = re.search(r"```python\n(.*?)```", text, re.DOTALL)
    assert match, "the README lost its task declaration example"
    return match.group(1)


def test_the_readme_task_declaration_is_valid_and_callable() -> None:
    app = Stalwart("readme", settings=Settings(), set_as_current=False)
    source = readme_example().replace("from workers.app import app\n", "")
    namespace: dict[str, Any] = {"app": app, "provider_is_throttling": lambda: False}
    exec(compile(source, "README.md", "exec"), namespace)
    charge = namespace["charge"]
    assert charge.retry_policy.max_attempts == 5
    assert [p.name for p in charge.permits] == ["stripe", "stripe-api", "stripe-conn"]
    assert charge.derive_key(("o-1", 500), {}).endswith("charge-o-1")
    assert charge("o-1", 500) == "charged"  # called directly: the body runs in-process
