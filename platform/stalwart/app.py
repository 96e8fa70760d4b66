"""The Stalwart Celery app: safe defaults set once, task options validated at declaration."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import celery
from celery.app.task import Task as CeleryTask

from . import enqueue as enqueue_mod
from .errors import ConfigurationError
from .hooks import Hook, Hooks
from .permits import PermitPolicy
from .policies import Retry, _exception_types, retry_from_celery_options
from .redis.scripts import load_script
from .runtime import Runtime
from .settings import Settings
from .task import STALWART_OPTIONS, StalwartTask, template_fields

# Options of @app.task that Celery itself understands but are not Task attributes.
_CELERY_DECORATOR_OPTIONS = {"name", "bind", "base", "shared", "lazy", "filter", "pydantic",
                             "pydantic_strict", "pydantic_context", "pydantic_dump_kwargs",
                             # publishing defaults Celery reads from the task (extract_exec_options)
                             "queue", "routing_key", "exchange", "delivery_mode", "compression"}
_CELERY_RETRY_OPTIONS = {
    "max_retries", "retry_backoff", "retry_backoff_max", "retry_jitter",
    "autoretry_for", "dont_autoretry_for", "default_retry_delay", "retry_kwargs",
}


def _celery_option(name: str) -> bool:
    if name in _CELERY_DECORATOR_OPTIONS or name in _CELERY_RETRY_OPTIONS:
        return True
    return not name.startswith("_") and hasattr(CeleryTask, name)


class Stalwart(celery.Celery):
    """A Celery app whose tasks run in the Stalwart envelope.

    Safe defaults are not left to each deployment: JSON only (pickle refused), late acks,
    requeue on worker loss, prefetch 1, task events on, and a broker visibility timeout equal
    to the recovery window (in-flight deliveries are kept visible by their worker, see
    :mod:`stalwart.visibility`, so long jobs are not redelivered while their worker lives).
    """

    def __init__(
        self,
        main: str | None = None,
        *,
        settings: Settings | None = None,
        hooks: list[Hook] | None = None,
        **kwargs: Any,
    ) -> None:
        self.settings = settings or Settings.from_env()
        kwargs.setdefault("task_cls", "stalwart.task:StalwartTask")
        kwargs.setdefault("broker", self.settings.broker_url)
        super().__init__(main, **kwargs)
        self.stalwart = Runtime(self.settings, Hooks(hooks or ()))
        self.conf.update(self.safe_defaults(self.settings))
        from . import worker  # noqa: PLC0415 - the bootsteps import celery.worker

        worker.install(self)

    @staticmethod
    def safe_defaults(settings: Settings) -> dict[str, Any]:
        recovery = settings.recovery_seconds
        return {
            "broker_transport": "stalwart.transport:Transport",
            "broker_transport_options": {
                "visibility_timeout": max(2, math.ceil(recovery * 0.75)),
                # One list per queue, so a worker takes a message and records it unacked in
                # one script (stalwart.transport): a SIGKILL between the two cannot lose it.
                "priority_steps": [0],
                "unacked_restore_interval": max(1, math.ceil(recovery * 0.25)),
                # kombu scans only every Nth sweep (default 10): scan on each one.
                "unacked_restore_throttle": 1,
                "stalwart_prefix": settings.prefix,
            },
            "broker_connection_retry_on_startup": True,
            "task_serializer": "json",
            "result_serializer": "json",
            "event_serializer": "json",
            "accept_content": ["json"],
            "result_accept_content": ["json"],
            "task_acks_late": True,
            "task_reject_on_worker_lost": True,
            "task_acks_on_failure": True,
            "task_acks_on_timeout": False,
            "worker_prefetch_multiplier": 1,
            # SIGTERM is Celery's warm shutdown: stop fetching, finish in-flight jobs, hand the
            # prefetched back. SIGQUIT (or SIGTERM with REMAP_SIGTERM=SIGQUIT) waits this long,
            # then cancels and requeues what is still running; fits Kubernetes' default 30 s grace.
            "worker_soft_shutdown_timeout": 25.0,
            "worker_send_task_events": True,
            "task_send_sent_event": True,
            "worker_consumer": "stalwart.consumer:Consumer",
            "task_create_missing_queues": True,
        }

    # -- declaring tasks -------------------------------------------------------------------

    def task(self, *args: Any, **opts: Any) -> Any:
        """Celery's ``@app.task``, with Stalwart's option check run at the decorator line.

        Celery declares tasks lazily, so without this an unknown option would only raise when the
        app is finalised (at worker start); the check runs again then, on the same options.
        """
        if len(args) == 1 and callable(args[0]):  # app.task(fun, **opts) or a bare @app.task
            if opts:
                self.validate_task_options(args[0], dict(opts))
            return super().task(*args, **opts)
        decorate = super().task(*args, **opts)

        def checked(fun: Callable[..., Any]) -> Any:
            self.validate_task_options(fun, dict(opts))
            return decorate(fun)

        return checked

    def _task_from_fun(  # type: ignore[override] # validates, then defers to Celery
        self, fun: Callable[..., Any], name: str | None = None, **options: Any
    ) -> Any:
        options = self.validate_task_options(fun, options)
        return super()._task_from_fun(fun, name=name, **options)

    def validate_task_options(self, fun: Callable[..., Any], options: dict[str, Any]) -> dict[str, Any]:
        """Turn Celery's retry names and Stalwart's options into policy attributes, or refuse."""
        where = getattr(fun, "__qualname__", repr(fun))
        unknown = sorted(k for k in options if k not in STALWART_OPTIONS and not _celery_option(k))
        if unknown:
            known = ", ".join(sorted(STALWART_OPTIONS))
            raise ConfigurationError(
                f"unknown task option(s) {', '.join(unknown)} on {where}; Stalwart's options are "
                f"{known}, plus Celery's own task options (see celery.app.task.Task)"
            )
        out = dict(options)
        celery_retry = {k: out.pop(k) for k in list(out) if k in _CELERY_RETRY_OPTIONS}
        celery_retry.pop("retry_kwargs", None)
        policy = out.pop("retry", None)
        if policy is not None and celery_retry:
            raise ConfigurationError(
                f"{where}: give either retry=Retry(...) or Celery's retry options "
                f"({', '.join(sorted(celery_retry))}), not both"
            )
        if policy is not None and not isinstance(policy, Retry):
            raise ConfigurationError(f"{where}: retry must be a stalwart.Retry, got {policy!r}")
        out["retry_policy"] = policy or retry_from_celery_options(celery_retry)
        if "permanent_for" in out:
            out["permanent_for"] = _exception_types("permanent_for", out["permanent_for"])
        self._validate_numbers(where, out)
        self._validate_key(where, fun, out.get("idempotency_key"))
        out["permits"] = self._permits(where, out.pop("breaker", None), out.pop("limits", ()))
        if out.get("fallback") is not None and not callable(out["fallback"]):
            raise ConfigurationError(f"{where}: fallback must be callable, got {out['fallback']!r}")
        if "fallback" in out:
            out["fallback"] = staticmethod(out["fallback"]) if out["fallback"] else None
        if callable(out.get("idempotency_key")):
            out["idempotency_key"] = staticmethod(out["idempotency_key"])
        return out

    @staticmethod
    def _validate_numbers(where: str, out: dict[str, Any]) -> None:
        checks = {"max_age": 0.0, "max_deliveries": 1, "result_max_bytes": 16}
        for name, minimum in checks.items():
            value = out.get(name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
                raise ConfigurationError(f"{where}: {name} must be a number >= {minimum}, got {value!r}")
        if "max_deliveries" in out and not isinstance(out["max_deliveries"], int):
            raise ConfigurationError(f"{where}: max_deliveries must be an int, got {out['max_deliveries']!r}")

    @staticmethod
    def _validate_key(where: str, fun: Callable[..., Any], key: object) -> None:
        if key is None or callable(key):
            return
        if not isinstance(key, str) or not key:
            raise ConfigurationError(f"{where}: idempotency_key must be a template string or a callable")
        import inspect  # noqa: PLC0415

        params = set(inspect.signature(fun).parameters)
        missing = [f for f in template_fields(key) if f not in params]
        if missing:
            raise ConfigurationError(
                f"{where}: idempotency_key {key!r} names {', '.join(missing)}, not arguments of "
                f"the task ({', '.join(sorted(params))})"
            )

    @staticmethod
    def _permits(where: str, breaker: object, limits: object) -> tuple[PermitPolicy, ...]:
        if isinstance(limits, PermitPolicy):
            limits = (limits,)
        if not isinstance(limits, (tuple, list)):
            raise ConfigurationError(f"{where}: limits must be a list of RateLimit/Concurrency, got {limits!r}")
        chosen = ([breaker] if breaker is not None else []) + list(limits)
        for policy in chosen:
            if not isinstance(policy, PermitPolicy):
                raise ConfigurationError(f"{where}: {policy!r} is not a Stalwart limit or breaker")
        return tuple(chosen)  # type: ignore[arg-type]

    # -- enqueuing -----------------------------------------------------------------------------

    def send_task(  # type: ignore[override] # accepts Stalwart's enqueue options too
        self, name: str, args: Any = None, kwargs: Any = None, **options: Any
    ) -> Any:
        """Celery's send_task plus Stalwart's options (idempotency_key, deadline, trace_id).

        With an idempotency key, a key already enqueued (pending, running or done within its
        retention) returns the existing task's result handle and publishes nothing.
        """
        successor = bool(options.pop("stalwart_successor", False))
        task = self.tasks.get(name)
        if not successor and "idempotency_key" not in options and isinstance(task, StalwartTask) \
                and task.idempotency_key is not None:
            options["idempotency_key"] = task.derive_key(tuple(args or ()), dict(kwargs or {}))
        meta = enqueue_mod.translate(options)
        if meta.key is None or successor:
            return super().send_task(name, args, kwargs, **options)
        task_id = options.pop("task_id", None) or celery.uuid()
        existing = self.claim_key(meta.key, task_id)
        if existing != task_id:
            result_cls = options.get("result_cls") or self.AsyncResult
            return result_cls(existing, app=self)
        try:
            return super().send_task(name, args, kwargs, task_id=task_id, **options)
        except BaseException:
            self.stalwart.redis.delete(self.stalwart.keys.idem(meta.key))
            raise

    def enqueue_many(self, task: Any, jobs: Any, **kwargs: Any) -> list[Any]:
        """Enqueue many ``(args, kwargs[, options])`` jobs in one pipeline (see stalwart.bulk)."""
        from .bulk import enqueue_many  # noqa: PLC0415 - bulk imports this module's types

        return enqueue_many(self, task, jobs, **kwargs)

    def claim_key(self, key: str, task_id: str) -> str:
        """The task id that owns ``key``: ``task_id`` when this call claimed it."""
        ttl_ms = int(self.settings.idempotency_ttl_seconds * 1000)
        owner = load_script("enqueue_claim")(
            self.stalwart.redis, [self.stalwart.keys.idem(key)], [task_id, ttl_ms]
        )
        return owner.decode() if isinstance(owner, bytes) else str(owner)


def create_app(main: str = "stalwart", **kwargs: Any) -> Stalwart:
    """A Stalwart app configured from the environment."""
    return Stalwart(main, **kwargs)


__all__ = ["Stalwart", "StalwartTask", "create_app"]
