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


def flow_control_examples() -> list[str]:
    text = (REPO_ROOT / "README.md").read_text()
    section = text.split("## Flow control", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.DOTALL)


def test_the_readme_flow_control_examples_declare_and_enqueue_as_written(app: Stalwart) -> None:
    """Each flow-control example runs as written against a real redis-server: declarations are
    checked by the decorator, and an example's enqueues go through the real enqueue path."""
    examples = flow_control_examples()
    assert len(examples) >= 4, "the flow-control section lost its examples"
    declared: list[Any] = []
    for source in examples:
        namespace: dict[str, Any] = {"app": app, "__name__": "README"}
        exec(compile(source, "README.md", "exec"), namespace)
        declared += [v for v in namespace.values() if str(getattr(v, "name", "")).startswith("README.")]
    kinds = {
        "per-key": any(any("{" in p.name for p in getattr(t, "permits", ())) for t in declared),
        "fair_by": any(getattr(t, "fair_by", None) for t in declared),
        "debounce": any(getattr(t, "debounce", None) for t in declared),
        "singleton": any(getattr(t, "singleton", None) for t in declared),
    }
    assert all(kinds.values()), kinds
