"""Key naming: one prefix, and a hash tag per entity so every script runs on Redis Cluster."""

from __future__ import annotations

from dataclasses import dataclass


def utf8_text(value: str) -> str:
    """``value``, or, when it is not valid UTF-8 (a lone surrogate from ``os.fsdecode`` or a JSON
    ``"\\udcff"`` escape in a message), the same text with each surrogate written as ``\\udcff``:
    Redis clients refuse to encode such a str and would fail the command."""
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


@dataclass(frozen=True)
class Keys:
    """Builds every Redis key Stalwart uses from one configurable prefix."""

    prefix: str = "stalwart"

    def job(self, job_key: str) -> str:
        """The state hash of one job: claim, lease, deliveries, generation, result."""
        return utf8_text(f"{self.prefix}:{{job:{job_key}}}")

    def idem(self, key: str) -> str:
        """The enqueue record of an idempotency key (task id it was given)."""
        return utf8_text(f"{self.prefix}:{{job:k:{key}}}:enqueued")

    def delayed(self, queue: str) -> str:
        """The delayed set of one queue, on the broker Redis."""
        return f"{self.prefix}:{{delayed:{queue}}}"

    def dlq(self, part: str) -> str:
        """One of the DLQ's keys (entries, index, stats); all share one slot."""
        return f"{self.prefix}:{{dlq}}:{part}"

    def breaker(self, name: str, part: str) -> str:
        return f"{self.prefix}:{{breaker:{name}}}:{part}"

    def limit(self, name: str, part: str) -> str:
        return f"{self.prefix}:{{limit:{name}}}:{part}"

    def switches(self) -> str:
        return f"{self.prefix}:{{switches}}"

    def workers(self) -> str:
        return f"{self.prefix}:{{workers}}"

    def registry(self, kind: str) -> str:
        """A set of the names of every breaker or limit that has been used."""
        return f"{self.prefix}:{{registry}}:{kind}"
