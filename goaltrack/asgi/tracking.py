"""``track_goal`` (a call on a request or scope, or an endpoint decorator) and ``connect_goal``.

The rules are the core's (:mod:`goaltrack.adapter`); an endpoint's status for plain data is
FastAPI's rule (:func:`goaltrack.fastapi.endpoint_status`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar, overload

from blinker import ANY, Signal

from goaltrack import adapter
from goaltrack.adapter import (
    GoalSpec,
    Metadata,
    MetadataArg,
    current_goals,
    goals_outside_a_request,
)
from goaltrack.asgi.middleware import RequestGoals, request_goals
from goaltrack.asgi.signals import process_adapter
from goaltrack.fastapi import endpoint_status

__all__ = ["connect_goal", "track_goal"]

F = TypeVar("F", bound=Callable[..., Any])

# ---- track_goal: a call or a decorator -------------------------------------------------------


@overload
def track_goal(
    name: str,
    /,
    *,
    metadata: MetadataArg = None,
    description: str | None = None,
    timezone: str | None = None,
) -> Callable[[F], F]: ...


@overload
def track_goal(
    request_or_scope: Any,
    name: str,
    /,
    metadata: Metadata | None = None,
    *,
    description: str | None = None,
    timezone: str | None = None,
) -> bool: ...


def track_goal(
    request_or_scope: Any,
    name: Any = None,
    /,
    metadata: Any = None,
    *,
    description: str | None = None,
    timezone: str | None = None,
) -> Any:
    """Record a goal for the request's visitor, or decorate an endpoint to record one.

    ``track_goal(request, "signup", {"plan": "pro"})`` with a Starlette/FastAPI ``Request`` or a
    raw ASGI scope: validates now (raising :class:`goaltrack.InvalidGoal`), queues, returns
    whether the goal was queued; never waits for the network.

    ``@track_goal("signup", metadata=...)`` on an async or sync endpoint: records the goal when
    the endpoint returns a response with a status below 400 (plain data counts as the route's
    status code, 200 by default), never when it raises. ``metadata`` may be a callable, called
    as ``metadata(result, *args, **kwargs)`` with the endpoint's return value and arguments, of
    which it gets only those it declares. The name is checked at decoration time; anything
    failing at request time is logged, never turned into an error response.
    """
    if isinstance(request_or_scope, str):
        if name is not None:
            raise TypeError(
                "track_goal(name, ...) is the decorator form: use track_goal(request, name, ...)"
            )
        return _endpoint_decorator(GoalSpec(request_or_scope, metadata, description, timezone))
    return request_goals(request_or_scope).track(
        name, metadata, description=description, timezone=timezone
    )


def _endpoint_decorator(spec: GoalSpec) -> Callable[[F], F]:
    def track_result(result: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        goals = current_goals()
        scope = goals.scope if isinstance(goals, RequestGoals) else None
        status = endpoint_status(result, kwargs, scope)
        spec.track_after_view(lambda: goals, status, (result, *args), kwargs)

    def decorator(endpoint: F) -> F:
        if inspect.iscoroutinefunction(endpoint):

            @functools.wraps(endpoint)
            async def async_endpoint(*args: Any, **kwargs: Any) -> Any:
                result = await endpoint(*args, **kwargs)
                track_result(result, args, kwargs)
                return result

            wrapper: Callable[..., Any] = async_endpoint
        else:

            @functools.wraps(endpoint)
            def sync_endpoint(*args: Any, **kwargs: Any) -> Any:
                result = endpoint(*args, **kwargs)
                track_result(result, args, kwargs)
                return result

            wrapper = sync_endpoint
        # FastAPI reads the parameters (and so the OpenAPI schema) from the signature.
        wrapper.__signature__ = inspect.signature(endpoint)  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorator


# ---- signals into goals ------------------------------------------------------------------------


def connect_goal(
    signal: Signal,
    name: str,
    *,
    sender: object = None,
    metadata: MetadataArg = None,
    description: str | None = None,
    timezone: str | None = None,
    when: Callable[..., object] | None = None,
) -> Callable[..., None]:
    """Track *name* whenever the blinker *signal* is sent (by *sender*, if given).

    For the visitor of the request being handled, or outside a request for the bound visitor
    with the process-wide tracker. ``metadata`` and ``when`` take the signal's sender and keyword
    arguments (those they declare). Problems are logged, never raised into the code that sent
    the signal. Returns the receiver, to pass to ``signal.disconnect`` if need be.
    """
    receiver = GoalSpec(name, metadata, description, timezone).signal_receiver(
        _goals_for_signal, when
    )
    signal.connect(receiver, sender=ANY if sender is None else sender, weak=False)
    return receiver


def _goals_for_signal(sender: object, kwargs: Any) -> adapter.RequestGoals:
    return current_goals() or goals_outside_a_request(process_adapter)
