"""Failure classification and backoff maths, as pure functions with injected randomness."""

from __future__ import annotations

import datetime as dt
import inspect

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from hypothesis import given
from hypothesis import strategies as st

from stalwart import Permanent, Retry, RetryAfter
from stalwart.errors import ConfigurationError
from stalwart.job.classify import ExplicitRetry, Verdict, backoff_delay, classify
from stalwart.job.retry import RetryCall, countdown_of, next_arguments
from stalwart.store.enqueue import scoped


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


# -- Celery's retry() arguments (issue 10.6) ----------------------------------------------------


def test_explicit_retry_max_retries_overrides_the_policy() -> None:
    call = RetryCall(max_retries=10, countdown=0.5)
    assert classify(ExplicitRetry(None, 0.5, call), POLICY, (), 4, None) == Verdict("retry", delay=0.5)
    assert classify(ExplicitRetry(None, 0.5, call), POLICY, (), 11, None) == Verdict("dead", "exhausted")
    assert classify(ExplicitRetry(None, 0.5, RetryCall(max_retries=1)), POLICY, (), 2, None).reason == "exhausted"


def test_countdown_wins_over_eta_and_eta_counts_from_now() -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    assert countdown_of(now + dt.timedelta(seconds=30), 5, now=lambda tz: now) == 5.0
    assert countdown_of(now + dt.timedelta(seconds=30), None, now=lambda tz: now) == 30.0
    assert countdown_of(now - dt.timedelta(seconds=30), None, now=lambda tz: now) == 0.0
    assert countdown_of(None, None) is None


def two(a: int, b: int = 0, *rest: int, c: int = 0, **more: int) -> None:
    """A task signature with every kind of parameter."""


def test_next_arguments_follow_celery() -> None:
    current = ((1,), {"b": 2, "c": 3})
    assert next_arguments(two, current, RetryCall()) == ((1,), {"b": 2, "c": 3})
    assert next_arguments(two, current, RetryCall(args=(7, 8))) == ((7, 8), {"c": 3})  # b now positional
    assert next_arguments(two, ((1, 2), {}), RetryCall(kwargs={"b": 9})) == ((1, 9), {})
    assert next_arguments(two, ((1, 2), {}), RetryCall(kwargs={"c": 4})) == ((1, 2), {"c": 4})
    assert next_arguments(two, current, RetryCall(args=(5,), kwargs={"x": 1})) == ((5,), {"x": 1})


@given(
    args=st.lists(st.integers(), max_size=4).map(tuple),
    kwargs=st.dictionaries(st.sampled_from(["b", "c", "d"]), st.integers(), max_size=3),
    new_args=st.none() | st.lists(st.integers(), max_size=4).map(tuple),
    new_kwargs=st.none() | st.dictionaries(st.sampled_from(["b", "c", "d"]), st.integers(), max_size=3),
)
def test_next_arguments_never_give_one_parameter_twice(
    args: tuple[int, ...], kwargs: dict[str, int], new_args: tuple[int, ...] | None, new_kwargs: dict[str, int] | None
) -> None:
    """Whatever the call, the next attempt's arguments bind the task as long as the current ones did."""
    try:
        inspect.signature(two).bind(*args, **kwargs)
    except TypeError:
        return
    nxt_args, nxt_kwargs = next_arguments(two, (args, kwargs), RetryCall(args=new_args, kwargs=new_kwargs))
    if new_args is not None and new_kwargs is not None:
        assert (nxt_args, nxt_kwargs) == (new_args, new_kwargs)
        return
    if new_args is None and new_kwargs is None:
        assert (nxt_args, nxt_kwargs) == (args, kwargs)
    if len(nxt_args) >= 1 or "a" in nxt_kwargs:
        inspect.signature(two).bind(*nxt_args, **nxt_kwargs)


@given(task=st.text(min_size=1), key=st.text(min_size=1), other=st.text(min_size=1))
def test_scoped_keys_are_per_task_and_stable(task: str, key: str, other: str) -> None:
    once = scoped(task, key)
    assert once.startswith(f"{task}:")
    assert scoped(task, once) == once  # a derived (already scoped) key is kept
    if other != task and not once.startswith(f"{other}:"):
        assert scoped(other, key) != once
