"""The Stalwart Celery app: safe defaults set once, task options validated at declaration."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import celery

from stalwart import options as task_options
from stalwart.enqueue import debounce, singleton
from stalwart.enqueue import translate as enqueue_mod
from stalwart.enqueue.bulk import JobSpec, enqueue_many
from stalwart.errors import ConfigurationError
from stalwart.hooks import Hook, Hooks
from stalwart.job.header import FAIR_HEADER
from stalwart.runtime import Runtime
from stalwart.settings import Settings
from stalwart.store.enqueue import scoped as scoped_key
from stalwart.task import StalwartTask
from stalwart.worker.steps import register_steps


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
        broker = kwargs.setdefault("broker", self.settings.broker_url)
        if broker != self.settings.broker_url:
            raise ConfigurationError(
                "give the broker through Settings.broker_url (CELERY_BROKER_URL), not Stalwart(broker=...): "
                "the delayed sets and the mover follow the settings"
            )
        super().__init__(main, **kwargs)
        self.stalwart = Runtime(self.settings, Hooks(hooks or ()))
        self.stalwart.task_of = self._registered  # read when the DLQ indexes an entry
        self.conf.update(self.safe_defaults(self.settings))
        # Only registered here: the steps wire the worker (threads, ops port, Sentry, logs,
        # metrics) when a worker starts, never when an app or the CLI builds a Stalwart().
        register_steps(self)
        self.task(name=debounce.TRIGGER_TASK, bind=True, ignore_result=True, shared=False)(_fire_debounce)

    def _registered(self, name: str) -> Any:
        """The task registered under ``name`` here, or None (the registry is read when asked)."""
        return self.tasks.get(name)

    @staticmethod
    def safe_defaults(settings: Settings) -> dict[str, Any]:
        recovery = settings.recovery_seconds
        transport: dict[str, Any] = {
            "visibility_timeout": max(2, math.ceil(recovery * 0.75)),
            # Celery's priorities on Redis: one list per step, step 0 taken first. The transport
            # takes and records a message from any of them in one script (stalwart.broker.transport).
            "priority_steps": [0, 3, 6, 9],
            "unacked_restore_interval": max(1, math.ceil(recovery * 0.25)),
            # kombu scans only every Nth sweep (default 10): scan on each one.
            "unacked_restore_throttle": 1,
            # A command on the consumer's connection still unanswered this long after its own
            # timeout means a half-open connection: it is dropped and made again.
            "stalwart_wait_grace": max(2.0, recovery * 0.25),
            "stalwart_max_fetches": settings.max_fetches,
            "stalwart_prefix": settings.prefix,
            # A command on a dead connection fails instead of hanging the worker's main loop.
            "socket_timeout": min(10.0, max(2.0, recovery * 0.15)),
            "socket_connect_timeout": min(10.0, max(2.0, recovery * 0.15)),
        }
        if settings.broker_keyprefix:
            transport["global_keyprefix"] = settings.broker_keyprefix
        return {
            # Settings decide the broker: Celery's broker_url would prefer $CELERY_BROKER_URL over the
            # app's own, and the delayed sets and the mover follow settings.broker_url.
            "broker_url": settings.broker_url,
            "broker_read_url": settings.broker_url,
            "broker_write_url": settings.broker_url,
            "broker_transport": "stalwart.broker.transport:Transport",
            "broker_transport_options": transport,
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
            "worker_consumer": "stalwart.broker.consumer:Consumer",
            "task_create_missing_queues": True,
        }

    # -- declaring tasks -------------------------------------------------------------------

    def task(self, *args: Any, **opts: Any) -> Any:
        """Celery's ``@app.task``, with Stalwart's options checked and resolved at the decorator line.

        Celery declares tasks lazily; resolving here (rather than at finalisation) makes an
        unknown or invalid option raise where it is written.
        """
        base = opts.get("base")
        if base is not None and not (isinstance(base, type) and issubclass(base, StalwartTask)):
            raise ConfigurationError(f"base must be a StalwartTask subclass (the envelope), got {base!r}")
        if len(args) == 1 and callable(args[0]):  # app.task(fun, **opts) or a bare @app.task
            return super().task(args[0], **_no_key_with_debounce(task_options.resolve(args[0], opts)))

        def decorate(fun: Callable[..., Any]) -> Any:
            return super(Stalwart, self).task(*args, **_no_key_with_debounce(task_options.resolve(fun, opts)))(fun)

        return decorate

    # -- enqueuing -----------------------------------------------------------------------------

    def send_task(  # type: ignore[override] # accepts Stalwart's enqueue options too
        self, name: str, args: Any = None, kwargs: Any = None, **options: Any
    ) -> Any:
        """Celery's send_task plus Stalwart's options (idempotency_key, deadline, trace_id).

        With an idempotency key, a key already enqueued (pending, running or done within its
        retention) returns the existing task's result handle and publishes nothing. A debounced
        or singleton task's enqueue may name a job already waiting (see :mod:`stalwart.enqueue`).
        """
        successor = bool(options.pop("stalwart_successor", False))
        debounced = bool(options.pop("stalwart_debounced", False))  # a closed burst's own job
        task = self.tasks.get(name)
        if not successor and isinstance(task, StalwartTask):
            call = (tuple(args or ()), dict(kwargs or {}))
            if task.debounce is not None and not debounced:
                result_cls = options.get("result_cls") or self.AsyncResult
                return result_cls(debounce.send(self, task, *call, options), app=self)
            if task.singleton is not None:
                return singleton.send(self, task, *call, options,
                                      publish=lambda opts: self._send(name, args, kwargs, task, opts, False))
        return self._send(name, args, kwargs, task, options, successor)

    def _send(self, name: str, args: Any, kwargs: Any, task: Any, options: dict[str, Any], successor: bool) -> Any:
        """Celery's send_task with the idempotency claim and the fair lane header."""
        if not successor and "idempotency_key" not in options and isinstance(task, StalwartTask) \
                and task.idempotency_key is not None:
            options["idempotency_key"] = task.derive_key(tuple(args or ()), dict(kwargs or {}))
        if not successor and isinstance(task, StalwartTask):
            fair = task.fair_header(tuple(args or ()), dict(kwargs or {}))
            if fair is not None:  # a replay or a re-send keeps the lane it was given
                options["headers"] = {FAIR_HEADER: fair, **(options.get("headers") or {})}
        if not successor and isinstance(options.get("idempotency_key"), str):  # one key, one task
            options["idempotency_key"] = scoped_key(name, options["idempotency_key"])
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
            self.stalwart.enqueues.release([meta.key])
            raise

    def enqueue_many(self, task: str | celery.Task[Any, Any], jobs: list[JobSpec], **kwargs: Any) -> list[Any]:
        """Enqueue many ``(args, kwargs[, options])`` jobs in one pipeline (see stalwart.enqueue.bulk).

        Debounced and singleton tasks are refused: each of their enqueues is a decision on shared
        state (enqueue them one by one with ``delay``/``apply_async``).
        """
        found = self.tasks.get(task if isinstance(task, str) else task.name)
        for option in ("debounce", "singleton"):
            if getattr(found, option, None) is not None:
                raise ConfigurationError(
                    f"enqueue_many cannot enqueue {getattr(found, 'name', task)}, a {option} task: "
                    "enqueue its jobs one by one")
        return enqueue_many(self, task, jobs, **kwargs)

    def claim_key(self, key: str, task_id: str) -> str:
        """The task id that owns ``key``: ``task_id`` when this call claimed it."""
        return self.stalwart.enqueues.claim(key, task_id, int(self.settings.idempotency_ttl_seconds * 1000))


def _no_key_with_debounce(resolved: dict[str, Any]) -> dict[str, Any]:
    """A debounced task takes no idempotency_key: a later burst would get an earlier one's result."""
    if resolved.get("debounce") is not None and resolved.get("idempotency_key") is not None:
        raise ConfigurationError("a debounced task takes no idempotency_key: the debounce key already "
                                 "collapses its enqueues, and a later burst must run with its newer arguments")
    return resolved


def _fire_debounce(self: Any, task_name: str, key: str, burst_id: str, last: Any = None) -> str:
    """The trigger of a debounced burst (see stalwart.enqueue.debounce): run it when due.
    ``last``: the burst's call as last known when the trigger was sent (absent in older triggers)."""
    queue = (self.request.delivery_info or {}).get("routing_key")
    return debounce.fire(self.app, task_name, key, burst_id, queue, last if isinstance(last, dict) else None)


def create_app(main: str = "stalwart", **kwargs: Any) -> Stalwart:
    """A Stalwart app configured from the environment."""
    return Stalwart(main, **kwargs)


__all__ = ["Stalwart", "StalwartTask", "create_app"]
