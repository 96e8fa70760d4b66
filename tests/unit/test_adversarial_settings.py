"""Adversarial regressions for the architecture change (issue 8), from a red-team pass.

Red team, claim 7: Settings is the one validated source of configuration and keeps secrets out
of reprs. Each test states the guarantee; a failure is a finding.
"""

from __future__ import annotations

import contextlib

import pytest

from stalwart.app import Stalwart
from stalwart.errors import ConfigurationError
from stalwart.settings import Settings


@pytest.mark.parametrize(("name", "value"), [
    ("STALWART_DLQ_MAX_ENTRIES", "inf"),   # OverflowError from int(float('inf'))
    ("STALWART_DLQ_MAX_ENTRIES", "nan"),   # ValueError from int(float('nan'))
    ("STALWART_MAX_FETCHES", "\u00b2"),    # '²'.isdigit() is True, int('²') raises ValueError
    ("STALWART_OPS_PORT", "\u00b2"),
])
def test_a_bad_setting_raises_configuration_error_not_a_raw_python_error(name: str, value: str) -> None:
    with pytest.raises(ConfigurationError):
        Settings.from_env({name: value})


@pytest.mark.parametrize("name", ["STALWART_RECOVERY_SECONDS", "STALWART_LEASE_SECONDS",
                                  "STALWART_REDIS_TIMEOUT", "STALWART_MOVER_INTERVAL", "STALWART_DONE_TTL"])
@pytest.mark.parametrize("value", ["nan", "inf"])
def test_non_finite_durations_are_refused(name: str, value: str) -> None:
    """`nan < minimum` is False, so NaN (and inf) pass the minimum check silently."""
    with pytest.raises(ConfigurationError):
        Settings.from_env({name: value})


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_building_an_app_never_crashes_with_a_raw_error_on_a_setting_from_env(value: str) -> None:
    """STALWART_RECOVERY_SECONDS=nan is accepted by Settings, then Stalwart() dies in
    safe_defaults with `ValueError: cannot convert float NaN to integer` (inf: OverflowError)."""
    with contextlib.suppress(ConfigurationError):  # refused cleanly: the guarantee holds
        Stalwart("rt", settings=Settings.from_env({"STALWART_RECOVERY_SECONDS": value}))


def test_a_malformed_redis_url_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        Settings.from_env({"STALWART_REDIS_URL": "redis://u:p@[::1"})


def test_redis_passwords_never_reach_the_settings_repr() -> None:
    """sentry_dsn and console logins are repr=False; the Redis URLs carry passwords and are not."""
    settings = Settings.from_env({"STALWART_REDIS_URL": "redis://:hunter2@127.0.0.1:1/0",
                                  "CELERY_BROKER_URL": "redis://:brokerpw@127.0.0.1:2/0"})
    shown = repr(settings)
    assert "hunter2" not in shown
    assert "brokerpw" not in shown


def test_settings_built_directly_are_validated_too() -> None:
    """`Stalwart(settings=Settings(...))` is the documented way to configure an app without the
    environment, but the dataclass validates nothing: a negative recovery window, a string port
    and a prefix with braces (which breaks every hash tag) are all accepted."""
    with pytest.raises(ConfigurationError):
        Settings(recovery_seconds=-5)
    with pytest.raises(ConfigurationError):
        Settings(prefix="a {b}")
