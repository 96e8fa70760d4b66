"""What rate limits, concurrency limits and breakers share: the envelope permit, in-body use,
Redis-trouble handling, the registry, and per-key names (:mod:`stalwart.policies.keyed`).

A keyed policy (``Concurrency("tenant:{tenant_id}", 3)``) renders its name from each job's
arguments at delivery; the granted :class:`Decision` carries the rendered name, so release and
renewal reach the same budget. The registry lists the template once; the rendered names a
template used recently are kept in its capped "busiest keys" set (see
:mod:`stalwart.store.limits`). In a body, ``policy.for_key(...)`` gives the policy of one key;
``@policy`` on a function renders the name from that function's arguments.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal, TypeVar

from stalwart.errors import ConfigurationError, LimitExceeded, RetryAfter, StateStoreError
from stalwart.job.context import JobContext, Outcome
from stalwart.policies.keyed import KeyFn, PolicyKey, parse_name
from stalwart.policies.permits import Decision
from stalwart.runtime import Runtime
from stalwart.store.connection import client_from_url
from stalwart.store.keys import Keys
from stalwart.store.limits import IDLE_TTL_MS, KEY_IDLE_MS, LimitStore

log = logging.getLogger("stalwart.policies.limits")
F = TypeVar("F", bound=Callable[..., Any])
FailMode = Literal["open", "closed"]
UNAVAILABLE = "state store unavailable"
PERMIT_TIMEOUT = 0.5  # seconds: a permit decision never waits long on a sick Redis
CLOSED_RETRY = 1.0  # seconds a fail-closed policy defers for while Redis is unreachable
STORE_ERRORS = (StateStoreError,)

REREGISTER_SECONDS = 3600.0  # a process in use renews a policy's registry entry this often
MAX_TRACKED_NAMES = 1000  # policy names one process remembers (registrations, error counts)
OTHER = "other"  # where error counts of names past MAX_TRACKED_NAMES go

_lock = threading.Lock()
REDIS_ERRORS: dict[str, int] = {}  # policy name (a template, not a rendered key) -> errors seen
_registered: OrderedDict[tuple[int, str, str], float] = OrderedDict()  # -> monotonic time registered
_stores: weakref.WeakKeyDictionary[Runtime, Any] = weakref.WeakKeyDictionary()
_set_aside: list[Any] = []  # a forked child's inherited permit clients: never used, never closed


def _fresh_in_child() -> None:
    """A forked child gets its own lock and its own permit clients (see stalwart.runtime); the
    inherited ones are kept unclosed (closing takes a pool lock the fork may have copied held)."""
    global _lock, _stores  # noqa: PLW0603 - module state, replaced in a forked child
    _lock = threading.Lock()
    _set_aside.append(_stores)
    _stores = weakref.WeakKeyDictionary()


os.register_at_fork(after_in_child=_fresh_in_child)


def redis_errors() -> dict[str, int]:
    """State-store errors per policy name in this process (for the metrics endpoint); at most
    MAX_TRACKED_NAMES names, the rest counted under ``other``."""
    with _lock:
        return dict(REDIS_ERRORS)


def note_redis_error(name: str, exc: BaseException) -> None:
    with _lock:
        label = name if name in REDIS_ERRORS or len(REDIS_ERRORS) < MAX_TRACKED_NAMES else OTHER
        REDIS_ERRORS[label] = REDIS_ERRORS.get(label, 0) + 1
    log.warning("policy %s: state store error: %s", name, exc)


def store(runtime: Runtime) -> Any:
    """The runtime's state store with a short timeout, for permit decisions."""
    client = _stores.get(runtime)
    if client is None:
        timeout = min(runtime.settings.redis_timeout_seconds, PERMIT_TIMEOUT)
        client = _stores[runtime] = client_from_url(runtime.settings.redis_url, timeout)
    return client


def check_fail_mode(where: str, mode: object) -> None:
    if mode not in ("open", "closed"):
        raise ConfigurationError(f"{where}.on_redis_error must be 'open' or 'closed', got {mode!r}")


def check_name(where: str, name: object) -> None:
    """A fixed policy name (an operator's CLI argument): non-empty, no braces or spaces."""
    if not isinstance(name, str) or not name or any(c in name for c in "{} "):
        raise ConfigurationError(f"{where}.name must be a non-empty str without braces or spaces, got {name!r}")


def _current_runtime() -> Runtime:
    from celery import current_app  # noqa: PLC0415 - only needed in task bodies

    runtime = getattr(current_app, "stalwart", None)
    if not isinstance(runtime, Runtime):
        raise ConfigurationError("hold() needs a Stalwart app or a runtime")
    return runtime


class SharedPolicy:
    """What limits and breakers share: envelope permit, in-body use, Redis-trouble handling."""

    kind: ClassVar[str]
    denied_error: ClassVar[type[RetryAfter]] = LimitExceeded
    name: str
    key: KeyFn | None
    on_redis_error: FailMode
    spec: PolicyKey

    def setup_name(self) -> None:
        """Parse the declared name (and ``key=``); call from ``__post_init__``."""
        object.__setattr__(self, "spec", parse_name(type(self).__name__, self.name, self.key))

    @property
    def family(self) -> str:
        """The registry name: the fixed name, or the template."""
        return self.spec.family

    @property
    def keyed(self) -> bool:
        return self.spec.keyed

    def idle_ms(self) -> int:
        """How long unused state of one name is kept: a fixed name's days, a rendered key's minutes."""
        return KEY_IDLE_MS if self.keyed else IDLE_TTL_MS

    def name_for(self, name: str | None) -> str:
        """The name to act on: the rendered one given, or the fixed name."""
        if name is not None:
            return name
        if self.keyed:
            raise ConfigurationError(
                f"{type(self).__name__} {self.family!r} is a per-key template: use "
                f"for_key({', '.join(f'{f}=...' for f in self.spec.fields) or '*args, **kwargs'}) for one key"
            )
        return self.name

    def check_task(self, where: str, fun: Callable[..., Any]) -> None:
        """Attached to a task: every template field must name one of its parameters."""
        self.spec.check_task(where, fun)

    def config(self) -> dict[str, str]:
        raise NotImplementedError

    def try_acquire(self, client: Any, keys: Keys, ctx: JobContext | None, name: str | None = None) -> Decision:
        """The decision itself, on any client (Redis or RedisCluster); may raise RedisError."""
        raise NotImplementedError

    def give_back(self, client: Any, keys: Keys, decision: Decision, outcome: Outcome) -> None:
        """Release a granted permit; may raise RedisError."""

    def register(self, client: Any, keys: Keys, clock: Callable[[], float] = time.monotonic) -> None:
        """Record the name (a template once, never its keys) and settings so the CLI can list it:
        once per process and hour while in use, remembering a bounded set of names."""
        marker = (id(client), self.kind, self.family)
        now = clock()
        with _lock:
            last = _registered.get(marker)
        if last is not None and now - last < REREGISTER_SECONDS:
            return
        config = self.config()
        if self.keyed:
            config["key"] = "callable" if self.key is not None else "template"
        LimitStore(client, keys).register(self.kind, self.family, config, template=self.keyed)
        with _lock:
            _registered[marker] = now
            _registered.move_to_end(marker)
            while len(_registered) > MAX_TRACKED_NAMES:
                _registered.popitem(last=False)

    def rendered(self, runtime: Runtime, ctx: JobContext | None) -> str:
        """The name this delivery's permit lives under (PolicyKeyError when it cannot be rendered)."""
        if not self.keyed:
            return self.name
        if ctx is None:
            return self.name_for(None)  # raises: a template needs its fields
        task = runtime.task_of(ctx.task_name)
        return self.spec.render_call(getattr(task, "run", None), ctx.args, ctx.kwargs)

    def acquire(self, runtime: Runtime, ctx: JobContext | None) -> Decision:
        return self.acquire_key(runtime, ctx, self.rendered(runtime, ctx))

    def acquire_key(self, runtime: Runtime, ctx: JobContext | None, name: str) -> Decision:
        """A permit of the (rendered) ``name``; the Decision carries the name for release."""
        try:
            client = store(runtime)  # a cluster client connects here: inside the fail-open/closed rule
            self.register(client, runtime.keys)
            if self.keyed:
                LimitStore(client, runtime.keys).note_key(self.kind, self.family, name)
            decision = self.try_acquire(client, runtime.keys, ctx, name)
        except STORE_ERRORS as exc:
            note_redis_error(self.family, exc)
            if self.on_redis_error == "open":
                return Decision(True, reason=UNAVAILABLE, key=name)
            return Decision.deny(CLOSED_RETRY, f"{name}: {UNAVAILABLE}", key=name)
        return decision if decision.key == name else replace(decision, key=name)

    def release(self, runtime: Runtime, ctx: JobContext | None, decision: Decision, outcome: Outcome) -> None:
        if not decision.granted or decision.reason == UNAVAILABLE:
            return
        try:
            self.give_back(store(runtime), runtime.keys, decision, outcome)
        except STORE_ERRORS as exc:
            note_redis_error(self.family, exc)

    @contextmanager
    def hold(self, runtime: Runtime | None = None) -> Iterator[Decision]:
        """Hold a permit around a block inside a task body; denied → raise ``denied_error``.
        A template needs its fields: ``policy.for_key(...).hold()``."""
        with self.hold_key(runtime, self.name_for(None)) as decision:
            yield decision

    @contextmanager
    def hold_key(self, runtime: Runtime | None, name: str) -> Iterator[Decision]:
        runtime = runtime if runtime is not None else _current_runtime()
        decision = self.acquire_key(runtime, None, name)
        if not decision.granted:
            raise self.denied_error(decision.retry_after, decision.reason)
        started = time.monotonic()
        try:
            yield decision
        except BaseException as exc:
            self.release(runtime, None, decision, Outcome("retried", time.monotonic() - started, exc))
            raise
        self.release(runtime, None, decision, Outcome("succeeded", time.monotonic() - started))

    def for_key(self, *args: Any, **kwargs: Any) -> BoundKey:
        """The policy of one rendered key: a template's fields by name (``for_key(shop_id=42)``;
        other names are ignored), or a key callable's arguments. PolicyKeyError when the values
        cannot render a name."""
        if not self.keyed:
            raise ConfigurationError(f"{type(self).__name__} {self.name!r} has one fixed name; hold() it directly")
        if self.key is not None:
            return BoundKey(self, self.spec.render_call(None, args, kwargs))
        if args:
            raise ConfigurationError(f"{type(self).__name__} {self.family!r}: for_key() takes the fields by name")
        return BoundKey(self, self.spec.render_values(kwargs))

    def __call__(self, fn: F) -> F:
        """Use the policy as a decorator: every call of ``fn`` holds a permit; a template's name
        is rendered from ``fn``'s arguments (its fields must be parameters of ``fn``)."""
        if self.keyed and self.key is None:
            self.check_task(getattr(fn, "__qualname__", repr(fn)), fn)
        signature = inspect.signature(fn) if self.keyed and self.key is None else None

        @functools.wraps(fn)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            if not self.keyed:
                name = self.name
            elif signature is None:
                name = self.spec.render_call(None, args, kwargs)
            else:
                bound = signature.bind(*args, **kwargs)
                bound.apply_defaults()
                name = self.spec.render_values(bound.arguments)
            with self.hold_key(None, name):
                return fn(*args, **kwargs)

        return guarded  # type: ignore[return-value]


@dataclass(frozen=True)
class BoundKey:
    """One rendered key of a per-key policy: hold it in a body, or list it in ``limits=[...]``."""

    policy: SharedPolicy
    name: str

    def acquire(self, runtime: Runtime, ctx: JobContext | None) -> Decision:
        return self.policy.acquire_key(runtime, ctx, self.name)

    def release(self, runtime: Runtime, ctx: JobContext | None, decision: Decision, outcome: Outcome) -> None:
        self.policy.release(runtime, ctx, decision, outcome)

    @contextmanager
    def hold(self, runtime: Runtime | None = None) -> Iterator[Decision]:
        with self.policy.hold_key(runtime, self.name) as decision:
            yield decision

    def __call__(self, fn: F) -> F:
        @functools.wraps(fn)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            with self.hold():
                return fn(*args, **kwargs)

        return guarded  # type: ignore[return-value]
