"""Per-key policy names (issue 12, point 1): templates checked at declaration, rendering total.

Any string is accepted as a policy name exactly when it is a valid fixed name or template (an
oracle written independently below, by splitting on ':'); rendering any JSON value gives a valid
key or a PolicyKeyError, never another exception; two values render the same key only when their
text is equal. No Redis.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from stalwart.app import Stalwart
from stalwart.errors import ConfigurationError, Permanent, PolicyKeyError
from stalwart.job.classify import classify
from stalwart.job.context import JobContext
from stalwart.job.header import Meta
from stalwart.policies.breakers import Breaker
from stalwart.policies.keyed import MAX_KEY_CHARS, escape, matches, parse_name
from stalwart.policies.limits import Concurrency, RateLimit
from stalwart.policies.retry import Retry
from stalwart.runtime import Runtime
from stalwart.settings import Settings

APP = Stalwart("keyed-decl", settings=Settings.from_env({"STALWART_REDIS_URL": "redis://127.0.0.1:1/0"}))
FAST = settings(max_examples=300, suppress_health_check=list(HealthCheck), deadline=None)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=300),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
KEY_CHARS = re.compile(r"[A-Za-z0-9\-_.~@+=,;!/|%]+")


# -- the oracle: what a valid name is, written from the documented rules --------------------------


def literal_valid(text: str) -> bool:
    return all(c.isprintable() and not c.isspace() and c not in "{}<>" for c in text)


def field_valid(text: str) -> bool:
    match = re.fullmatch(r"([^.\[\]]+)((?:\.[^.\[\]]+|\[[A-Za-z0-9_-]+\])*)", text)
    if match is None or not match.group(1).isidentifier():
        return False
    return all(a.isidentifier() for a in re.findall(r"\.([^.\[\]]+)", match.group(2)))


def oracle(name: str) -> bool:
    """Fixed: non-empty, no braces, no space. Template: ':'-segments, the first literal, every
    other literal or one whole field, at most MAX_KEY_CHARS long."""
    if "{" not in name and "}" not in name:
        return bool(name) and " " not in name
    if len(name) > MAX_KEY_CHARS or " " in name:
        return False
    segments = name.split(":")
    if len(segments) < 2 or not segments[0] or not literal_valid(segments[0]):
        return False
    fields = 0
    for seg in segments[1:]:
        if seg.startswith("{") and seg.endswith("}") and len(seg) >= 2 and field_valid(seg[1:-1]):
            fields += 1
        elif not literal_valid(seg):
            return False
    return fields > 0


NAME_ALPHABET = st.sampled_from([*"ab_:{}.[]0 -<>%!x\x00é\n", "{a}", "{b.c}", "{a[0]}", "{}", "{{", "}}"])
SEGMENTS = st.text(alphabet="ab_-.é<{}% ", max_size=4) | st.sampled_from(
    ["{a}", "{b.c}", "{a[0]}", "{a[x-y]}", "{}", "{0}", "{a!r}", "{a.}", "{a b}", "{ä}", "{a[:]}", "{a.1}", "x"])
TEMPLATES = st.lists(SEGMENTS, min_size=1, max_size=5).map(":".join) | st.tuples(
    st.sampled_from(["a", "shop", "t.1", "é", ""]), st.lists(SEGMENTS, min_size=1, max_size=4),
).map(lambda t: ":".join([t[0], *t[1]]))
NAMES = st.text(max_size=40) | st.lists(NAME_ALPHABET, max_size=12).map("".join) | TEMPLATES


@FAST
@given(NAMES)
def test_any_string_is_accepted_as_a_name_exactly_when_valid(name: str) -> None:
    if not oracle(name):
        with pytest.raises(ConfigurationError) as refused:
            parse_name("RateLimit", name)
        message = str(refused.value)
        assert repr(name) in message or "RateLimit.name" in message
        return
    assert parse_name("RateLimit", name).keyed == ("{" in name)


@pytest.mark.parametrize("name", ["shopify:{shop_id}", "tenant:{tenant_id}:reports", "a:{x}:{y}",
                                  "api:{order.account}", "api:{payload[account]}", "a:b:{x}"])
def test_templates_that_are_accepted(name: str) -> None:
    assert RateLimit(name, "2/s").keyed


@pytest.mark.parametrize(("name", "says"), [
    ("x{y}", "starts with literal text"), ("a:x{y}", "whole ':'-separated segment"),
    ("{y}:x", "starts with literal text"),
    ("a:{}", "every field must name an argument"), ("a:{0}", "every field must name an argument"),
    ("a:{x!r}", "no conversion"), ("a:{x:>3}", "no conversion"), ("a:{x}{y}", "whole"),
    ("a:{{x}}", "literal text"), ("a:{x.}", "field {x.}"), ("a:<b>:{x}", "literal text"),
    ("a:{x", "not a valid template"), ("a:" + "b" * 200 + ":{x}", "longer than 200"),
])
def test_invalid_templates_say_why(name: str, says: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(says)):
        Concurrency(name, 2)


def test_a_key_callable_needs_a_plain_family_name() -> None:
    assert Breaker("smtp", key=lambda provider: provider).family == "smtp:{key()}"
    with pytest.raises(ConfigurationError, match="family name"):
        RateLimit("smtp:{x}", "1/s", key=lambda x: x)
    with pytest.raises(ConfigurationError, match="must be a callable"):
        RateLimit("smtp", "1/s", key="provider")  # type: ignore[arg-type]


# -- declaration on a task --------------------------------------------------------------------------


def declare(policy: Any, option: str = "limits") -> Any:
    def body(tenant_id: Any, region: str = "eu") -> Any:
        return tenant_id

    body.__name__ = body.__qualname__ = f"body_{uuid.uuid4().hex[:8]}"
    value = policy if option == "breaker" else [policy]
    return APP.task(**{option: value})(body)


def test_template_fields_must_name_task_parameters() -> None:
    assert declare(Concurrency("tenant:{tenant_id}:{region}", 2)).permits
    with pytest.raises(ConfigurationError) as caught:
        declare(Concurrency("tenant:{tenant}", 2))
    assert "names tenant," in str(caught.value)
    assert "(tenant_id, region)" in str(caught.value)
    with pytest.raises(ConfigurationError, match="names provider"):
        declare(Breaker("smtp:{provider}"), "breaker")


# -- rendering --------------------------------------------------------------------------------------


def render(template: str, value: Any) -> str:
    return parse_name("RateLimit", template).render_values({"x": value, "y": "fixed"})


def attempt(template: str, value: Any) -> tuple[str | None, str | None]:
    """(rendered, None) or (None, the PolicyKeyError's message); any other exception propagates."""
    try:
        return render(template, value), None
    except PolicyKeyError as exc:
        assert isinstance(exc, Permanent)  # noqa: PT017 - the error class is the property
        return None, str(exc)


def _text(value: Any) -> str:
    return str(value) if not isinstance(value, int) else int.__repr__(value)


@FAST
@given(JSON | st.uuids() | st.text(min_size=150, max_size=400) | st.text(alphabet="{} :%<>\t", max_size=20))
def test_rendering_any_value_gives_a_valid_key_or_the_clear_error(value: Any) -> None:
    for template in ("api:{x}", "api:{x}:{y}", "api:{x[k]}", "api:{x.real}"):
        rendered, error = attempt(template, value)
        if error is not None:
            assert f"RateLimit {template!r}" in error
            continue
        assert rendered is not None
        assert len(rendered) <= MAX_KEY_CHARS
        assert matches(template, rendered)
        segments = rendered.split(":")
        assert all(KEY_CHARS.fullmatch(s) for s in segments[1:]), rendered
        if template == "api:{x}":
            assert isinstance(value, (str, int, float, uuid.UUID))
            assert not isinstance(value, bool)
            assert rendered == "api:" + escape(_text(value))


SCALARS = st.text(max_size=60) | st.integers() | st.floats(allow_nan=False) | st.uuids()


@FAST
@given(SCALARS, SCALARS, SCALARS, SCALARS)
def test_different_values_never_share_a_key(a: Any, b: Any, c: Any, d: Any) -> None:
    key = parse_name("Concurrency", "t:{x}:{y}")
    try:
        first, second = key.render_values({"x": a, "y": b}), key.render_values({"x": c, "y": d})
    except PolicyKeyError:
        assume(False)
        return
    same_text = (_text(a), _text(b)) == (_text(c), _text(d))
    assert (first == second) == same_text


@pytest.mark.parametrize(("value", "says"), [
    (None, "{x} is None"), ("", "empty string"), (True, "must be a str, int, float or UUID, got bool"),
    ({"a": 1}, "got dict"), ([1], "got list"), (object(), "got object"), ("x" * 201, "more than 200"),
])
def test_values_that_cannot_render_say_why(value: Any, says: str) -> None:
    with pytest.raises(PolicyKeyError, match=re.escape(says)):
        render("api:{x}", value)


def test_braces_spaces_and_colons_in_values_are_escaped() -> None:
    assert render("api:{x}", "{a b}:c") == "api:%7Ba%20b%7D%3Ac"
    assert render("api:{x}", "café") == "api:caf%C3%A9"
    assert render("api:{x}", "\ud800") == "api:%ED%A0%80"  # a lone surrogate from JSON


def test_attribute_and_index_fields_and_missing_ones() -> None:
    key = parse_name("RateLimit", "api:{order[account]}")
    assert key.render_values({"order": {"account": "acme"}}) == "api:acme"
    with pytest.raises(PolicyKeyError, match=r"\{order\[account\]\} cannot be read"):
        key.render_values({"order": {"other": 1}})
    with pytest.raises(PolicyKeyError, match="lack order"):
        key.render_values({})


def test_a_key_callable_that_raises_is_a_policy_key_error() -> None:
    policy = RateLimit("api", "1/s", key=lambda account, **_: account["id"])
    assert policy.for_key({"id": 7}).name == "api:7"
    with pytest.raises(PolicyKeyError, match="key callable raised KeyError"):
        policy.for_key({})


def fake_ctx(args: tuple[Any, ...], kwargs: dict[str, Any]) -> JobContext:
    return JobContext("keyed.task", "tid", "celery", args, kwargs, Meta(), 1, "host", "t:tid")


def test_delivery_renders_from_the_tasks_signature_with_defaults() -> None:
    def body(tenant_id: Any, region: str = "eu") -> None: ...

    class Task:
        run = staticmethod(body)

    runtime = Runtime(Settings.from_env({"STALWART_REDIS_URL": "redis://127.0.0.1:1/0"}))
    runtime.task_of = lambda name: Task()
    policy = Concurrency("tenant:{tenant_id}:{region}", 2)
    assert policy.rendered(runtime, fake_ctx(("acme",), {})) == "tenant:acme:eu"
    assert policy.rendered(runtime, fake_ctx((), {"tenant_id": 4, "region": "us"})) == "tenant:4:us"
    with pytest.raises(PolicyKeyError, match="do not fit the task"):
        policy.rendered(runtime, fake_ctx((1, 2, 3), {}))
    with pytest.raises(PolicyKeyError, match=r"\{tenant_id\} is None"):
        policy.rendered(runtime, fake_ctx((None,), {}))


def test_an_unrenderable_key_is_dead_lettered_as_permanent() -> None:
    exc = parse_name("Concurrency", "tenant:{tenant_id}").problem("{tenant_id} is None")
    assert classify(exc, Retry(), (), 1, None).reason == "permanent"


def test_a_template_held_without_its_fields_is_a_configuration_error() -> None:
    policy = RateLimit("shopify:{shop_id}", "2/s")
    with pytest.raises(ConfigurationError, match=r"for_key\(shop_id=\.\.\.\)"), policy.hold():
        pass
    with pytest.raises(ConfigurationError, match="lack shop_id"):
        policy.for_key(shop=1)
    with pytest.raises(ConfigurationError, match="takes the fields by name"):
        policy.for_key(1)
    assert policy.for_key(shop_id=42, other="ignored").name == "shopify:42"
    with pytest.raises(ConfigurationError, match="one fixed name"):
        RateLimit("shopify", "2/s").for_key(shop_id=1)


def test_a_decorated_function_must_have_the_template_fields() -> None:
    with pytest.raises(ConfigurationError, match="names shop_id"):
        RateLimit("shopify:{shop_id}", "2/s")(lambda shop: shop)
