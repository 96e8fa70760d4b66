"""Failure classification and backoff maths, as pure functions with injected randomness."""

from __future__ import annotations

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from stalwart import Permanent, Retry, RetryAfter
from stalwart.errors import ConfigurationError
from stalwart.job.classify import ExplicitRetry, Verdict, backoff_delay, classify


def top(_: object = None) -> float:
    """A "random" source that always draws the top of the range."""
    return 1.0


def half() -> float:
    return 0.5


POLICY = Retry(max_attempts=4, backoff=1.0, backoff_max=10.0, jitter=True)


@pytest.mark.parametrize(
    ("attempt", "ceiling"), [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 10.0), (30, 10.0)]
)
def test_ceiling_doubles_and_is_capped(attempt: int, ceiling: float) -> None:
    assert POLICY.ceiling(attempt) == ceiling


def test_full_jitter_draws_uniformly_below_the_ceiling() -> None:
    exc = ConnectionError("down")
    assert backoff_delay(exc, POLICY, 3, rand=top) == 4.0
    assert backoff_delay(exc, POLICY, 3, rand=half) == 2.0
    assert backoff_delay(exc, POLICY, 3, rand=lambda: 0.0) == 0.0


def test_without_jitter_the_delay_is_the_ceiling() -> None:
    policy = Retry(backoff=0.5, backoff_max=3.0, jitter=False)
    assert [backoff_delay(ValueError(), policy, n, rand=half) for n in (1, 2, 3, 4)] == [
        0.5, 1.0, 2.0, 3.0,
    ]


def test_constant_backoff_when_not_exponential() -> None:
    policy = Retry(backoff=2.0, jitter=False, exponential=False)
    assert {policy.ceiling(n) for n in range(1, 10)} == {2.0}


def test_transient_error_is_retried_until_attempts_are_exhausted() -> None:
    exc = ConnectionError("down")
    for attempt in (1, 2, 3):
        verdict = classify(exc, POLICY, (), attempt, None, rand=half)
        assert verdict == Verdict("retry", delay=POLICY.ceiling(attempt) * 0.5)
    assert classify(exc, POLICY, (), 4, None, rand=half) == Verdict("dead", "exhausted")


def test_unlimited_attempts_never_exhaust() -> None:
    policy = Retry(max_attempts=None)
    assert classify(ValueError(), policy, (), 10_000, None, rand=half).action == "retry"


def test_permanent_dead_letters_at_once() -> None:
    assert classify(Permanent("no"), POLICY, (), 1, None) == Verdict("dead", "permanent")


def test_permanent_for_types_dead_letter_at_once() -> None:
    verdict = classify(KeyError("x"), POLICY, (LookupError,), 1, None)
    assert verdict == Verdict("dead", "permanent")


def test_exceptions_outside_the_policy_are_permanent() -> None:
    policy = Retry(on=(ConnectionError,), exclude=(ConnectionRefusedError,))
    assert classify(ConnectionResetError(), policy, (), 1, None, rand=half).action == "retry"
    assert classify(ConnectionRefusedError(), policy, (), 1, None) == Verdict("dead", "permanent")
    assert classify(ValueError(), policy, (), 1, None) == Verdict("dead", "permanent")


def test_retry_after_hint_wins_over_backoff() -> None:
    assert backoff_delay(RetryAfter(7.5), POLICY, 1, rand=top) == 7.5
    assert classify(RetryAfter(7.5), POLICY, (), 1, None, rand=top) == Verdict("retry", delay=7.5)


def test_retry_after_is_retried_even_when_not_in_policy_on() -> None:
    policy = Retry(on=(ConnectionError,))
    assert classify(RetryAfter(1), policy, (), 1, None).action == "retry"


def test_retry_after_rejects_negative_seconds() -> None:
    with pytest.raises(ConfigurationError):
        RetryAfter(-1)


def test_explicit_retry_uses_its_countdown_or_the_policy() -> None:
    with_countdown = ExplicitRetry(ValueError("x"), 3.0)
    assert classify(with_countdown, POLICY, (), 1, None, rand=top) == Verdict("retry", delay=3.0)
    without = ExplicitRetry(None, None)
    assert classify(without, POLICY, (), 2, None, rand=top) == Verdict("retry", delay=2.0)


def test_explicit_retry_of_a_permanent_cause_is_permanent() -> None:
    exc = ExplicitRetry(Permanent("no"), 1.0)
    assert classify(exc, POLICY, (), 1, None) == Verdict("dead", "permanent")


def test_explicit_retry_still_respects_max_attempts() -> None:
    assert classify(ExplicitRetry(None, 0.1), POLICY, (), 4, None) == Verdict("dead", "exhausted")


def test_soft_time_limit_is_a_transient_timeout() -> None:
    policy = Retry(on=(ConnectionError,))
    assert classify(SoftTimeLimitExceeded(), policy, (), 1, None, rand=half).action == "retry"


def test_never_retried_past_the_deadline() -> None:
    verdict = classify(RetryAfter(5), POLICY, (), 1, remaining=4.9)
    assert verdict.action == "dead"
    assert verdict.reason == "expired"
    assert classify(RetryAfter(5), POLICY, (), 1, remaining=5.1).action == "retry"


def test_past_deadline_is_expired_even_with_zero_delay() -> None:
    assert classify(RetryAfter(0), POLICY, (), 1, remaining=-1.0).reason == "expired"
