"""The package map holds: no import cycles, one owner for Redis and Lua, one for the environment.

Imports are read from the source with ``ast``, wherever they stand: at module level, inside
``if TYPE_CHECKING:`` and inside functions. A cycle held apart by a typing-only or a
function-local import is still a cycle.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "platform" / "stalwart"
STORE = ROOT / "store"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def imported(path: Path, tree: ast.Module | None = None) -> Iterator[tuple[str, ast.AST]]:
    """Every ``stalwart`` module ``path`` imports, with the import node."""
    tree = tree or ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("stalwart"):
                    yield alias.name, node
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            if not base.startswith("stalwart"):
                continue
            for alias in node.names:  # `from stalwart.x import y` may import the module stalwart.x.y
                candidate = f"{base}.{alias.name}"
                yield (candidate if candidate in MODULES else base), node


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        targets = {target for target, _ in imported(path) if target in MODULES and target != name}
        # Importing stalwart.a.b runs stalwart/__init__ and stalwart/a/__init__ first: the package
        # __init__ files are the public surface and may import anything below them.
        edges[name] = {t for t in targets if not name.startswith(t + ".") and t != "stalwart"}
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_module_import_graph_has_no_cycle() -> None:
    cycle = find_cycle(graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_function_local_or_typing_only_import_of_stalwart_modules() -> None:
    found = []
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = {id(n) for n in tree.body}
        for target, node in imported(path, tree):
            if id(node) not in top:
                found.append(f"{name} imports {target} at line {node.lineno}")  # type: ignore[attr-defined]
    assert found == []


def packages_of(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    """The subpackage-level graph: stalwart.<package> -> stalwart.<package>."""
    def package(module: str) -> str:
        parts = module.split(".")
        return ".".join(parts[:2]) if len(parts) > 2 or (ROOT / parts[-1]).is_dir() else module

    out: dict[str, set[str]] = {}
    for src, targets in edges.items():
        out.setdefault(package(src), set()).update(package(t) for t in targets if package(t) != package(src))
    return out


def test_the_store_depends_on_nothing_above_it() -> None:
    edges = graph()
    for name, targets in edges.items():
        if name.startswith("stalwart.store"):
            above = {t for t in targets if not t.startswith("stalwart.store") and t != "stalwart.errors"}
            assert above == set(), f"{name} imports {above}"


REDIS_COMMANDS = (
    "hget|hset|hsetnx|hmget|hmset|hgetall|hdel|hincrby\\w*|hlen|hexists|hkeys|hvals|hscan|"
    "zadd|zrem\\w*|zcard|zcount|zscore|zincrby|zrange\\w*|zrevrange\\w*|zpop\\w*|zscan|"
    "sadd|srem|smembers|sismember|scard|sscan|spop|"
    "lpush|rpush|lpop|rpop|lrem|llen|lrange|ltrim|lmove|blmove|brpop|blpop|rpoplpush|lindex|lset|"
    "setnx|setex|psetex|getset|getdel|mget|mset|incr\\w*|decr\\w*|pexpire\\w*|expire\\w*|persist|"
    "eval|evalsha|execute_command|script_load|script_exists|register_script|flushall|flushdb|"
    "xadd|xrange|xread\\w*"
)
# A Redis command called on anything, a getattr of one by name, or the ambiguous verbs (set, get,
# delete, ping, time, keys, scan, exists, type) called on something named like a client.
REDIS_TOUCH = re.compile(
    r"\b(load_script)\b"
    rf"|\.\s*({REDIS_COMMANDS})\s*\("
    rf"|getattr\([^)]*[\"']({REDIS_COMMANDS}|set|get|delete)[\"']"
    r"|\b(client|pipe|pipeline|redis|broker|conn|connection|r|rc)\s*\.\s*"
    r"(set|get|delete|unlink|ping|time|keys|scan|scan_iter|exists|type|info|shutdown|config_\w+)\s*\(",
    re.IGNORECASE,
)

# Reading the environment in any spelling: os.environ / os.getenv / `from os import environ`.
ENV_TOUCH = re.compile(r"\benviron\b|\bgetenv\b")


def docstring_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            lines.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    return lines


# dev/embedded.py starts throwaway redis-servers (and a local cluster) for `stalwart dev` and the
# tests: it pings them and sends CLUSTER admin commands, never touching a Stalwart key.
OUTSIDE_STORE = [p for name, p in MODULES.items() if STORE not in p.parents and name != "stalwart.dev.embedded"]


@pytest.mark.parametrize("path", OUTSIDE_STORE, ids=str)
def test_only_the_store_talks_redis_commands_or_lua(path: Path) -> None:
    text = path.read_text()
    prose = docstring_lines(ast.parse(text))
    hits = [f"{path.name}:{i}: {line.strip()}" for i, line in enumerate(text.splitlines(), 1)
            if REDIS_TOUCH.search(line) and not line.lstrip().startswith("#") and i not in prose]
    assert hits == []


def test_every_lua_script_has_exactly_one_typed_caller() -> None:
    scripts = sorted(p.stem.rpartition("-")[0] for p in (STORE / "lua").glob("*-*.lua"))
    sources = {p: p.read_text() for p in STORE.glob("*.py") if p.name != "scripts.py"}
    for name in scripts:
        callers = [p.name for p, text in sources.items() if f'script("{name}")' in text]
        assert len(callers) == 1, f"{name}: called from {callers}"


def test_no_library_module_reads_the_environment_but_settings() -> None:
    readers = []
    for name, path in MODULES.items():
        text = path.read_text()
        if name in ("stalwart.settings", "stalwart.testing", "stalwart.dev.stack"):
            continue  # settings reads it; the test and dev harnesses pass it on to child processes
        code = "\n".join(line for i, line in enumerate(text.splitlines(), 1)
                         if i not in docstring_lines(ast.parse(text)) and not line.lstrip().startswith("#"))
        if ENV_TOUCH.search(code):
            readers.append(name)
    # ops.metrics sets and reads prometheus_client's own PROMETHEUS_MULTIPROC_DIR for its children.
    assert readers == ["stalwart.ops.metrics"]


def test_every_stalwart_exception_derives_from_stalwart_error() -> None:
    import importlib  # noqa: PLC0415

    import stalwart  # noqa: PLC0415 - the test is about what importing it exposes
    from stalwart.errors import StalwartError  # noqa: PLC0415

    missing = []
    for name in MODULES:
        module = importlib.import_module(name)
        for attr, value in vars(module).items():
            if (isinstance(value, type) and issubclass(value, BaseException)
                    and value.__module__ == name and not issubclass(value, StalwartError)):
                missing.append(f"{name}.{attr}")
    assert stalwart.StalwartError is StalwartError
    assert missing == []
