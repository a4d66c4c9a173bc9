"""How ASGI endpoints track goals: ``track_goal`` (a call on a request or scope, or an endpoint
decorator), ``connect_goal``, and FastAPI's dependency.

The rules are the core's (:mod:`goaltrack.decorator`, :mod:`goaltrack.context`); this module says
what an endpoint answered (:func:`endpoint_status`: its response's status, or for plain data the
status FastAPI will send) and hands FastAPI endpoints their request's goals
(:func:`goal_tracker`, ``GoalTrackerDep``: built on first use, the only place FastAPI is
imported). :mod:`goaltrack.fastapi` re-exports what FastAPI apps use.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, overload

from blinker import ANY, Signal

from goaltrack import context
from goaltrack.asgi.middleware import RequestGoals, request_goals
from goaltrack.asgi.signals import process_adapter
from goaltrack.context import Metadata, current_goals, goals_outside_a_request
from goaltrack.decorator import (
    BLINKER_SIGNAL_ARGUMENTS,
    GoalSpec,
    MetadataArg,
    view_arguments,
    with_resolved_signature,
    wrap_view,
)
from goaltrack.payments import Amount, PaymentOptions

if TYPE_CHECKING:
    from typing import Annotated

    from fastapi import Depends
    from typing_extensions import Unpack

__all__ = [
    "GoalTrackerDep",
    "connect_goal",
    "endpoint_status",
    "goal_tracker",
    "track_goal",
    "track_payment",
]

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
    methods: Collection[str] | None = None,
    when: Callable[..., object] | None = None,
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
    methods: Collection[str] | None = None,
    when: Callable[..., object] | None = None,
) -> Any:
    """Record a goal for the request's visitor, or decorate an endpoint to record one.

    ``track_goal(request, "signup", {"plan": "pro"})`` with a Starlette/FastAPI ``Request`` or a
    raw ASGI scope: validates now, queues, returns whether the goal was queued; never waits for
    the network. An invalid goal raises :class:`goaltrack.InvalidGoal` when the tracker is
    strict (the middleware's ``debug=True``); otherwise it is logged at ERROR, not sent, and
    False is returned.

    ``@track_goal("signup", metadata=...)`` on an async or sync endpoint: records the goal when
    the endpoint answered a POST, PUT, PATCH or DELETE (``methods=`` changes that) with a status
    below 400 (plain data counts as the route's status code, 200 by default), never when it
    raises, and only if ``when`` (if given) returns true. ``metadata`` and ``when`` get the
    arguments they declare, by name: ``result`` (what the endpoint returned), ``response`` (the
    same, unless the endpoint takes a ``response`` parameter), ``request`` (the Starlette
    request: the endpoint's, or one over the request's scope) and the endpoint's own arguments.
    The name, and the names the callables declare, are checked at decoration time; anything
    failing at request time is logged, never turned into an error response.
    """
    if isinstance(request_or_scope, str):
        if name is not None:
            raise TypeError(
                "track_goal(name, ...) is the decorator form: use track_goal(request, name, ...)"
            )
        return _endpoint_decorator(
            GoalSpec(request_or_scope, metadata, description, timezone, methods=methods, when=when)
        )
    return request_goals(request_or_scope).track(
        name, metadata, description=description, timezone=timezone
    )


def track_payment(
    request_or_scope: Any,
    amount: Amount,
    currency: str,
    transaction_id: str,
    /,
    **options: Unpack[PaymentOptions],
) -> bool:
    """Record a payment for the request's visitor, or for ``visitor_id=`` when given.

    *request_or_scope* is a Starlette/FastAPI ``Request`` or a raw ASGI scope. In a payment
    provider's webhook (no visitor cookie) pass the visitor id captured at checkout. Validated
    now (an invalid payment follows the strict rule, like a goal), queued, never waiting for
    the network. The arguments are :meth:`goaltrack.GoalTracker.track_payment`'s; FastAPI's
    ``goals: GoalTrackerDep`` has ``goals.track_payment(...)`` too.
    """
    return request_goals(request_or_scope).track_payment(
        amount, currency, transaction_id, **options
    )


def _endpoint_decorator(spec: GoalSpec) -> Callable[[F], F]:
    def decorator(endpoint: F) -> F:
        checked = spec.with_arguments(
            view_arguments(endpoint, {"request", "response", "result"}),
            f"@track_goal({spec.name!r})",
        )

        def track_result(result: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            goals = current_goals()
            scope = goals.scope if isinstance(goals, RequestGoals) else None
            status = endpoint_status(result, kwargs, scope)
            method = None if scope is None else scope.get("method")
            named = {**kwargs, "result": result}
            named.setdefault("response", result)
            if "request" not in named:
                if args and hasattr(args[0], "scope"):
                    named["request"] = args[0]  # a Starlette endpoint: (request)
                elif scope is not None and "starlette.requests" in sys.modules:
                    # An endpoint without a Request parameter (FastAPI): one over its scope.
                    named["request"] = sys.modules["starlette.requests"].Request(scope)
            checked.track_after_view(lambda: goals, method, status, named)
            return result

        # FastAPI reads the parameters (and so the OpenAPI schema) from the signature.
        return with_resolved_signature(wrap_view(endpoint, track_result), endpoint)  # type: ignore[return-value]

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
    with the process-wide tracker. ``metadata`` and ``when`` get the signal's keyword arguments
    by name, those they declare, and the sender only as a parameter named ``sender``. Problems
    are logged, never raised into the code that sent the signal. Returns the receiver, to pass
    to ``signal.disconnect`` if need be.
    """
    return GoalSpec(name, metadata, description, timezone, when=when).connect(
        signal,
        _goals_for_signal,
        BLINKER_SIGNAL_ARGUMENTS,
        sender=ANY if sender is None else sender,
    )


def _goals_for_signal(sender: object, kwargs: Any) -> context.RequestGoals:
    return current_goals() or goals_outside_a_request(process_adapter)


# ---- what an endpoint answered, and FastAPI's dependency ----------------------------------------


def endpoint_status(result: Any, kwargs: Mapping[str, Any], scope: Mapping[str, Any] | None) -> int:
    """The status an endpoint answers with: its response's, else what FastAPI will send for data."""
    status = getattr(result, "status_code", None)
    if isinstance(status, int):
        return status
    # A FastAPI endpoint returning data may have set the status on its `response: Response`.
    responses = sys.modules.get("starlette.responses")
    if responses is not None:
        for value in kwargs.values():
            if isinstance(value, responses.Response) and isinstance(value.status_code, int):
                return value.status_code
    route = scope.get("route") if scope is not None else None
    route_status = getattr(route, "status_code", None)
    return route_status if isinstance(route_status, int) else 200


async def goal_tracker() -> context.RequestGoals:
    """FastAPI dependency: ``goals: RequestGoals = Depends(goal_tracker)`` or ``GoalTrackerDep``.

    Async on purpose: FastAPI runs sync dependencies in its thread pool.
    """
    goals = current_goals()
    if goals is None:
        raise RuntimeError(
            "goaltrack: goal_tracker needs GoalTrackMiddleware: "
            "app.add_middleware(GoalTrackMiddleware, ...)"
        )
    return goals


if TYPE_CHECKING:
    GoalTrackerDep = Annotated[context.RequestGoals, Depends(goal_tracker)]
else:

    def __getattr__(name: str) -> Any:
        if name == "GoalTrackerDep":  # needs FastAPI: built on first use
            try:
                from fastapi import Depends
            except ImportError as exc:
                raise ImportError(
                    "goaltrack's GoalTrackerDep needs FastAPI: pip install fastapi"
                ) from exc
            from typing import Annotated

            dependency = Annotated[context.RequestGoals, Depends(goal_tracker)]
            globals()[name] = dependency
            return dependency
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
