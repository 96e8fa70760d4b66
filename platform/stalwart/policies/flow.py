"""``debounce=`` and ``singleton=``: how enqueues of one key of a task collapse.

* ``Debounce(key="{document_id}", wait=5, max_wait=60)``: enqueues of the same rendered key
  within ``wait`` seconds of each other collapse into one job, which runs once with the latest
  arguments, at most ``max_wait`` seconds after the first enqueue of the burst.
* ``singleton="{account_id}"``: at most one job per rendered key runs at a time and at most one
  more waits; later enqueues are merged into the waiting one (it has not started, so it still
  does what they asked for).

Both keys are templates over the task's arguments or callables of them, checked when the task is
declared like ``idempotency_key``. The two cannot be combined, and a debounced task takes no
``idempotency_key`` (refused by ``Stalwart.task`` and at enqueue): a later burst of a key would
return an earlier burst's stored result instead of running with its newer arguments. The
behaviour lives in :mod:`stalwart.enqueue.debounce`, :mod:`stalwart.enqueue.singleton` and
:mod:`stalwart.policies.singleton` (the run slot, an envelope permit in ``flow_permits``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stalwart.enqueue.keys import KeySpec, check_key_spec
from stalwart.errors import ConfigurationError
from stalwart.policies.singleton import SingletonPermit

MAX_WAIT_SECONDS = 7 * 86400.0  # a debounce window longer than a week is refused


def _seconds(what: str, value: object, *, minimum: float) -> float:
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or not minimum <= value <= MAX_WAIT_SECONDS):
        raise ConfigurationError(f"{what} must be seconds between {minimum:g} and {MAX_WAIT_SECONDS:g}, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Debounce:
    """Collapse enqueues of one key within ``wait`` seconds; run by ``max_wait`` after the first."""

    key: KeySpec
    wait: float
    max_wait: float | None = None

    def __post_init__(self) -> None:
        if not callable(self.key) and (not isinstance(self.key, str) or not self.key):
            raise ConfigurationError(f"Debounce.key must be a template string or a callable, got {self.key!r}")
        _seconds("Debounce.wait", self.wait, minimum=0.01)
        if self.max_wait is not None:
            _seconds("Debounce.max_wait", self.max_wait, minimum=0.01)
            if self.max_wait < self.wait:
                raise ConfigurationError(
                    f"Debounce.max_wait ({self.max_wait!r}) must be >= wait ({self.wait!r})")

    @property
    def window(self) -> float:
        """The longest a burst waits: ``max_wait``, or ``wait`` after each enqueue when unset."""
        return self.max_wait if self.max_wait is not None else math.inf


class FlowOptions:
    """``debounce=`` (a :class:`Debounce`) and ``singleton=`` (a key template or callable)."""

    options: dict[str, str] = {
        "debounce": "Debounce(key, wait, max_wait): enqueues of one key collapse into one run "
                    "with the latest arguments",
        "singleton": "a key template (or callable): one job per key runs at a time, one more waits, "
                     "later enqueues merge into it",
    }

    def resolve(self, where: str, fun: Callable[..., Any], given: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        debounce = given.get("debounce")
        if debounce is not None:
            if not isinstance(debounce, Debounce):
                raise ConfigurationError(f"{where}: debounce must be a Debounce(key, wait, max_wait), got {debounce!r}")
            check_key_spec(where, "Debounce.key", debounce.key, fun)
            out["debounce"] = debounce
        singleton = given.get("singleton")
        if singleton is not None:
            if debounce is not None:  # a merged enqueue would be handed a burst id that never runs
                raise ConfigurationError(f"{where}: debounce and singleton cannot be combined")
            checked = check_key_spec(where, "singleton", singleton, fun)
            out["singleton"] = staticmethod(checked) if callable(checked) else checked
            out["flow_permits"] = (SingletonPermit(checked, fun),)
        return out


FLOW_OPTIONS = FlowOptions()
