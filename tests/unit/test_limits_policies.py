"""Limit and breaker policies: parsing, validation and outcome classification. No Redis."""

from __future__ import annotations

from typing import Any

import pytest

from stalwart.errors import CircuitOpen, ConfigurationError, LimitExceeded, Permanent, RetryAfter
from stalwart.job.classify import ExplicitRetry
from stalwart.job.context import Outcome
from stalwart.policies.breakers import Breaker
from stalwart.policies.limits import Concurrency, RateLimit, parse_rate
from stalwart.policies.permits import PermitPolicy


@pytest.mark.parametrize(
    ("text", "expected"),
    [("100/s", (100, 1.0)), ("30/m", (30, 60.0)), ("5 / h", (5, 3600.0)), ("10/2s", (10, 2.0)),
     ("1/day", (1, 86400.0)), ("7/0.5s", (7, 0.5))],
)
def test_parse_rate(text: str, expected: tuple[int, float]) -> None:
    assert parse_rate(text) == expected


@pytest.mark.parametrize("text", ["", "100", "s/100", "0/s", "10/y", "-1/s", 10, None, "10/0s"])
def test_parse_rate_refuses(text: Any) -> None:
    with pytest.raises(ConfigurationError):
        parse_rate(text)


def test_rate_limit_interval() -> None:
    assert RateLimit("api", "20/s").interval_ms == 50.0
    assert RateLimit("api", "6/m", burst=3).interval_ms == 10_000.0


@pytest.mark.parametrize(
    "make",
    [
        lambda: RateLimit("", "1/s"),
        lambda: RateLimit("a b", "1/s"),
        lambda: RateLimit("x{y}", "1/s"),
        lambda: RateLimit("api", "1/s", burst=0),
        lambda: RateLimit("api", "1/s", burst=True),
        lambda: RateLimit("api", "1/s", on_redis_error="maybe"),
        lambda: Concurrency("db", 0),
        lambda: Concurrency("db", 2.5),
        lambda: Concurrency("db", 2, lease=0.1),
        lambda: Breaker("b", failure_rate=0),
        lambda: Breaker("b", failure_rate=1.5),
        lambda: Breaker("b", window=0),
        lambda: Breaker("b", min_calls=0),
        lambda: Breaker("b", half_open_probes=0),
        lambda: Breaker("b", open_for=-1),
        lambda: Breaker("b", slow_call_seconds=1.0),
        lambda: Breaker("b", slow_call_seconds=1.0, slow_call_rate=2),
        lambda: Breaker("b", failure_on=("ValueError",)),  # type: ignore[arg-type]
    ],
)
def test_invalid_policies_are_refused_at_declaration(make: Any) -> None:
    with pytest.raises(ConfigurationError):
        make()


def test_policies_are_frozen_permits() -> None:
    for policy in (RateLimit("a", "1/s"), Concurrency("c", 1), Breaker("b")):
        assert isinstance(policy, PermitPolicy)
        with pytest.raises(AttributeError):
            policy.name = "other"  # type: ignore[misc]


def test_breaker_classifies_outcomes() -> None:
    br = Breaker("dep", failure_on=(ConnectionError, TimeoutError), ignore=(Permanent, KeyError))
    assert br.classify(Outcome("succeeded", 0.1)) == "success"
    assert br.classify(Outcome("retried", 0.1, ConnectionError())) == "failure"
    assert br.classify(Outcome("retried", 0.1, ExplicitRetry(TimeoutError(), 1.0))) == "failure"
    assert br.classify(Outcome("dead", 0.1, ValueError("bad input"))) == "success"
    assert br.classify(Outcome("dead", 0.1, Permanent("bad input"))) == "ignore"
    assert br.classify(Outcome("deferred", 0.0)) == "ignore"
    assert br.classify(Outcome("skipped", 0.0)) == "ignore"


def test_breaker_slow_calls() -> None:
    br = Breaker("dep", slow_call_seconds=2.0, slow_call_rate=0.5)
    assert br.is_slow(Outcome("succeeded", 2.5))
    assert not br.is_slow(Outcome("succeeded", 1.0))
    assert not Breaker("fast").is_slow(Outcome("succeeded", 100.0))


def test_in_body_denials_are_retry_after_signals() -> None:
    assert issubclass(LimitExceeded, RetryAfter)
    assert issubclass(CircuitOpen, RetryAfter)
    assert RateLimit.denied_error is LimitExceeded
    assert Breaker.denied_error is CircuitOpen
