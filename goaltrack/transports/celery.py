"""The Celery transport: ``track()`` enqueues a task on your broker; Celery workers deliver it.

For apps that outgrow one process's delivery threads, or that already run Celery. The request
path publishes one small task message (the validated goal's fields, never the API key); a
Celery worker runs :func:`deliver_goal` with the same contract and failure rules as every other
transport (:func:`goaltrack.delivery.deliver`): delivered, or a transient failure retried with
Celery's ``retry`` and goaltrack's backoff (``Retry-After`` honoured), or a final failure that is
logged and not retried. Each worker process shares one breaker per destination between its tasks
(:func:`goaltrack.retry.shared_breaker`): while the API is down a task that may not send is
retried later without a request and without spending a retry, and transient failures end a goal
only by time (``give_up_after`` from the moment it was tracked) or by ``max_retries`` failures of
its own while the API answered others — as in every transport, since every verdict is
:func:`goaltrack.retry.judge`'s. The goal's :class:`~goaltrack.retry.RetryState` travels
with the retried task in one keyword, ``state``.

The worker needs the account, not the message: it uses the process-wide tracker
(:func:`goaltrack.get_tracker`), so configure it in the worker as in the web app
(``GOALTRACK_*`` environment variables, Django's ``GOALTRACK`` setting, or
``goaltrack.configure(...)`` in the Celery app module). The worker must import this module:
``Celery(..., include=["goaltrack.transports.celery"])`` or ``app.conf.imports``.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import threading
from typing import Any

try:
    from celery import Celery, shared_task
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    raise ImportError(
        "goaltrack's celery mode needs Celery: pip install 'goaltrack[celery]'"
    ) from exc

from goaltrack.delivery import DeliveryResult, Outcome, deliver
from goaltrack.http_client import HttpPoster
from goaltrack.items import Tracked, from_message, to_message
from goaltrack.process import PerProcess
from goaltrack.retry import SYSTEM_CLOCK, Clock, RetryState, judge, shared_breaker
from goaltrack.transports.base import Settlement, Stats, process_delivery_setup

__all__ = ["TASK_NAME", "CeleryTransport", "deliver_goal"]

logger = logging.getLogger("goaltrack")

TASK_NAME = "goaltrack.deliver_goal"
#: Where the transport and the task read the time (a test may replace it).
clock: Clock = SYSTEM_CLOCK


def goal_message(goal: Tracked) -> dict[str, Any]:
    """The task's argument: the goal's (or payment's) validated fields, its kind and provider,
    and when it was tracked (:func:`goaltrack.items.to_message`; JSON-serializable)."""
    return {**to_message(goal), "tracked_at": clock.wall()}


def goal_from_message(message: dict[str, Any]) -> Tracked:
    return from_message(message)


class CeleryTransport:
    """Publish one ``goaltrack.deliver_goal`` task per goal; Celery workers deliver them."""

    def __init__(
        self,
        settlement: Settlement,
        *,
        app: Celery | str | None = None,
        queue: str | None = None,
    ) -> None:
        self._settlement = settlement
        self._app_spec = app
        self._app: Celery | None = app if isinstance(app, Celery) else None
        self._queue = queue
        self._lock = threading.Lock()
        self._queued = {"goal": 0, "payment": 0}  # by kind

    def _celery(self) -> Celery:
        app = self._app
        if app is None:
            spec = self._app_spec
            if isinstance(spec, str):
                module, _, attribute = spec.partition(":")
                app = getattr(importlib.import_module(module), attribute or "app")
            else:
                from celery import current_app

                app = current_app
            self._app = app
        assert app is not None
        return app

    def submit(self, goal: Tracked) -> bool:
        options: dict[str, Any] = {"retry": False}  # a broker that is down must not hang requests
        if self._queue:
            options["queue"] = self._queue
        try:
            self._celery().send_task(TASK_NAME, args=(goal_message(goal),), **options)
        except Exception as exc:
            self._settlement.dropped(goal, f"the Celery broker refused the task: {exc}")
            return False
        with self._lock:
            self._queued[goal.kind] += 1
        return True

    def flush(self, timeout: float | None = None) -> bool:
        """Tasks are on the broker once ``submit`` returned: nothing is held in this process."""
        return True

    def close(self, timeout: float | None = None) -> bool:
        return True

    @property
    def stats(self) -> Stats:
        return self._settlement.snapshot(queued=dict(self._queued))


#: The HTTP client of each destination: a prefork pool's child starts with its own connections
#: (and, through shared_breaker, its own view of the API).
_http: PerProcess[str, HttpPoster] = PerProcess()


# max_retries=None: goaltrack's own rules end a goal (time, or isolated failures), not a count.
@shared_task(bind=True, name=TASK_NAME, ignore_result=True, acks_late=True, max_retries=None)  # type: ignore[untyped-decorator]
def deliver_goal(self: Any, message: dict[str, Any], state: dict[str, Any] | None = None) -> str:
    """Deliver one goal from the worker; retried by Celery while the failure is transient.

    *state* is the goal's :class:`~goaltrack.retry.RetryState` (``to_dict()``), given to the
    task's retries.
    """
    setup = process_delivery_setup()
    endpoint = setup.endpoint
    goal = goal_from_message(message)
    if endpoint is None:
        logger.error(
            "goaltrack: this Celery worker has no API key configured; %s not delivered "
            "(set GOALTRACK_API_KEY or the framework setting in the worker too)",
            goal.label,
        )
        return "failed"
    if endpoint.provider.name != goal.provider.name:
        logger.error(
            "goaltrack: %s is for %s but this worker is configured for %s; not delivered",
            goal.label,
            goal.provider.name,
            endpoint.provider.name,
        )
        return "failed"
    policy, settlement = setup.retry, setup.settlement
    try:
        retry_state = RetryState.from_dict(state)
    except (TypeError, ValueError):
        logger.warning("goaltrack: %s came with an unreadable retry state", goal.label)
        retry_state = RetryState()
    shared = shared_breaker(endpoint, policy)
    with shared.lock:
        ticket = shared.breaker.admit(clock.monotonic())
    result = None
    if ticket is not None:  # else the API is down and this process probes it already
        try:
            assert setup.http is not None  # there is an endpoint
            http = _http.get(endpoint.url, setup.http)
            result = deliver(goal, endpoint, http)
        except Exception as exc:  # a bug of ours: retried like a transient failure
            logger.exception("goaltrack: unexpected error delivering %s", goal.label)
            result = DeliveryResult(Outcome.RETRY, f"unexpected error: {type(exc).__name__}")
    wall = clock.wall()
    age = wall - float(message.get("tracked_at") or wall)
    with shared.lock:
        verdict = judge(
            shared.breaker,
            policy,
            retry_state,
            ticket,
            result,
            now=clock.monotonic(),
            age=age,
            # A retried task may run in another worker process: the mark names this one.
            mark_prefix=f"{socket.gethostname()}:{os.getpid()}:",
        )
    if verdict.retry_in is not None:
        if result is not None:
            settlement.retrying(goal, result, verdict.retry_in)
        raise _retry(self, message, verdict.state, verdict.retry_in)
    if verdict.final is not None:
        settlement.failed(goal, verdict.final)
        return "failed"
    assert result is not None
    settlement.delivered(goal, result, maybe_duplicate=verdict.state.may_have_arrived)
    return "delivered"


def _retry(task: Any, message: dict[str, Any], state: RetryState, delay: float) -> Exception:
    exception: Exception = task.retry(
        args=(message,), kwargs={"state": state.to_dict()}, countdown=delay
    )
    return exception
