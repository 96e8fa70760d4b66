"""``fair_by``: the jobs of one queue are served in rotation over a key of their arguments.

A task declares ``fair_by="{tenant_id}"`` (a template over its arguments, or a callable of them)
and optionally ``fair_weights`` (rendered key -> weight, or a callable of the key): a key of
weight 3 gets three turns for every turn of a key of weight 1. The key is rendered when the job
is enqueued and travels in the ``stalwart_fair`` header (``[key, weight]``), so retries,
deferrals and DLQ replays keep their place in the rotation; the broker transport keeps one fair
lane per queue list in which the keys take turns (see :mod:`stalwart.store.fair`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from stalwart.enqueue.keys import KeySpec, check_key_spec, render_key
from stalwart.errors import ConfigurationError
from stalwart.store.fair import FairJob

MAX_KEY_CHARS = 200  # a rendered fair_by key longer than this is refused at enqueue
MAX_WEIGHT = 1000.0
MIN_WEIGHT = 0.001  # below this, 1/weight swamps the lane's clock (a key would never yield its turn)
Weights = Mapping[str, float] | Callable[[str], float]


def check_weight(what: str, weight: object) -> float:
    """A weight: a finite number in [MIN_WEIGHT, MAX_WEIGHT]."""
    try:
        valid = (not isinstance(weight, bool) and isinstance(weight, (int, float))
                 and math.isfinite(weight) and MIN_WEIGHT <= weight <= MAX_WEIGHT)
    except OverflowError:  # an int too large for a float
        valid = False
    if not valid:
        raise ConfigurationError(
            f"{what} must be a number between {MIN_WEIGHT:g} and {MAX_WEIGHT:g}, got {weight!r:.80}")
    return float(weight)  # type: ignore[arg-type] # checked above


def fair_key(task_name: str, spec: KeySpec, fun: Callable[..., Any], args: tuple[Any, ...],
             kwargs: dict[str, Any]) -> str:
    """The rendered ``fair_by`` key of one call; ConfigurationError when it cannot be rendered."""
    key = render_key(f"fair_by of {task_name}", spec, fun, args, kwargs)
    if len(key) > MAX_KEY_CHARS:
        raise ConfigurationError(f"fair_by of {task_name} rendered a key of {len(key)} characters, "
                                 f"more than {MAX_KEY_CHARS}")
    return key


def weight_of(task_name: str, weights: Weights | None, key: str) -> float:
    """The weight of a rendered key (1 unless ``fair_weights`` says otherwise)."""
    if weights is None:
        return 1.0
    if callable(weights):
        try:
            value = weights(key)
        except Exception as exc:  # noqa: BLE001 - a user's weight function: reported with its error
            raise ConfigurationError(f"fair_weights of {task_name} failed for {key!r}: "
                                     f"{type(exc).__name__}: {exc}") from None
    else:
        value = weights.get(key, 1.0)
    return check_weight(f"fair_weights of {task_name} for {key!r}", value)


def fair_header(task_name: str, spec: KeySpec, weights: Weights | None, fun: Callable[..., Any],
                args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
    """The ``stalwart_fair`` header of one call: ``[key, weight]``."""
    key = fair_key(task_name, spec, fun, args, kwargs)
    return [key, weight_of(task_name, weights, key)]


def job_of(header: object) -> FairJob | None:
    """The lane place a ``stalwart_fair`` header names; None unless it is ``[key, weight]`` with a
    key of 1 to MAX_KEY_CHARS characters and a valid weight (anything else is queued plainly)."""
    if not isinstance(header, (list, tuple)) or len(header) != 2:
        return None
    key, weight = header
    if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_CHARS:
        return None
    try:
        return FairJob(key, check_weight("weight", weight))
    except ConfigurationError:
        return None


class FairnessOptions:
    """``fair_by=`` and ``fair_weights=``."""

    options: dict[str, str] = {
        "fair_by": "a str.format template over the arguments (or a callable of them): the queue "
                   "serves the jobs of each rendered key in rotation",
        "fair_weights": "rendered fair_by key -> weight (default 1), or a callable(key) -> weight",
    }

    def resolve(self, where: str, fun: Callable[..., Any], given: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        spec = given.get("fair_by")
        weights = given.get("fair_weights")
        if weights is not None and spec is None:
            raise ConfigurationError(f"{where}: fair_weights needs fair_by")
        if spec is not None:
            checked = check_key_spec(where, "fair_by", spec, fun)
            out["fair_by"] = staticmethod(checked) if callable(checked) else checked
        if weights is not None:
            if callable(weights):
                out["fair_weights"] = staticmethod(weights)
            elif isinstance(weights, Mapping):
                for key, weight in weights.items():
                    if not isinstance(key, str) or not key:
                        raise ConfigurationError(f"{where}: fair_weights keys must be non-empty str, got {key!r}")
                    check_weight(f"{where}: fair_weights[{key!r}]", weight)
                out["fair_weights"] = {k: float(v) for k, v in weights.items()}
            else:
                raise ConfigurationError(f"{where}: fair_weights must be a mapping or a callable, got {weights!r}")
        return out


FAIRNESS_OPTIONS = FairnessOptions()
